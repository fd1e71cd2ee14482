"""The local provider: the embedded cloud on one machine.

Instances are real processes with their shape enforced (``cgroups``), supervised by a per-stack agent
process (``agent``); the load balancer (``lb``) runs in a process of its own (``lbproc``) that outlives the
agent and restarts it, and a new agent adopts what runs (``procs`` checks recorded pids). Everything else
talks to the agent through ``client.AgentClient``; ``teardown`` stops a stack even without its agent.
``LocalProvider`` (``provider``) is the ``Provider`` port over it.
"""
