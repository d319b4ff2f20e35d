"""Real consumers of the shop's contracts, one folder per language."""
