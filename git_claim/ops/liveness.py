"""`git claim heartbeat` and `git claim verify`: is the claim still ours, and say we live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ExitCode

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["Beat", "HeartbeatRequest", "Verified", "VerifyRequest", "heartbeat", "verify"]


@dataclass(frozen=True)
class HeartbeatRequest:
    ticket: str  # already validated


@dataclass(frozen=True)
class Beat:
    ticket: str
    seq: int
    time: float
    exit_code: ExitCode = ExitCode.OK


def heartbeat(session: Session, request: HeartbeatRequest) -> Beat:
    """One heartbeat on our claim; RefusedError (exit 1) when it is no longer ours."""
    from ..liveness import heartbeat as beat

    done = beat(session, request.ticket)
    return Beat(done.ticket, done.seq, done.time)


@dataclass(frozen=True)
class VerifyRequest:
    ticket: str | None = None  # None: the ticket of the current claim branch


@dataclass(frozen=True)
class Verified:
    ticket: str
    epoch: int
    exit_code: ExitCode = ExitCode.OK


def verify(session: Session, request: VerifyRequest) -> Verified:
    """Succeed only while the remote claim is ours; RefusedError (exit 1) otherwise."""
    from ..fence import ticket_of_current_branch
    from ..liveness import verify as verify_claim

    ticket = request.ticket if request.ticket is not None else ticket_of_current_branch(session)
    view = verify_claim(session, ticket)
    return Verified(ticket, view.epoch)
