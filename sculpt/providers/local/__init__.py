"""The local provider: the embedded cloud on one machine.

Instances are real processes with their shape enforced (``cgroups``), supervised by a per-stack agent
process (``agent``) that also hosts the load balancer (``lb``); everything else talks to the agent through
``client.AgentClient``. ``LocalProvider`` (``provider``) is the ``Provider`` port over it.
"""
