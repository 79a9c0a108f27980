"""The reaper's memory: since when the reapers of this clone have seen each claim as it is.

Rule 2 of the staleness rule (docs/protocol.md, "Clock skew") frees a claim
that has been seen with the same claim tag and notes tip for the TTL. That
duration must be real time: it was once measured on the wall clock, and a
reaper whose clock was stepped back 15 minutes between two runs reaped a live
claim after 2 s. So every time kept here is `clock.elapsed()` (CLOCK_BOOTTIME:
never steps, shared by every process on the machine, counts suspend), and the
file names the clock its times are on: the boot id and the time namespace
(which may shift CLOCK_BOOTTIME for the processes inside it). A file written
on another clock (another boot, another machine sharing the git dir, another
time namespace, a format before this one, no boot id) is thrown away whole,
never trusted, as is any time no reading of this clock can have produced.
Where the system offers no boot id, nothing is remembered and rule 2 is off:
only the timestamp rule, which needs no memory, frees claims there.

Why a first-seen time never moves earlier than the state it belongs to
really appeared on the remote, even with reapers running at once in one
clone: every time is read after the listing that showed that very state (a
view is judged after it was read), so it is later than the beat that made the
state. An entry is kept from run to run only while its claim tag and notes
tip stay the same, and notes commits never come back once replaced, so an
old entry cannot attach to a newer state. When two reapers' entries for one
state meet, the earlier time is kept: both are readings of one clock, each
taken after its writer saw that state, so the earlier is as safe as the later
and closer to the truth. Taking the earlier of two values is only wrong
across clocks, which is exactly the bug above; hence one clock per file.

Why it never moves later than needed either: the file is written whole (a
temporary file renamed over it, so no reader sees a torn mix) under an
advisory lock, merging with what is on disk at that moment, so a concurrent
reaper's news is not rolled back. What a reaper drops is only what it read
and found gone. If the lock cannot be had, or anything fails, the run's
observations are simply not kept: forgetting only delays a reap.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomicfile import write_atomic
from .clock import boot_id, elapsed

if TYPE_CHECKING:
    from .claims import ClaimView

FORMAT = 2
LOCK_WAIT = 5.0  # seconds; the lock is held for one small read and write

# ticket -> [claim tag, notes tip, first seen, last seen], times on clock.elapsed()
Entry = list[Any]


def _time_namespace() -> str | None:
    """This process's time namespace (Linux): two of them may see different boot clocks."""
    try:
        return os.readlink("/proc/self/ns/time")
    except OSError:
        return None


class ReaperMemory:
    """Since when claims have been seen unchanged, on a clock that never steps.

    `seen` is what was read at the start; `updated` what this run will keep
    (the caller may extend it, e.g. with `seen` when it judged only some
    tickets). Both map a ticket to an `Entry`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        boot = boot_id()
        self.clock: dict[str, Any] | None = (
            None if boot is None else {"boot": boot, "timens": _time_namespace()})
        self._read_stat: tuple[int, int, int] | None = None
        self.seen: dict[str, Entry] = self._read() if self.clock else {}
        self._seen_stat = self._read_stat
        self.updated: dict[str, Entry] = {}

    def unchanged_for(self, view: ClaimView) -> float | None:
        """Seconds of real time this claim has been seen as it is now; None: no memory here.

        Call it only with a view already read from the remote: the time taken
        here must come after the state was seen.
        """
        if self.clock is None:
            return None
        at = elapsed()
        key = [view.oid, view.notes_tip]
        previous = self.seen.get(view.ticket)
        first = previous[2] if previous is not None and previous[:2] == key else at
        self.updated[view.ticket] = [*key, first, at]
        return at - first

    def remembered_for(self, view: ClaimView) -> float | None:
        """How long the reapers of this clone have seen this claim as it is now; None: never.

        Read only, for the board: unlike `unchanged_for`, a claim no reaper
        has seen yet counts as not remembered (no reaper's clock runs for it).
        """
        previous = self.seen.get(view.ticket)
        if self.clock is None or previous is None or previous[:2] != [view.oid, view.notes_tip]:
            return None
        return float(elapsed() - previous[2])

    def save(self) -> None:
        """Keep `updated`, merged with what other reapers wrote since it was read."""
        if self.clock is None:
            return
        try:
            with self._locked():
                unchanged = self._seen_stat is not None and self._stat() == self._seen_stat
                merged = self._merge(self.seen if unchanged else self._read())
                write_atomic(self.path, json.dumps({"format": FORMAT, **self.clock,
                                                    "seen": merged}))
        except (OSError, TimeoutError):
            pass  # memory is an optimisation; the timestamp rule still holds

    def _merge(self, disk: dict[str, Entry]) -> dict[str, Entry]:
        """Ours, plus the news on disk; one state's entries keep the earlier first sight."""
        merged = dict(self.updated)
        for ticket, theirs in disk.items():
            ours = merged.get(ticket)
            if ours is None:
                if self.seen.get(ticket) != theirs:  # we read it and found it gone: drop
                    merged[ticket] = theirs  # written since we read: someone's news
            elif ours[:2] == theirs[:2]:
                merged[ticket] = [*ours[:2], min(ours[2], theirs[2]), max(ours[3], theirs[3])]
            elif theirs[3] > ours[3]:
                merged[ticket] = theirs  # another state, seen after ours: the newer
        return merged

    def _read(self) -> dict[str, Entry]:
        """The entries on disk if written on this clock, each one checked; else none."""
        self._read_stat = self._stat()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        limit = elapsed()  # read after the file: no honest time in it can be later
        if not isinstance(data, dict) or data.get("format") != FORMAT or \
                not isinstance(data.get("seen"), dict) or self.clock is None or \
                any(data.get(name) != value for name, value in self.clock.items()):
            return {}
        return {ticket: entry for ticket, entry in data["seen"].items()
                if isinstance(ticket, str) and _sound(entry, limit)}

    def _stat(self) -> tuple[int, int, int] | None:
        """The file's identity: every write renames a new file over it, so this changes."""
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An advisory lock beside the file, waited for at most LOCK_WAIT."""
        try:
            import fcntl
        except ImportError:  # no flock: last writer wins, which only forgets
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path.with_name(self.path.name + ".lock"),
                         os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError("reaper memory is locked") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(handle)  # closing the descriptor drops the lock


def _sound(entry: Any, limit: float) -> bool:
    """[tag, notes tip or null, first, last] with 0 <= first <= last <= limit."""
    if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str) or \
            not (entry[1] is None or isinstance(entry[1], str)):
        return False
    times = entry[2:]
    return all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
               for t in times) and 0 <= times[0] <= times[1] <= limit
