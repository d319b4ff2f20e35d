"""`python -m tools.interop build [STEP ...]`: what `make interop` and `make catalog-go` run."""

import sys

from tools.interop import main

sys.exit(main(sys.argv[1:]))
