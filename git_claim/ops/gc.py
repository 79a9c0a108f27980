"""`git claim gc`: remove local worktrees of claims this clone no longer holds.

Which tickets are still ours is a protocol question (the remote's newest
claim is the one our ownership records name, and it is held); what may be
removed without losing work is worktree's. Nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["Cleaned", "GcRequest", "GcResult", "gc", "held_here"]


@dataclass(frozen=True)
class GcRequest:
    dry_run: bool = False


@dataclass(frozen=True)
class Cleaned:
    """One ticket's worktree and branch: removed (or would be), or kept and why."""

    ticket: str
    removed: bool
    message: str


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    worktrees: tuple[Cleaned, ...]


def held_here(session: Session) -> set[str]:
    """Tickets some worktree of this clone still holds on the remote.

    Ownership records are per worktree, so the union over all of them; a
    record counts only while the remote's newest claim is its tag, held or
    handed on and not yet taken up (its worktree and branch wait for the new
    holder).
    """
    from ..claims import read_claims
    from ..ownership import OwnershipStore
    from ..worktree import git_dirs

    views = read_claims(session)
    records = [record for git_dir in git_dirs(session.location)
               for record in OwnershipStore(git_dir).all()]
    return {record.ticket for record in records
            if record.ticket in views and views[record.ticket].oid == record.tag
            and (views[record.ticket].held or views[record.ticket].handed_to is not None)}


def gc(session: Session, request: GcRequest) -> GcResult:
    """Remove (or, dry, name) our worktrees and branches of tickets no longer held."""
    from ..worktree import gc as clean_up

    results = clean_up(session.location, held=held_here(session), dry_run=request.dry_run)
    return GcResult(request.dry_run, tuple(Cleaned(ticket, removed, message)
                                           for ticket, removed, message in results))
