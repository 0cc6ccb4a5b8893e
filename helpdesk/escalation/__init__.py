"""Escalation: policies of ordered levels (:mod:`.policies`), the engine that runs each level
exactly once when its moment comes or by hand (:mod:`.engine`), the simulator that shows what
would fire and when (:mod:`.simulate`), and what steps need on the public face (:mod:`.api`).

Steps are plugins: :class:`helpdesk.records.EscalationStep` records registered through
``helpdesk_escalation_steps``; the bundled ones are in ``plugins/escalation_steps.py``.
"""
