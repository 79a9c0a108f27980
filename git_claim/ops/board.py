"""`git claim list`: the board, judged by the reaper's own staleness rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import ExitCode

if TYPE_CHECKING:
    from ..board import BoardRow
    from ..session import Session

__all__ = ["Board", "BoardRequest", "read_board"]


@dataclass(frozen=True)
class BoardRequest:
    titles: bool = True  # the tracker titles the last backlog listing cached


@dataclass(frozen=True)
class Board:
    rows: tuple[BoardRow, ...]  # by state, then oldest first
    titles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    exit_code: ExitCode = ExitCode.OK


def read_board(session: Session, request: BoardRequest) -> Board:
    """One reading of every claim in force on the remote."""
    from ..backlog_cache import titles
    from ..board import board_rows

    known = titles(session.location.common_dir) if request.titles else {}
    return Board(tuple(board_rows(session)), MappingProxyType(known))
