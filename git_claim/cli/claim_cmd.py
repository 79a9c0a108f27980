"""`git claim`: claim tickets, list claims, reopen finished ones."""

from __future__ import annotations

import click

from .common import (
    CONTEXT_SETTINGS,
    claim_options,
    claim_request,
    json_option,
    parse_tickets,
    remote_options,
    session_from,
)
from .group import DEFAULT_COMMAND, ClaimGroup
from .output import emit_claimed, reporting


@click.group(cls=ClaimGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=False)
@click.version_option(package_name="git-claim", prog_name="git-claim",
                      message="%(prog)s %(version)s")
def claim_group() -> None:
    """Claim tickets atomically through the shared git remote.

    `git claim 640` creates the claim ref refs/claims/640 on the remote (a later
    claim of 640: refs/claims/640@2, ...); of two agents claiming at once, the
    server accepts exactly one. `git claim 640 641` claims the first it can win.

    No word becomes a claim by accident: a ticket word that looks like a
    command (a subcommand or one slip from one, as `lsit`; `status`, `release`,
    `push`, ...) is refused with exit 2 and a "did you mean". Such a ticket is
    claimed with `git claim take list` or `git claim -- list`. Options may come
    before a subcommand (`git claim --json list`); `git claim help [COMMAND]`
    prints the help.

    `git claim --next` claims from the backlog instead (see --from).

    Exit codes: 0 success, 1 the answer is no (held by another, done, not the
    holder), 2 usage or bad input, 3 git, remote or tracker error, 4 `run`:
    the claim was lost, 5 work left undone, 6 `--next`: nothing eligible.
    See git-claim(1).
    """


@claim_group.command(DEFAULT_COMMAND, context_settings=CONTEXT_SETTINGS)
@click.argument("tickets", nargs=-1, metavar="TICKET...")
@claim_options
@remote_options
@json_option
def take_command(tickets: tuple[str, ...], pick_next: bool, source: str | None,
                 labels: tuple[str, ...], excluded: tuple[str, ...], no_gate: bool,
                 capabilities: str | None, worktree: str | None, base: str | None,
                 remote: str | None, agent: str | None, as_json: bool) -> None:
    """Claim the first TICKET that can be won, or --next from the backlog (the default command)."""
    with reporting(as_json=as_json, command="git claim"):
        import sys

        from ..errors import UsageError
        from ..ops.claim import take
        from .progress import StatusLine

        ids = parse_tickets(tickets)
        if not ids and not pick_next:
            raise UsageError("give at least one ticket id (e.g. `git claim 640`) or --next")
        line = StatusLine("reading the backlog")
        request = claim_request(ids, pick_next=pick_next, labels=labels, excluded=excluded,
                                source=source, no_gate=no_gate, worktree=worktree, base=base,
                                capabilities=capabilities,
                                **({"stdin": sys.stdin, "progress": line.update}
                                   if pick_next else {}))
        session = session_from(remote, agent, source=source)
        try:
            claimed = take(session, request)
        finally:
            line.finish()
        emit_claimed(claimed, as_json=as_json)
