"""The ``sculpt`` command line: one module per verb, thin over the library.

Verb modules import only typer and the standard library at module level, so ``sculpt --help`` stays fast;
everything heavier is imported inside the command function.
"""
