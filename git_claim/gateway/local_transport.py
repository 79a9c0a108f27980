"""Path and file:// remotes: a reference transaction on the remote repository.

libgit2's local transport writes updates with force, deletes whatever is
there and checks "already exists" outside the lock, so it cannot be a lock.
Instead we copy the objects into the remote's object database and change
each ref inside a reference transaction: lock the ref, read it under the
lock, compare with the expected value, then write. git's own writers take the
same `.lock` file, so this is a true compare-and-swap against them too. An
update's guard ref is locked and read in the same transaction, and left as
it is.
Hooks on the remote do not run on this path (git's local push runs them;
choose `claim.transport git` where they matter).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import GitError
from .libgit2_env import pygit2
from .libgit2_transport import Libgit2Transport
from .localrepo import LOOKUP_ERRORS, MAX_OBJECT_BYTES, LocalRepo
from .shared_perms import shared_writes
from .transport import RefUpdate, UpdateResult, UpdateStatus


def local_path(url: str) -> Path | None:
    """The filesystem path of a path or file:// remote, else None."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if "://" in url:
        return None
    if ":" in url.split("/", 1)[0] and not url.startswith(("/", ".")):
        return None  # scp-like ssh: host:path
    return Path(url)


class LocalTransport(Libgit2Transport):
    """Lists and fetches like libgit2 (reading is safe); pushes by transaction."""

    name = "local"

    def __init__(self, local: LocalRepo, remote_name: str, url: str, path: Path) -> None:
        super().__init__(local, remote_name, url)
        base = local.location.worktree or local.location.git_dir
        self.path = path if path.is_absolute() else (base / path)

    def _remote_repo(self) -> pygit2.Repository:
        try:
            return pygit2.Repository(str(self.path))
        except (pygit2.GitError, KeyError) as error:
            raise GitError(f"{self.url}: not a git repository ({error})") from error

    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        remote = self._remote_repo()
        found: dict[str, str] = {}
        for name in remote.references:
            if name.startswith(tuple(prefixes)):
                try:
                    target = remote.references[name].target
                except (KeyError, ValueError, pygit2.GitError):  # a name libgit2 will not read
                    continue
                if isinstance(target, pygit2.Oid):
                    found[name] = str(target)
        return found

    def refetch(self, refs: Sequence[str], objects: Sequence[str] = ()) -> None:
        self.fetch(refs, whole=True)

    def fetch(self, sources: Sequence[str], *, whole: bool = False) -> None:
        """Copy objects straight from the remote's object database.

        (libgit2's local fetch negotiation fails on refs to tags of blobs,
        which is what claims are.) `whole`: look inside objects already
        present too, for tips this clone has but cannot read whole.
        """
        remote = self._remote_repo()
        exact = [s for s in sources if not s.endswith("*")]
        prefixes = tuple(s[:-1] for s in sources if s.endswith("*"))
        wanted = dict(self.list_refs(prefixes)) if prefixes else {}
        for name in exact:
            found = _read_ref(remote, name)
            if found:
                wanted[name] = found
        target = self.local.repo.odb
        copying: list[str] = []
        seen: set[str] = set()
        for oid in wanted.values():
            try:
                copying += _missing_objects(oid, remote.odb, target, seen, fetching=True,
                                            whole=whole)
            except LOOKUP_ERRORS:
                # an object the remote cannot produce (missing or corrupt): that one
                # claim stays unreadable and is reported so; the others are unaffected
                continue
        try:
            if len(copying) >= PACK_AT:
                _copy_as_pack(remote, copying,
                              self.local.location.common_dir / "objects" / "pack")
            else:
                for oid in copying:
                    target.write(*remote.odb.read(oid))
        except (pygit2.GitError, OSError) as error:
            # (a `git prune` or `git gc` in this clone removing a folder under our
            # write, a full disk): what was not copied reads as unknown, not as absent
            raise GitError(f"cannot copy objects into this clone: {error}") from error

    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        remote = self._remote_repo()
        # libgit2 ignores core.sharedRepository: without this, a group's first
        # writer would leave directories only it may write to
        with shared_writes(remote, [update.ref for update in updates]):
            for update in updates:
                if update.new:
                    _copy_objects(update.new, self.local.repo.odb, remote.odb)
            patience = _lock_patience(remote)
            return [self._swap_when_unlocked(remote, update, patience) for update in updates]

    @classmethod
    def _swap_when_unlocked(cls, remote: pygit2.Repository, update: RefUpdate,
                            patience: float) -> UpdateResult:
        """Swap, waiting while another writer holds a lock we need.

        A contender's `.lock` lives for the microseconds of its own swap, but
        on a loaded machine that writer may be descheduled while holding it.
        git's own writers wait for such a lock (core.filesRefLockTimeout);
        we do the same, so the loser of a race reads the winner's ref and
        reports a lost race instead of a refusal. A lock that outlives the
        patience is reported as it is: a stale `.lock` file.
        """
        deadline = time.monotonic() + patience
        pause = 0.002
        while True:
            result = cls._swap(remote, update)
            if not result.locked or time.monotonic() >= deadline:
                return result
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.1)

    @staticmethod
    def _swap(remote: pygit2.Repository, update: RefUpdate) -> UpdateResult:
        try:
            with remote.transaction() as txn:
                txn.lock_ref(update.ref)
                if update.guard is not None:
                    txn.lock_ref(update.guard.ref)
                    guarded = _read_ref(remote, update.guard.ref)
                    if guarded != update.guard.expect:
                        raise _Unguarded(guarded)
                current = _read_ref(remote, update.ref)
                if current != update.expect:
                    raise _Stale(current)
                if update.new is None:
                    txn.remove(update.ref)
                else:
                    txn.set_target(update.ref, update.new, message="git-claim")
        except _Unguarded as broken:
            assert update.guard is not None
            return UpdateResult(update.ref, UpdateStatus.GUARD_BROKEN,
                                f"{update.guard.ref} changed", broken.current, True)
        except _Stale as stale:
            return UpdateResult(update.ref, UpdateStatus.STALE, "remote changed", stale.current,
                                True)
        except (pygit2.GitError, OSError, KeyError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            locked = [ref for ref in (update.ref, update.guard.ref if update.guard else None)
                      if ref and os.path.exists(os.path.join(remote.path, ref + ".lock"))]
            if locked:
                message = f"{locked[0]} is locked on the remote ({locked[0]}.lock exists)"
                return _Locked(update.ref, UpdateStatus.REJECTED, message)
            return UpdateResult(update.ref, UpdateStatus.REJECTED, message)
        return UpdateResult(update.ref, UpdateStatus.OK)


class _Locked(UpdateResult):
    """A refusal because another writer held a lock: worth waiting for."""

    @property
    def locked(self) -> bool:
        return True


def _lock_patience(remote: pygit2.Repository) -> float:
    """Seconds to wait for a contended ref lock: the remote's own setting, else 5 s.

    git waits 100 ms by default (core.filesRefLockTimeout); a claim race puts
    dozens of writers on one ref at once, so we wait longer unless the remote
    says otherwise.
    """
    try:
        configured = remote.config.get_int("core.filesRefLockTimeout")
    except (KeyError, ValueError, pygit2.GitError):
        return 5.0
    return max(configured, 0) / 1000.0


class _Stale(Exception):
    def __init__(self, current: str | None) -> None:
        super().__init__(current)
        self.current = current


class _Unguarded(_Stale):
    """The guard ref did not hold its expected value."""


def _copy_objects(oid: str, source: pygit2.Odb, target: pygit2.Odb) -> None:
    """Copy `oid` and whatever it references that `target` lacks (one push's few objects)."""
    for missing in _missing_objects(oid, source, target, set()):
        target.write(*source.read(missing))


# From this many objects a fetch writes one pack instead of loose objects: a
# loose object is a file and a folder lookup each, seconds for the 10,000
# claims of a large listing, and a pack is two files.
PACK_AT = 64


def _copy_as_pack(source: pygit2.Repository, oids: list[str], pack_folder: Path) -> None:
    """Write `oids` (objects of `source`) as one pack into the local pack folder.

    libgit2 writes the pack under a temporary name and renames it into place,
    so a reader never sees half a pack.
    """
    builder = pygit2.PackBuilder(source)
    for oid in oids:
        builder.add(pygit2.Oid(hex=oid))
    builder.write(str(pack_folder))


def _missing_objects(oid: str, source: pygit2.Odb, target: pygit2.Odb, seen: set[str], *,
                     fetching: bool = False, whole: bool = False) -> list[str]:
    """`oid` and whatever it references that `target` lacks and `seen` does not hold.

    Children come before their parents (post-order), and callers write in
    this order: a copy cut short (SIGKILL, a full disk) leaves objects
    nothing refers to, never a commit or tree without what it names. Written
    the other way, the next copy finds the parent present, skips it and its
    children, and a notes commit stays without its note (on the remote, a
    ref would then point to it).

    When fetching, a foreign tag or blob larger than the tool ever parses is
    left behind (it would be read whole into memory to be copied); its claim
    then reads as unreadable, which is what it would be anyway. `whole`:
    objects `target` has are looked into too (found only if missing). Raises
    a lookup error when `source` cannot produce an object.
    """
    from pygit2.enums import ObjectType

    found: list[str] = []
    expanded: set[str] = set()
    pending: list[tuple[str, bool]] = [(oid, False)]
    while pending:
        current, children_done = pending.pop()
        if children_done:
            found.append(current)
            continue
        if current in seen or current in expanded:
            continue
        present = target.exists(current)
        if present and not whole:
            continue
        expanded.add(current)
        if fetching:
            kind, size = source.read_header(current)
            if size > MAX_OBJECT_BYTES and kind in (ObjectType.TAG, ObjectType.BLOB):
                continue
        kind, data = source.read(current)
        if not present:
            pending.append((current, True))
        pending.extend((child, False) for child in _references(kind, data))
    seen.update(found)
    return found


def _read_ref(repo: pygit2.Repository, name: str) -> str | None:
    try:
        target = repo.references[name].target
    except (KeyError, ValueError):
        return None
    return str(target) if isinstance(target, pygit2.Oid) else None


def _references(kind: int, data: bytes) -> list[str]:
    """Object ids an object points to (enough for tags, commits and trees)."""
    from pygit2.enums import ObjectType

    found: list[str] = []
    if kind == ObjectType.TAG or kind == ObjectType.COMMIT:
        header = data.split(b"\n\n", 1)[0]
        for line in header.splitlines():
            key, _, value = line.partition(b" ")
            if key in (b"object", b"tree", b"parent"):
                found.append(value.decode("ascii"))
    elif kind == ObjectType.TREE:
        position = 0
        while position < len(data):
            nul = data.index(b"\0", position)
            found.append(data[nul + 1: nul + 21].hex())
            position = nul + 21
    return found
