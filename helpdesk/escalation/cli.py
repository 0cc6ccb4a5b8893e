"""``helpdesk escalation``: simulate, import and export policies from the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click


def _time(text: str | None, option: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from None
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


@click.group("escalation")
def escalation_group() -> None:
    """Escalation policies: simulate, import, export."""


def _run(ctx: click.Context, work: Any) -> Any:
    from helpdesk.cli import _ready
    from helpdesk.db import database
    from helpdesk.errors import DomainError

    app = _ready(ctx)
    with app.app_context(), database.connection_context():
        try:
            return work(app.extensions["helpdesk"])
        except DomainError as error:
            raise click.ClickException(str(error)) from None


@escalation_group.command("simulate")
@click.argument("reference", required=False)
@click.option("--at", "at_text", default=None, metavar="TIME",
              help="Start (ISO 8601, UTC unless it has an offset); a hypothetical incident is logged then.")
@click.option("--horizon", type=click.IntRange(1, 2160), default=72, show_default=True, help="Hours ahead.")
@click.option("--priority", type=click.IntRange(1, 4), default=None, help="Hypothetical: the priority.")
@click.option("--type", "type_", default="incident", show_default=True, help="Hypothetical: the type.")
@click.option("--team", default=None, help="Hypothetical: the assigned team's name.")
@click.option("--service", default=None, help="Hypothetical: the service's name.")
@click.option("--draft", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A draft policy (TOML) to use instead of the saved one of its name.")
@click.pass_context
def simulate_command(ctx: click.Context, reference: str | None, at_text: str | None, horizon: int,
                     priority: int | None, type_: str, team: str | None, service: str | None,
                     draft: Path | None) -> None:
    """What the SLA check would fire for INC-REFERENCE (or a hypothetical incident), and when."""
    from helpdesk.escalation import policies
    from helpdesk.escalation.simulate import simulate
    from helpdesk.models import Incident

    start = _time(at_text, "--at")
    kwargs: dict[str, Any] = {"horizon": dt.timedelta(hours=horizon), "start": start}
    if reference:
        incident_id = Incident.parse_reference(reference)
        if incident_id is None:
            raise click.BadParameter(f"{reference!r} is not an incident reference")
        kwargs["incident_id"] = incident_id
    else:
        kwargs["hypothetical"] = {"logged_at": start, "priority": priority, "type": type_, "team": team,
                                  "service": service}
    if draft is not None:
        kwargs["draft"] = policies.from_toml(draft.read_text())
    sim = _run(ctx, lambda state: simulate(state, **kwargs))
    click.echo(f"{sim.incident}: {sim.start:%Y-%m-%d %H:%M} to {sim.end:%Y-%m-%d %H:%M} UTC")
    for happening in sim.happenings:
        detail = f" — {happening.detail}" if happening.detail else ""
        click.echo(f"{happening.at:%Y-%m-%d %H:%M} UTC  {happening.kind:<12} {happening.what}{detail}")
    click.echo(f"{len(sim.happenings)} event(s) would fire.")


@escalation_group.command("export")
@click.argument("name")
@click.pass_context
def export_command(ctx: click.Context, name: str) -> None:
    """Print policy NAME as TOML."""
    from helpdesk.escalation import policies
    from helpdesk.models import EscalationPolicy

    def work(state: Any) -> str:
        policy = EscalationPolicy.get_or_none(EscalationPolicy.name == name)
        if policy is None:
            raise click.ClickException(f"There is no escalation policy named {name!r}.")
        return policies.to_toml(policy)

    click.echo(_run(ctx, work), nl=False)


@escalation_group.command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Save policies from TOML files (a policy of the same name gets a new version)."""
    from helpdesk.escalation import policies

    def work(state: Any) -> None:
        for path in files:
            try:
                saved = policies.save(state, policies.from_toml(path.read_text(encoding="utf-8")))
            except policies.PolicyError as error:
                raise click.ClickException(f"{path}: {error}") from None
            except UnicodeDecodeError:
                raise click.ClickException(f"{path}: not UTF-8 text (TOML files are UTF-8)") from None
            click.echo(f"{saved.name}: version {saved.version}")

    _run(ctx, work)
