"""Developer tools behind the Makefile: stub generation and contract gates."""
