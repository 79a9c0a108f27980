"""`git claim compact`: delete superseded claims (a maintenance identity's job)."""

from __future__ import annotations

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option, remote_options, session_from
from .output import emit_compacted, reporting


@claim_group.command("compact", context_settings=CONTEXT_SETTINGS)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@remote_options
@json_option
def compact_command(dry_run: bool, remote: str | None, agent: str | None,
                    as_json: bool) -> None:
    """Delete claim refs superseded by a newer claim of the same ticket.

    Only the newest claim of a ticket counts; older ones are history. Their
    notes stay, so heartbeats, releases and reaps remain in `git claim log`
    (and so do their claim lines while the tags are still on the remote or in
    this clone). Needs the right to delete under the claim namespace, which
    agents do not need. Safe while agents claim. Exit 5 when the remote
    refused some deletes.
    """
    with reporting(as_json=as_json, command="git claim compact"):
        from ..ops.compact import CompactRequest, compact

        emit_compacted(compact(session_from(remote, agent), CompactRequest(dry_run)),
                       as_json=as_json)
