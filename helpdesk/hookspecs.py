"""Hook specifications: the plugin author's reference.

Implement a hook with ``@helpdesk.hookimpl`` on a function of your plugin
module. Specs only grow: new arguments are appended, none is renamed or
removed, so a plugin that accepts fewer arguments keeps working.

Families:

* *decision* hooks are ``firstresult``: the first non-``None`` answer wins, and
  a built-in default (registered ``trylast``) always answers;
* *event* hooks are named in the past tense. They fire after the change has
  committed, in the background worker, never inside the web request. An event
  hook that raises is logged with the plugin's name; it neither undoes the
  change nor stops other plugins' hooks.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("helpdesk")


# -- decision hooks ---------------------------------------------------------


@hookspec(firstresult=True)
def helpdesk_priority(impact: str, urgency: str) -> int | None:
    """Derive an incident's priority (1 = P1 critical … 4 = P4 low).

    Fires in the web request or CLI whenever impact or urgency is set, unless
    the priority was overridden by hand. ``impact`` and ``urgency`` are each
    ``"high"``, ``"medium"`` or ``"low"``. Return ``None`` to let the next
    plugin (ultimately the built-in ITIL matrix) decide.
    """


@hookspec(firstresult=True)
def helpdesk_route_incident(incident: Any) -> Any | None:
    """Choose the initial assigned team of a new incident nobody assigned.

    Fires in the web request (or mail/API intake) before the new incident is
    saved; ``incident`` is the unsaved :class:`helpdesk.models.Incident` with
    title, type, category, service, requester and source set. Return a
    :class:`helpdesk.models.Team` to assign it to, or ``None`` to leave the
    decision to the next plugin (the built-in default leaves it unassigned).
    """


# -- event hooks (worker, after commit) -------------------------------------


@hookspec
def incident_created(incident: Any, actor: Any) -> None:
    """A new incident was logged. ``actor`` is the agent, or ``None`` for intake."""


@hookspec
def incident_assigned(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any
) -> None:
    """The assigned team or agent changed; the previous pair is given (each may be ``None``)."""


@hookspec
def incident_owner_changed(
    incident: Any, actor: Any, previous_team: Any, previous_agent: Any, reason: str
) -> None:
    """The owning team or agent changed (taken or transferred, with the reason given)."""


@hookspec
def incident_status_changed(incident: Any, actor: Any, old_status: str, new_status: str) -> None:
    """The status changed; fires for every transition, before the specific hooks below."""


@hookspec
def incident_commented(incident: Any, actor: Any, entry: Any, public: bool) -> None:
    """A public reply (``public=True``) or an internal note was added; ``entry`` is it."""


@hookspec
def incident_resolved(incident: Any, actor: Any) -> None:
    """The incident was resolved; its resolution code and note are set."""


@hookspec
def incident_reopened(incident: Any, actor: Any) -> None:
    """A resolved incident was reopened."""


@hookspec
def incident_closed(incident: Any, actor: Any) -> None:
    """The incident was closed (``actor`` is ``None`` when closed automatically)."""
