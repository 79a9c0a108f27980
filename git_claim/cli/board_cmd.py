"""`git claim list` (the board) and `git claim reopen`."""

from __future__ import annotations

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, parse_tickets, remote_options, session_from
from .output import emit_board, emit_reopened, reporting


@claim_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--watch", "watch", is_flag=False, flag_value="2", default=None,
              metavar="[SECONDS]", help="Redraw the board in place every SECONDS (default 2);"
                                        " with --json, one JSON array per refresh.")
@remote_options
@json_option
def list_command(watch: str | None, remote: str | None, agent: str | None,
                 as_json: bool) -> None:
    """The board: every claim in force on the remote, by state then age (--json for scripts).

    One row per ticket whose newest claim is in force. Columns: ticket (*
    marks ours), state (live, stale, done, blocked, unknown), holder, age,
    last heartbeat, time left before it can be reaped, and the tracker title
    when the last backlog listing knew it.
    """
    with reporting(as_json=as_json, command="git claim list"):
        import os
        import shutil
        import sys
        import time

        from ..clock import parse_duration
        from ..ops.board import BoardRequest, read_board

        session = session_from(remote, agent)
        pause = parse_duration(watch, what="watch interval") if watch else 0.0
        terminal = sys.stdout.isatty()
        colour = terminal and not os.environ.get("NO_COLOR")
        while True:
            board = read_board(session, BoardRequest(titles=not as_json))
            width = shutil.get_terminal_size((100, 24)).columns if terminal else None
            if watch and terminal and not as_json:
                click.echo("\x1b[H\x1b[2J", nl=False)
            emit_board(board, as_json=as_json, width=width, colour=colour)
            if not watch:
                return
            try:
                time.sleep(max(0.2, pause))
            except KeyboardInterrupt:
                return


@claim_group.command("reopen", context_settings=CONTEXT_SETTINGS)
@click.argument("ticket")
@remote_options
@json_option
def reopen_command(ticket: str, remote: str | None, agent: str | None, as_json: bool) -> None:
    """Make a done or blocked TICKET claimable again."""
    with reporting(as_json=as_json, command="git claim reopen"):
        from ..ops.release import ReopenRequest, reopen

        (ticket_id,) = parse_tickets((ticket,))
        emit_reopened(reopen(session_from(remote, agent), ReopenRequest(ticket_id)),
                      as_json=as_json)
