"""Options shared by every command, and the session they describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..ops.claim import NextRequest, TakeRequest, WorktreeRequest
    from ..session import Session

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (errors included).")(function)


def remote_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--remote", metavar="NAME",
                            help="Remote that holds the claims [claim.remote, else origin]."
                            )(function)
    function = click.option("--agent", metavar="NAME",
                            help="Who we are [GIT_CLAIM_AGENT, claim.agent, else user@host:dir]."
                            )(function)
    return function


def claim_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """How `take` and `run` pick and prepare a claim: declared once for both."""
    options = [
        click.option("--next", "pick_next", is_flag=True,
                     help="Claim the next eligible ticket of the backlog (see --from)."),
        click.option("--from", "source", metavar="SOURCE",
                     help="Backlog for --next: gh, a file (ids or JSON lines), or - for stdin"
                          " [claim.source]."),
        click.option("--label", "labels", multiple=True, metavar="LABEL",
                     help="--next: only tickets with this label (repeatable)."),
        click.option("--exclude-label", "excluded", multiple=True, metavar="LABEL",
                     help="--next: skip tickets with this label (repeatable)."),
        click.option("--no-gate", is_flag=True,
                     help="Skip the design gate (for humans; recorded in the claim). On a"
                          " named ticket it passes dependencies and capabilities too."),
        click.option("--can", "capabilities", metavar="CAPS",
                     help="What this agent can do (comma-separated): tickets labelled"
                          " needs:<capability> need it [claim.capabilities]."),
        click.option("--worktree", "worktree", is_flag=False, flag_value="", default=None,
                     metavar="[PATH]",
                     help="After a win, make a linked worktree on claim/<ticket>"
                          " [claim.worktree]."),
        click.option("--base", metavar="REV",
                     help="The worktree branch starts here [the remote's default branch as"
                          " last fetched]."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def session_from(remote: str | None, agent: str | None, **extra: str | None) -> Session:
    from ..session import open_session

    return open_session(None, remote=remote, agent=agent, **extra)


def parse_tickets(raw: tuple[str, ...]) -> list[str]:
    """Validate every id before anything touches git (a bad one exits 2)."""
    from ..ticket import parse_ticket

    seen: list[str] = []
    for item in raw:
        ticket = parse_ticket(item)
        if ticket not in seen:
            seen.append(ticket)
    return seen


def worktree_request(worktree: str | None, base: str | None) -> WorktreeRequest:
    """`--worktree[=PATH]` (None: not given, "": the default place) and `--base`."""
    from ..ops.claim import WorktreeRequest

    return WorktreeRequest(asked=worktree is not None, path=worktree or None, base=base)


def claim_request(ids: list[str], *, pick_next: bool, labels: tuple[str, ...],
                  excluded: tuple[str, ...], source: str | None, no_gate: bool,
                  worktree: str | None, base: str | None, capabilities: str | None = None,
                  **extra: Any) -> TakeRequest | NextRequest:
    """The request of `take` or `run` from their shared options; usage errors exit 2."""
    from ..errors import UsageError
    from ..ops.claim import NextRequest, TakeRequest

    if pick_next and ids:
        raise UsageError("give ticket ids or --next, not both")
    if not pick_next and (labels or excluded or source):
        raise UsageError("--from, --label and --exclude-label go with --next")
    from ..pickconfig import parse_capabilities

    tree = worktree_request(worktree, base)
    can = parse_capabilities(capabilities) if capabilities is not None else None
    if pick_next:
        return NextRequest(labels=labels, exclude=excluded, gate=not no_gate, worktree=tree,
                           capabilities=can, **extra)
    return TakeRequest(tickets=tuple(ids), gate=not no_gate, worktree=tree, capabilities=can)
