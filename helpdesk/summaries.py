"""The weekly summary a team lead gets about their team: last week's figures from the same
report facts the Reports pages read, sent through every channel the lead is reachable on.

Sent once a week, for the ISO week that ended (Monday 00:00 to Monday 00:00 in the desk's
time zone), to each active lead of each team. The worker looks every hour; an outbox key per
(team, week, lead, channel) makes a second look, a second worker or a restart send nothing
twice, and a worker that was down on Monday sends the summary when it comes back, that week.
Leads switch it off per channel on their profile ("Weekly summary of my team").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from helpdesk.clock import now
from helpdesk.context import Context
from helpdesk.models import ACTIVE_STATUSES, Agent, Incident, Membership, NotificationPreference, Team
from helpdesk.rendering import format_duration, format_percent

KIND = "weekly_summary"


@dataclass(frozen=True)
class Summary:
    team: Team
    start: dt.date  # Monday
    end: dt.date  # Sunday
    opened: int
    resolved: int
    response: tuple[int, int, int]  # met, met late, breached
    resolution: tuple[int, int, int]
    backlog: int
    oldest: dt.timedelta | None

    @property
    def subject(self) -> str:
        return (f"Weekly summary for {self.team.name}: {self.start:%d %b} – {self.end:%d %b %Y}")

    def text(self, url: str) -> str:
        def rate(counts: tuple[int, int, int]) -> str:
            decided = sum(counts)
            if not decided:
                return "none decided"
            # The share as the report's "On time" column says it (87.5 %, not a rounded 88 %).
            return (f"{format_percent(counts[0] / decided)} met on time ({counts[0]} met, "
                    f"{counts[1]} met late, {counts[2]} breached)")

        oldest = f", the oldest open for {format_duration(self.oldest)}" if self.oldest else ""
        return "\n".join([
            f"{self.team.name}, {self.start:%A %d %B} to {self.end:%A %d %B %Y}:",
            "",
            f"Logged: {self.opened}. Resolved: {self.resolved}.",
            f"Response targets: {rate(self.response)}.",
            f"Resolution targets: {rate(self.resolution)}.",
            f"Open now: {self.backlog}{oldest}.",
            "",
            f"Reports: {url}",
        ])


def last_week(ctx: Context, at: dt.datetime) -> tuple[dt.date, dt.date]:
    """The Monday and Sunday of the ISO week before the one ``at`` falls in (desk's zone)."""
    local = at.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(ctx.settings.time_zone)).date()
    this_monday = local - dt.timedelta(days=local.weekday())
    return this_monday - dt.timedelta(days=7), this_monday - dt.timedelta(days=1)


def summarise(ctx: Context, team: Team, start: dt.date, end: dt.date, at: dt.datetime) -> Summary:
    """The team's figures for the incidents logged from ``start`` to ``end`` (as Reports)."""
    from helpdesk import reports

    filters = reports.Filters(start, end, team=team.id)
    everything = reports.Scope(True, 0)
    rows = reports.compliance(filters, everything, at)
    totals = {target: tuple(sum(r.counts[target][k] for r in rows) for k in ("met", "late", "breached"))
              for target in ("response", "resolution")}
    days = reports.flow(filters, everything)
    active = Incident.select().where((Incident.owner_team == team.id)
                                     & Incident.status.in_(ACTIVE_STATUSES))
    first = active.order_by(Incident.created_at).first()
    return Summary(team, start, end, opened=sum(d.opened for d in days),
                   resolved=sum(d.resolved for d in days), response=totals["response"],
                   resolution=totals["resolution"], backlog=active.count(),
                   oldest=(at - first.created_at) if first else None)


def send_weekly(ctx: Context, at: dt.datetime | None = None) -> int:
    """Queue last week's summary to every active lead of every team; returns rows queued
    (0 when every summary of that week was queued already)."""
    from helpdesk.notify import addresses
    from helpdesk.notify.outbox import enqueue

    at = at or now()
    start, end = last_week(ctx, at)
    week = f"{start.isocalendar().year}-W{start.isocalendar().week:02d}"
    url = f"{ctx.settings.base_url}/reports?from={start.isoformat()}&to={end.isoformat()}"
    leads = list(Agent.select(Agent, Membership.team_id.alias("lead_of")).join(
        Membership, on=(Membership.agent == Agent.id)).where(
        (Agent.role == "lead") & (Agent.active == True)).objects())  # noqa: E712
    if not leads:
        return 0
    switched_off = {(p.agent_id, p.channel) for p in NotificationPreference.select().where(
        (NotificationPreference.kind == KIND) & (NotificationPreference.enabled == False))}  # noqa: E712
    settings = addresses.settings_for([a.id for a in leads])
    summaries: dict[int, Summary] = {}
    queued = 0
    for lead in leads:
        team_id = lead.lead_of
        for channel in addresses.agent_channel_types(ctx):
            key = f"summary:{team_id}:{week}:{lead.id}:{channel.name}"
            if (lead.id, channel.name) in switched_off or _exists(key):
                continue  # the hourly look costs one lookup per lead and channel once sent
            address = addresses.address(ctx, channel, lead, settings)
            if not address:
                continue
            if team_id not in summaries:
                summaries[team_id] = summarise(ctx, Team.get_by_id(team_id), start, end, at)
            summary = summaries[team_id]
            enqueue(ctx, channel.name, address, summary.subject, summary.text(url), agent=lead,
                    event="weekly_summary", kind=KIND, idempotency_key=key,
                    expires_at=at + dt.timedelta(days=7))  # next week's replaces it
            queued += 1
    return queued


def _exists(key: str) -> bool:
    from helpdesk.models import Delivery

    return Delivery.select().where(Delivery.idempotency_key == key).exists()
