"""Built-in defaults, registered as a plugin marked ``trylast`` so any plugin wins."""

from __future__ import annotations

from typing import Any

from helpdesk import hookimpl
from helpdesk.clock import now
from helpdesk.config import DEFAULT_SLA_POLICY, NO_SLA
from helpdesk.records import ChannelType, Message, SettingsTable

# ITIL priority matrix: rows impact, columns urgency.
PRIORITY_MATRIX = {
    ("high", "high"): 1,
    ("high", "medium"): 2,
    ("high", "low"): 3,
    ("medium", "high"): 2,
    ("medium", "medium"): 3,
    ("medium", "low"): 4,
    ("low", "high"): 3,
    ("low", "medium"): 4,
    ("low", "low"): 4,
}


@hookimpl(trylast=True)
def helpdesk_priority(impact: str, urgency: str) -> int:
    return PRIORITY_MATRIX[(impact, urgency)]


@hookimpl(trylast=True)
def helpdesk_route_incident(incident: Any) -> None:
    return None


@hookimpl(trylast=True)
def helpdesk_sla_policy(incident: Any, ctx: Any) -> str | None:
    """The ``default_sla_policy`` setting (``priority`` unless set); ``None`` when it is
    ``"none"``: the desk chose to run without an SLA, so the incident gets no clocks."""
    name = ctx.settings.default_sla_policy if ctx is not None else DEFAULT_SLA_POLICY
    return None if name == NO_SLA else name


def _send_inapp(ctx: Any, message: Message) -> None:
    """A notice on the agent's bell; the delivery's key makes a repeated delivery harmless."""
    from helpdesk.models import Notice

    Notice.insert(agent=int(message.recipient), incident=message.incident_id,
                  text=message.subject[:500], created_at=now(),
                  key=message.idempotency_key or None).on_conflict_ignore().execute()


@hookimpl(trylast=True)
def helpdesk_channel_types() -> list[ChannelType]:
    return [ChannelType(
        "inapp", "In-app", _send_inapp, "Notices on the bell in the page header",
        address_for=lambda ctx, agent, values: str(agent.id))]


@hookimpl(trylast=True)
def helpdesk_alert_sources() -> list[Any]:
    from helpdesk.api.alerts import BUILT_IN_SOURCES

    return list(BUILT_IN_SOURCES)


@hookimpl(trylast=True)
def helpdesk_check_settings(ctx: Any) -> None:
    """``[plugins.alerts]``: the flap window, the flap limit and the signing secrets."""
    from helpdesk.api.alerts import options

    options(ctx)


@hookimpl(trylast=True)
def helpdesk_macro_actions() -> list[Any]:
    """Set status, set priority, assign: the actions every macro form offers."""
    from helpdesk.macros import BUILTIN_ACTIONS

    return list(BUILTIN_ACTIONS)


@hookimpl(trylast=True)
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The tables the core reads itself, so a misspelt key there is said too."""
    return [SettingsTable("alerts", ("flap_minutes", "max_flaps", "secrets", "resolve")),
            SettingsTable("imap", ("mailboxes",))]
