"""sculpt keeps running applications on the right instance shape, predictively.

The package is layered (see ARCHITECTURE.md and the import-linter contract in pyproject.toml):
``domain`` is pure vocabulary; ``catalog``, ``forecast``, ``decide``, ``metrics``, ``providers`` and
``ledger`` build on it; ``engine`` drives providers through stack versions; ``migrate`` morphs a fleet
through an engine; ``replay`` runs the real loop on traces; ``app`` wires everything; ``cli`` is thin.
"""

__version__ = "0.1.0"
