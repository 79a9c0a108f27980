"""The operation log: the history of the tool's remote state changes, for checking.

A lock is only as good as the histories it allows, and a history can only be
checked if it is written down as it happens, by the processes that act. With
GIT_CLAIM_OPLOG=<file>, each operation (a claim push, a heartbeat, a release,
a reap of one ticket, a reopen, and the command `git claim run` runs) appends
one JSON line when it starts, a "try" line naming each value it is about to
push, and one line when it ends: outcome "ok" (the tool acted on success),
"failed" (it concluded that nothing changed) or "unknown" (an error left it
unsure). A process killed mid-operation leaves a start without an end: also
unknown. Each line is a single os.write on a file opened with O_APPEND, so
the lines of concurrent processes interleave whole.

Times are the machine's clock (time.time()), never the shifted clock of
GIT_CLAIM_CLOCK_OFFSET, so that lines of processes with skewed clocks
compare; `wall()` converts a timestamp of the tool's clock. Unset, nothing is
written. Writing never raises and never changes what the tool does. The soak
(tests/soak) records and checks these histories; a test aid, like the clock
offset.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from types import TracebackType
from typing import Any

from .errors import RefusedError

OPLOG_VARIABLE = "GIT_CLAIM_OPLOG"
OK, FAILED, UNKNOWN = "ok", "failed", "unknown"

_counter = itertools.count(1)
_open: dict[str, int] = {}
_process = ""  # pid and a random token: pids are reused over a long history


def enabled() -> bool:
    return bool(os.environ.get(OPLOG_VARIABLE))


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get(OPLOG_VARIABLE)
    if not path:
        return
    try:
        fd = _open.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            _open[path] = fd
        os.write(fd, (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode())
    except (OSError, TypeError, ValueError):
        pass  # the log is an observer: it never changes what the tool does


def wall(at: float) -> float:
    """The machine's time of `at`, a timestamp of the tool's (possibly shifted) clock."""
    from .clock import offset

    return at - offset()


class Op:
    """One operation in the log; a context manager that ends it as unknown on an error.

    Leaving the block with RefusedError ends it "failed" (the answer was no,
    nothing of ours changed); with any other exception, or without an
    explicit end, "unknown".
    """

    def __init__(self, op: str, ticket: str, agent: str, fields: dict[str, Any]) -> None:
        global _process
        self.on = enabled()
        self.ended = not self.on
        self.id = ""
        if self.on:
            if not _process:
                _process = f"{os.getpid()}-{secrets.token_hex(4)}"
            self.id = f"{_process}.{next(_counter)}"
            _write({"id": self.id, "ph": "start", "t": time.time(), "op": op, "ticket": ticket,
                    "agent": agent, "pid": os.getpid(), **fields})

    def step(self, **fields: Any) -> None:
        """A value about to be pushed (a claim tag, a notes commit), or an event within."""
        if self.on and not self.ended:
            _write({"id": self.id, "ph": "try", "t": time.time(), **fields})

    def end(self, outcome: str, **fields: Any) -> None:
        if not self.ended:
            self.ended = True
            _write({"id": self.id, "ph": "end", "t": time.time(), "outcome": outcome, **fields})

    def __enter__(self) -> Op:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _trace: TracebackType | None) -> None:
        if error is None:
            self.end(UNKNOWN)
        elif isinstance(error, RefusedError):
            self.end(FAILED, error=error.message[:200])
        else:
            self.end(UNKNOWN, error=str(error)[:200] or type(error).__name__)


def begin(op: str, ticket: str, *, agent: str, **fields: Any) -> Op:
    return Op(op, ticket, agent, fields)
