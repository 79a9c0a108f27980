"""`git claim log`: a ticket's history, every state change included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ExitCode

if TYPE_CHECKING:
    from ..history import LogEvent
    from ..session import Session

__all__ = ["LogRequest", "TicketLog", "ticket_log"]


@dataclass(frozen=True)
class LogRequest:
    ticket: str  # already validated


@dataclass(frozen=True)
class TicketLog:
    ticket: str
    events: tuple[LogEvent, ...]  # oldest first
    exit_code: ExitCode = ExitCode.OK


def ticket_log(session: Session, request: LogRequest) -> TicketLog:
    """Claims, heartbeats, releases (free, done, blocked), reaps and reopenings."""
    from ..history import history

    return TicketLog(request.ticket, tuple(history(session, request.ticket)))
