"""The sculpt loop: observe -> learn -> forecast -> plan -> execute exactly the plan's actions.

``sculpt.loop.tick`` is the tick shared by ``sculpt replay`` (a simulated fleet) and the live service
(``sculpt watch``, ``sculpt plan``, the API); ``sculpt.loop.live`` is the port over a running fleet.
"""
