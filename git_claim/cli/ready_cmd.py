"""`git claim ready`: the backlog as `--next` sees it for this agent (adapter only)."""

from __future__ import annotations

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, remote_options, session_from
from .output import emit_ready, reporting


@claim_group.command("ready", context_settings=CONTEXT_SETTINGS)
@click.option("--from", "source", metavar="SOURCE",
              help="The backlog: gh, a file (ids or JSON lines), or - for stdin"
                   " [claim.source].")
@click.option("--label", "labels", multiple=True, metavar="LABEL",
              help="Only tickets with this label (repeatable), as --next takes it.")
@click.option("--exclude-label", "excluded", multiple=True, metavar="LABEL",
              help="Skip tickets with this label (repeatable), as --next takes it.")
@click.option("--no-gate", is_flag=True, help="Judge without the design gate, as --next would.")
@click.option("--can", "capabilities", metavar="CAPS",
              help="What this agent can do (comma-separated) [claim.capabilities].")
@remote_options
@json_option
def ready_command(source: str | None, labels: tuple[str, ...], excluded: tuple[str, ...],
                  no_gate: bool, capabilities: str | None, remote: str | None,
                  agent: str | None, as_json: bool) -> None:
    """The backlog as `git claim --next` sees it for this agent; claims nothing.

    Eligible tickets come first, in the order --next would try them
    (priority tier, then this agent's spread); every other ticket says what
    holds it back: held by whom, done, blocked, waiting on an open ticket,
    gated, needing a capability, over a WIP limit. Exit 0 whenever the
    backlog and the remote could be read (nothing eligible included); 2
    usage, 3 git, remote or tracker error.
    """
    with reporting(as_json=as_json, command="git claim ready"):
        import sys

        from ..ops.ready import ReadyRequest, ready
        from ..pickconfig import parse_capabilities

        request = ReadyRequest(labels=labels, exclude=excluded, gate=not no_gate,
                               capabilities=parse_capabilities(capabilities)
                               if capabilities is not None else None, stdin=sys.stdin)
        session = session_from(remote, agent, source=source)
        emit_ready(ready(session, request), as_json=as_json)
