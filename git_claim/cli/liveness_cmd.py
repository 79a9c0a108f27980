"""`git claim heartbeat | verify | log | hook`: staying alive and fencing pushes."""

from __future__ import annotations

import sys

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_json, reporting


@claim_group.command("heartbeat", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def heartbeat_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Record that we still work on TICKET (a note on the claim). Exit 1 if it is lost."""
    with reporting(as_json=as_json, command="git claim heartbeat"):
        from ..clock import iso
        from ..liveness import heartbeat

        (ticket_id,) = parse_tickets((ticket,))
        beat = heartbeat(session_from(remote, agent), ticket_id)
        if as_json:
            emit_json({"ok": True, "ticket": beat.ticket, "seq": beat.seq, "time": iso(beat.time)})
        else:
            click.echo(f"heartbeat {beat.ticket} #{beat.seq}")


@claim_group.command("verify", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket", required=False)
@remote_options
@json_option
def verify_command(ticket: str | None, remote: str | None, agent: str | None,
                   as_json: bool) -> None:
    """Exit 0 only while the remote claim on TICKET is still ours.

    Without TICKET: the ticket of the current branch (<claim.branchPrefix><ticket>,
    by default claim/<ticket>).
    """
    with reporting(as_json=as_json, command="git claim verify"):
        from ..fence import ticket_of_current_branch
        from ..liveness import verify

        session = session_from(remote, agent)
        if ticket is None:
            ticket_id = ticket_of_current_branch(session)
        else:
            (ticket_id,) = parse_tickets((ticket,))
        verify(session, ticket_id)
        if as_json:
            emit_json({"ok": True, "ticket": ticket_id, "ours": True})
        else:
            click.echo(f"{ticket_id} is yours")


@claim_group.command("log", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def log_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """The history of TICKET: claims, heartbeats, releases and reaps."""
    with reporting(as_json=as_json, command="git claim log"):
        from ..history import history, render_history

        (ticket_id,) = parse_tickets((ticket,))
        events = history(session_from(remote, agent), ticket_id)
        if as_json:
            emit_json(events)
        else:
            click.echo(render_history(events), nl=False)


@claim_group.group("hook", context_settings=CONTEXT_SETTINGS)
def hook_group() -> None:
    """The pre-push fence: refuse to push a claim's branch once the claim is lost."""


@hook_group.command("install", context_settings=CONTEXT_SETTINGS)
@json_option
def hook_install_command(as_json: bool) -> None:
    """Install the pre-push fence in this repository's own hooks directory.

    An existing hook is chained to, never replaced. A hooks directory that
    other repositories or the work tree share (core.hooksPath from the global
    or system config, or inside the work tree) is refused with exit 2.
    """
    with reporting(as_json=as_json, command="git claim hook install"):
        from ..fence import install_hook

        result = install_hook(session_from(None, None))
        if as_json:
            emit_json({"ok": True, **result})
        else:
            chained = f" (chained to the existing hook, kept as {result['chained']})" \
                if result.get("chained") else ""
            click.echo(f"installed {result['path']}{chained}")


@hook_group.command("uninstall", context_settings=CONTEXT_SETTINGS)
@json_option
def hook_uninstall_command(as_json: bool) -> None:
    """Remove our pre-push hook (only a file we wrote), restoring a hook it chained to."""
    with reporting(as_json=as_json, command="git claim hook uninstall"):
        from ..fence import uninstall_hook

        result = uninstall_hook(session_from(None, None))
        if as_json:
            emit_json({"ok": True, **result})
        else:
            click.echo(f"removed {result['path']}")


@hook_group.command("pre-push", context_settings=CONTEXT_SETTINGS)
@click.argument("remote_name", required=False)
@click.argument("url", required=False)
def hook_pre_push_command(remote_name: str | None, url: str | None) -> None:
    """Run the fence on git's pre-push input (or the pre-commit framework's variables)."""
    with reporting(as_json=False, command="git claim hook pre-push"):
        from ..fence import check_push, pushed_refs

        updates = pushed_refs(sys.stdin)
        refusals = check_push(session_from(None, None), updates)
        if refusals:
            for line in refusals:
                click.echo(f"git claim hook pre-push: {line}", err=True)
            raise SystemExit(1)
