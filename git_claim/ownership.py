"""What proves a claim is ours: its tag id (and nonce), kept in our git dir.

A name can be typed by anyone; the id of the tag we created, which covers
a 128-bit nonce, cannot be guessed. Records live in the per-worktree git dir,
so two agents in two worktrees of one clone hold their claims apart.

One record per claim *attempt*, never per ticket: several processes in one
checkout (agents sharing a clone, an agent script that forks workers) are
separate contenders, whether or not they share an agent name, and each
pushes its own tag. A record is written *before* the claim is pushed
("pending"), so a retry after a crash or a lost connection reuses the same
tag instead of minting a second nonce.

Which process a record belongs to right now is an advisory lock (flock) on
the record's lock file: the process that made or adopted the record holds it
until it exits. The kernel drops the lock when the process dies, even by
SIGKILL, so a held lock means a live process is trying or supervising that
claim, and a free lock means nobody is. Another process of the same agent
may adopt a pending record only by taking its lock, so of two adopters one
wins and the other mints its own tag.

    owned/<ticket>/<tag>.json   the record
    owned/<ticket>/<tag>.lock   its lock; holds the pid of the last holder
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .atomicfile import write_atomic

STORE_DIR = "git-claim/owned"


@dataclass
class Ownership:
    ticket: str
    ref: str
    remote_url: str
    tag: str
    nonce: str
    agent: str
    claimed_at: float
    pending: bool = True
    notes_tip: str | None = None  # the notes tip our last write left
    seq: int = 0
    worktree_copy: bool = False  # the copy a claim worktree carries for whoever works there


class Hold:
    """This process's lock on one record: kept until released or the process ends."""

    def __init__(self, path: Path, handle: int) -> None:
        self.path = path
        self.handle = handle

    def release(self, *, remove: bool = False) -> None:
        if self.handle < 0:
            return
        if remove:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.handle)  # closing the descriptor drops the flock
        self.handle = -1


def _lock(path: Path) -> Hold | None:
    """Take the flock on `path` without waiting; None when another process has it."""
    try:
        import fcntl
    except ImportError:  # no flock: every record counts as free (one agent per checkout)
        return Hold(path, os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return None
    os.ftruncate(handle, 0)
    os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
    return Hold(path, handle)


def _locked_by_another(path: Path) -> bool:
    """Try the flock on `path` and let it go: the pid of its last holder stays."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # a record whose lock file is gone: nobody holds it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)
    return False


class OwnershipStore:
    """The claim records of one git dir, and the locks of the records this process holds."""

    def __init__(self, git_dir: Path) -> None:
        self.root = git_dir / STORE_DIR
        self.holds: dict[str, Hold] = {}  # tag -> our lock on its record

    def _dir(self, ticket: str) -> Path:
        return self.root / ticket

    def _record_path(self, record: Ownership) -> Path:
        return self._dir(record.ticket) / f"{record.tag}.json"

    def _lock_path(self, record: Ownership) -> Path:
        return self._dir(record.ticket) / f"{record.tag}.lock"

    def records(self, ticket: str, *, ref: str, remote_url: str) -> list[Ownership]:
        """Every record for `ticket` on this remote, newest first.

        `ref`: the ticket's first claim ref; records of its later claims
        (`<ref>@<epoch>`) are the same ticket's.
        """
        self._adopt_legacy(ticket)
        found = []
        folder = self._dir(ticket)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = _read(path)
            if record is not None and _same_ticket(record.ref, ref) \
                    and record.remote_url == remote_url and record.ticket == ticket:
                found.append(record)
        found.sort(key=lambda r: r.claimed_at, reverse=True)
        return found

    def reread(self, record: Ownership) -> Ownership | None:
        """The record as it is on disk now (None: dropped meanwhile)."""
        return _read(self._record_path(record))

    def hold(self, record: Ownership) -> bool:
        """Take the record's lock for this process; False when a live process has it."""
        if record.tag in self.holds:
            return True
        self._dir(record.ticket).mkdir(parents=True, exist_ok=True)
        taken = _lock(self._lock_path(record))
        if taken is None:
            return False
        self.holds[record.tag] = taken
        return True

    def copy_to(self, git_dir: Path, record: Ownership) -> None:
        """Put a copy of our record in another git dir (a worktree made for the claim).

        The copy is locked by this process as the original is, so a process
        in that worktree cannot take the claim over while we supervise it.
        """
        copy = replace(record, worktree_copy=True)
        other = OwnershipStore(git_dir)
        other.hold(copy)
        other.put(copy)
        for tag, held in other.holds.items():
            self.holds[f"{git_dir}:{tag}"] = held

    def hold_fds(self, record: Ownership) -> list[int]:
        """The descriptors of this process's locks on `record` and its copies."""
        return [held.handle for key, held in self.holds.items()
                if held.handle >= 0 and (key == record.tag or key.endswith(f":{record.tag}"))]

    def supervised_elsewhere(self, record: Ownership) -> bool:
        """Whether another live process holds the record's lock (it works on the claim).

        The lock is only tried: when it is free it is let go at once, so
        asking never adopts a claim.
        """
        if record.tag in self.holds or not self._dir(record.ticket).is_dir():
            return False
        return _locked_by_another(self._lock_path(record))

    def held_here(self, record: Ownership) -> bool:
        return record.tag in self.holds

    def holder_pid(self, record: Ownership) -> int | None:
        """The pid written by the record's current (or last) holder, for messages."""
        try:
            return int(self._lock_path(record).read_text().strip())
        except (OSError, ValueError):
            return None

    def put(self, record: Ownership) -> None:
        """Write the record (take its hold first when it is new: see the module's docstring)."""
        write_atomic(self._record_path(record), json.dumps(asdict(record)))

    def get(self, ticket: str, *, ref: str, remote_url: str) -> Ownership | None:
        """The record this process holds for `ticket`, else the newest settled one."""
        records = [r for r in self.records(ticket, ref=ref, remote_url=remote_url)
                   if not r.pending or r.tag in self.holds]
        records.sort(key=lambda r: r.tag not in self.holds)
        return records[0] if records else None

    def drop(self, record: Ownership) -> None:
        """Forget a claim attempt that is over (ours, or one whose process is gone)."""
        try:
            self._record_path(record).unlink()
        except FileNotFoundError:
            pass
        held = self.holds.pop(record.tag, None)
        if held is not None:
            held.release(remove=True)

    def all(self) -> list[Ownership]:
        records: list[Ownership] = []
        if not self.root.is_dir():
            return records
        for path in sorted(self.root.glob("*/*.json")) + sorted(self.root.glob("*.json")):
            record = _read(path)
            if record is not None:
                records.append(record)
        return records

    def _adopt_legacy(self, ticket: str) -> None:
        """A record of an earlier version (owned/<ticket>.json) moves into the new layout."""
        legacy = self.root / f"{ticket}.json"
        record = _read(legacy) if legacy.is_file() else None
        if record is None:
            return
        self._dir(ticket).mkdir(parents=True, exist_ok=True)
        target = self._record_path(record)
        if not target.exists():
            os.replace(legacy, target)
        else:
            legacy.unlink(missing_ok=True)


def _read(path: Path) -> Ownership | None:
    try:
        return Ownership(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _same_ticket(record_ref: str, first_ref: str) -> bool:
    """Whether a record's claim ref is one of the claims whose first ref is `first_ref`."""
    return record_ref == first_ref or record_ref.startswith(first_ref + "@")
