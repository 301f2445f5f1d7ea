"""The command line: one module per command's parser and runner (``main`` builds them all).
Imports every layer below, lazily inside each runner so ``roofsim --help`` stays light."""

from sim.cli.app import main

__all__ = ["main"]
