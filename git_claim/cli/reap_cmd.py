"""`git reap`: free the claims of crashed agents, never a live one."""

from __future__ import annotations

import click

from .group import run_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_report, reporting


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--ttl", metavar="DURATION",
              help="Reap claims silent for longer than this (s, m, h, d) [claim.ttl, else 15m].")
@click.option("--max-skew", metavar="DURATION",
              help="Clock difference tolerated between agents and reaper [claim.maxSkew, else 5m].")
@click.option("--dry-run", is_flag=True, help="Report what would be reaped; change nothing.")
@click.option("--ticket", "tickets", multiple=True, metavar="TICKET",
              help="Reap only this ticket (repeatable).")
@click.option("--force", is_flag=True, help="Allow a TTL shorter than the heartbeat interval.")
@click.option("--no-pr-check", is_flag=True,
              help="Reap even claims with an open pull request (checked through the tracker).")
@remote_options
@json_option
@click.version_option(package_name="git-claim", prog_name="git-reap", message="%(prog)s %(version)s")
def reap_command(ttl: str | None, max_skew: str | None, dry_run: bool, tickets: tuple[str, ...],
                 force: bool, no_pr_check: bool, remote: str | None, agent: str | None,
                 as_json: bool) -> None:
    """Free claims whose holder stopped heartbeating.

    A claim is stale when its last heartbeat (or its claim time) is older than
    TTL + max-skew by our clock, or when this reaper has seen it unchanged for
    TTL. Each reap is a compare-and-swap: a heartbeat that lands first wins.
    Exit codes: 0 done (even if nothing was stale), 2 usage, 3 git error,
    5 stale claims left in place: the remote refused a reap, or open pull
    requests could not be checked.
    """
    with reporting(as_json=as_json, command="git reap"):
        from ..errors import UsageError
        from ..liveness import reap

        ids = parse_tickets(tickets)
        session = session_from(remote, agent, ttl=ttl, max_skew=max_skew)
        settings = session.settings
        if settings.ttl < settings.heartbeat and not force:
            raise UsageError(
                f"TTL {ttl or settings.ttl} is shorter than the heartbeat interval"
                f" ({int(settings.heartbeat)}s): live claims would be reaped (--force overrides)")
        from ..mirror import on_reaped, open_label_tracker, open_pr_check, repair_labels

        tracker = open_label_tracker(session)
        checks = [] if no_pr_check else [c for c in [open_pr_check(session, tracker)] if c]
        from .progress import StatusLine

        line = StatusLine("reading claims")
        try:
            report = reap(session, ttl=settings.ttl, max_skew=settings.max_skew,
                          dry_run=dry_run, tickets=ids or None, skip_checks=checks,
                          progress=line.update)
        finally:
            line.finish()
        warnings: list[str] = []
        repaired: list[str] = []
        if not dry_run and tracker is not None:
            warnings += on_reaped(session, tracker, [e.ticket for e in report.reaped],
                                  settings.ttl)
            if not ids:
                from ..claims import read_claims

                repaired, more = repair_labels(session, tracker, read_claims(session))
                warnings += more
        from ..safetext import clean

        summary = (f"{'would reap' if dry_run else 'reaped'} {len(report.reaped)},"
                   f" live {len(report.live)}, skipped {len(report.skipped)}")
        reasons: dict[str, int] = {}
        for entry in report.skipped:
            key = entry.reason.split(":")[0].split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
        if reasons:
            summary += " (" + ", ".join(f"{n} {why}" for why, n in reasons.items()) + ")"
        if report.lost_races:
            summary += f", {len(report.lost_races)} came back to life"
        undone = report.undone
        failure = None
        if undone:
            from ..errors import IncompleteError

            failure = IncompleteError(
                f"{len(undone)} claim{'s' if len(undone) != 1 else ''} not freed: "
                + "; ".join(f"{clean(e.ticket)}: {clean(e.reason, 200)}" for e in undone[:3])
                + (f"; and {len(undone) - 3} more" if len(undone) > 3 else ""))
        if as_json:
            document = {"dry_run": dry_run, "ttl": settings.ttl,
                        "max_skew": settings.max_skew, "summary": summary,
                        "reaped": [e.as_dict() for e in report.reaped],
                        "live": [e.as_dict() for e in report.live],
                        "skipped": [e.as_dict() for e in report.skipped],
                        "revived": [e.as_dict() for e in report.lost_races],
                        "undone": [e.as_dict() for e in undone],
                        "repaired": repaired, "warnings": warnings}
            emit_report(document, failure)
            return
        from ..clock import format_duration

        for entry in report.reaped:
            idle = format_duration(entry.idle_seconds) if entry.idle_seconds is not None else "?"
            click.echo(f"{'would reap' if dry_run else 'reaped'} {clean(entry.ticket)}"
                       f" (held by {clean(entry.holder, 80)}, silent {idle})")
        for entry in report.skipped:
            click.echo(f"skipped {clean(entry.ticket)}: {clean(entry.reason)}")
        for line in repaired:
            click.echo(f"repaired: {line}")
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(summary)
        if failure is not None:
            raise failure


def main() -> None:
    run_group(reap_command, prog="git reap")
