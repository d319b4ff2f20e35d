"""`python -m tools.polyglot`: what `make proto-polyglot` runs."""

import sys

from tools.polyglot import main

sys.exit(main())
