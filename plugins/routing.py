"""Route new incidents to a team by their category or affected service.

Settings (instance file or environment)::

    [plugins.routing]
    by_category = { Database = "Database", Network = "Network" }
    by_service = { CRM = "Database" }

    HELPDESK_PLUGINS__ROUTING__BY_SERVICE="CRM=Database,VPN=Network"

The service rule wins over the category rule. An incident logged with an
assignee, or matching no rule, is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from helpdesk import ConfigError, Context, Team, hookimpl
from helpdesk.records import SettingsTable

logger = logging.getLogger(__name__)


def _rules(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ConfigError(f"HELPDESK_PLUGINS__ROUTING__{key.upper()}: expected Name=Team pairs or a table")
    rules = {}
    for pair in str(value).split(","):
        if not pair.strip():
            continue
        name, sep, team = pair.partition("=")
        if not sep or not name.strip() or not team.strip():
            raise ConfigError(f"HELPDESK_PLUGINS__ROUTING__{key.upper()}: expected Name=Team pairs, "
                              f"separated by commas; got {pair!r}")
        rules[name.strip()] = team.strip()
    return rules


@hookimpl
def helpdesk_check_settings(ctx: Context) -> None:
    settings = ctx.plugin_settings("routing")
    for key in ("by_service", "by_category"):
        _rules(settings.get(key), key)  # raises ConfigError naming the variable


@hookimpl
def helpdesk_route_incident(ctx: Context, incident: Any) -> Any:
    settings = ctx.plugin_settings("routing")
    for key, record in (("by_service", incident.service), ("by_category", incident.category)):
        if record is None:
            continue
        team_name = _rules(settings.get(key), key).get(record.name)
        if team_name is None:
            continue
        team = Team.get_or_none(Team.name == team_name)
        if team is None:
            logger.warning("routing: %s rule for %r names unknown team %r", key, record.name, team_name)
            continue
        return team
    return None


@hookimpl
def helpdesk_settings_tables() -> list[SettingsTable]:
    """The keys of [plugins.routing] this plugin reads: any other is reported as a misspelling."""
    return [SettingsTable("routing", ("by_category", "by_service"))]
