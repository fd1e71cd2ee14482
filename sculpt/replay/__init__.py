"""Replay recorded demand through sculpt and its baselines on the simulated cloud.

``readers`` (Bitbrains, NAB, generic CSV) -> ``harness.run_replay`` (static, reactive, sculpt, oracle side by
side on ``sculpt.providers.sim``) -> ``metrics`` -> ``report`` (HTML with inline SVG). ``loop`` holds the
tick that ``sculpt watch`` runs live too. Nothing is imported here eagerly: the CLI stays light.
"""
