"""Every state change of an incident, and nothing else.

Each function takes the app's context first, checks the rules, writes the
change together with its timeline entries in one transaction, and derives
its follow-ups (SLA clocks, plugin events, notifications) in one place
(:func:`~helpdesk.incidents.changes.follow_up`). Views, the CLI, intake and
plugins call these functions; they never write incidents themselves.
Changes are conditional on the version read (optimistic locking), so two
concurrent edits can never silently overwrite each other.

The package follows the domain's seams: :mod:`.changes` (how a change is
written and followed up), :mod:`.intake` (logging), :mod:`.responsibility`
(owner and assignee), :mod:`.lifecycle` (status) and :mod:`.details`
(priority, fields, conversation, links).
"""

from helpdesk.incidents.changes import MAX_TITLE, Pair, assignee, get, one_change, owner
from helpdesk.incidents.details import add_comment, link, override_priority, update_details
from helpdesk.incidents.intake import derive_priority, log_incident
from helpdesk.incidents.lifecycle import (
    CANNED_RESOLUTIONS,
    NEXT_STATUS,
    TRANSITIONS,
    allowed_transitions,
    change_status,
    close_resolved,
    reopen,
)
from helpdesk.incidents.responsibility import (
    assign,
    can_transfer,
    take_ownership,
    take_work,
    transfer_ownership,
)

__all__ = [
    "CANNED_RESOLUTIONS", "MAX_TITLE", "NEXT_STATUS", "TRANSITIONS",
    "Pair", "add_comment", "allowed_transitions", "assign", "assignee",
    "can_transfer", "change_status", "close_resolved", "derive_priority", "get", "link", "log_incident",
    "one_change", "override_priority", "owner", "reopen", "take_ownership", "take_work", "transfer_ownership",
    "update_details",
]
