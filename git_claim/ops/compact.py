"""`git claim compact`: delete superseded claims (a maintenance identity's job)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import ExitCode, IncompleteError

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["CompactRequest", "Compacted", "compact"]


@dataclass(frozen=True)
class CompactRequest:
    dry_run: bool = False


@dataclass(frozen=True)
class Compacted:
    dry_run: bool
    tickets: int  # tickets with claims
    superseded: tuple[str, ...]  # refs judged superseded
    deleted: tuple[str, ...]
    refused: Mapping[str, str]  # ref -> the host's words

    @property
    def failure(self) -> IncompleteError | None:
        """Why the command is incomplete (exit 5): the remote refused some deletes."""
        if not self.refused:
            return None
        ref, why = next(iter(self.refused.items()))
        count = len(self.refused)
        return IncompleteError(
            f"the remote refused to delete {count} superseded claim{'s' if count != 1 else ''}"
            f" (needs the right to delete under the claim namespace): {ref}: {why}")

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.INCOMPLETE if self.refused else ExitCode.OK


def compact(session: Session, request: CompactRequest) -> Compacted:
    """Delete every claim ref between its ticket's first and newest; one listing, one push."""
    from ..compaction import compact as compact_claims

    report = compact_claims(session, dry_run=request.dry_run)
    return Compacted(request.dry_run, report.tickets, tuple(report.superseded),
                     tuple(report.deleted), MappingProxyType(dict(report.refused)))
