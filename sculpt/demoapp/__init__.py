"""sculpt.demoapp: the bundled stateful demo service (``server``) and its load generator (``loadgen``).

Both are standalone: ``python -m sculpt.demoapp`` serves, ``python -m sculpt.demoapp.loadgen`` drives load.
"""
