"""`git claim heartbeat | verify | log | hook`: staying alive and fencing pushes."""

from __future__ import annotations

import sys

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import (
    emit_beat,
    emit_hook_installed,
    emit_hook_removed,
    emit_log,
    emit_verdict,
    emit_verified,
    reporting,
)


@claim_group.command("heartbeat", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def heartbeat_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Record that we still work on TICKET (a note on the claim). Exit 1 if it is lost."""
    with reporting(as_json=as_json, command="git claim heartbeat"):
        from ..ops.liveness import HeartbeatRequest, heartbeat

        (ticket_id,) = parse_tickets((ticket,))
        emit_beat(heartbeat(session_from(remote, agent), HeartbeatRequest(ticket_id)),
                  as_json=as_json)


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
        from ..ops.liveness import VerifyRequest, verify

        named = parse_tickets((ticket,))[0] if ticket is not None else None
        emit_verified(verify(session_from(remote, agent), VerifyRequest(named)),
                      as_json=as_json)


@claim_group.command("log", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def log_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """The history of TICKET: claims, heartbeats, releases, reaps and reopenings."""
    with reporting(as_json=as_json, command="git claim log"):
        from ..ops.log import LogRequest, ticket_log

        (ticket_id,) = parse_tickets((ticket,))
        emit_log(ticket_log(session_from(remote, agent), LogRequest(ticket_id)), as_json=as_json)


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
        from ..ops.hook import hook_install

        emit_hook_installed(hook_install(session_from(None, None)), as_json=as_json)


@hook_group.command("uninstall", context_settings=CONTEXT_SETTINGS)
@json_option
def hook_uninstall_command(as_json: bool) -> None:
    """Remove our pre-push hook (only a file we wrote), restoring a hook it chained to."""
    with reporting(as_json=as_json, command="git claim hook uninstall"):
        from ..ops.hook import hook_uninstall

        emit_hook_removed(hook_uninstall(session_from(None, None)), as_json=as_json)


@hook_group.command("pre-push", context_settings=CONTEXT_SETTINGS)
@click.argument("remote_name", required=False)
@click.argument("url", required=False)
def hook_pre_push_command(remote_name: str | None, url: str | None) -> None:
    """Run the fence on git's pre-push input (or the pre-commit framework's variables)."""
    with reporting(as_json=False, command="git claim hook pre-push"):
        from ..ops.hook import check_push

        emit_verdict(check_push(session_from(None, None), sys.stdin),
                     prefix="git claim hook pre-push: ")
