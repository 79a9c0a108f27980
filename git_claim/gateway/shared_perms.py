"""What `core.sharedRepository` asks of the files we write into a path remote.

git gives whatever it creates in a shared repository the permissions the
setting names (its `adjust_shared_perm`): for `group`, group-writable files
and group-writable directories with the setgid bit; for `0xxx`, exactly
those modes. libgit2
ignores the setting, so the first user's claim on a group-shared bare
repository left `refs/claims/` and new object directories writable by that
user alone, and every other member of the group was then refused.

Around our writes into such a repository we set the umask git's rules imply
(every file libgit2 creates then gets git's mode at once: loose objects,
ref and lock files, reflogs, a rewritten packed-refs), and afterwards give
the directories the writes created git's mode and the setgid bit, as git
does. A repository that is not shared is written exactly as before.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import GitError
from .libgit2_env import pygit2

PERM_UMASK = 0
PERM_GROUP = 0o660
PERM_EVERYBODY = 0o664
# What C's strtol(value, &end, 8) reads to the end (an empty value reads as 0).
_OCTAL = re.compile(r"\s*[+-]?[0-7]+|")
# What git_parse_int reads: a decimal or hex integer with an optional unit.
_INTEGER = re.compile(r"\s*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[kKmMgG]?")
# The umask is the process's: two threads must not each restore the other's value.
_umask_lock = threading.RLock()


def parse_shared(value: str | None) -> int:
    """git's reading of a core.sharedRepository value (its `git_config_perm`).

    0 leaves modes to the umask; a positive value is the bits added to what
    the umask allows; a negative value is the exact mode (`0xxx`), negated.
    A value git rejects is rejected here too, rather than written with
    modes that lock the group out.
    """
    if value is None:  # a bare `sharedRepository` line means true
        return PERM_GROUP
    if value == "umask":
        return PERM_UMASK
    if value == "group":
        return PERM_GROUP
    if value in ("all", "world", "everybody"):
        return PERM_EVERYBODY
    if not _OCTAL.fullmatch(value):
        return PERM_GROUP if _boolean(value) else PERM_UMASK
    number = int(value or "0", 8)
    if number in (0, 1, 2):  # git's compatibility values: umask, group, everybody
        return (PERM_UMASK, PERM_GROUP, PERM_EVERYBODY)[number]
    if number & 0o600 != 0o600:
        raise GitError(f"core.sharedRepository {value} on the remote leaves the owner "
                       "without read and write access")
    return -(number & 0o666)


def _boolean(value: str) -> bool:
    """git_config_bool: true/yes/on, false/no/off, or an integer (with k/m/g)."""
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    found = _INTEGER.fullmatch(value)
    if found is None:
        raise GitError(f"bad core.sharedRepository value '{value}' on the remote")
    return any(digit not in "0xX" for digit in found.group(1))  # not zero


def shared_setting(repo: pygit2.Repository) -> int:
    """The repository's core.sharedRepository as git reads it (0 when unset)."""
    try:
        value = repo.config["core.sharedRepository"]  # None for a line without a value
    except KeyError:
        return PERM_UMASK
    return parse_shared(value)


def _shared_mode(mode: int, shared: int) -> int:
    """The mode git gives a path it created with `mode` (its `adjust_shared_perm`)."""
    tweak = -shared if shared < 0 else shared
    if not mode & stat.S_IWUSR:
        tweak &= ~0o222
    if mode & stat.S_IXUSR:
        tweak |= (tweak & 0o444) >> 2  # who may read may also search
    new = (mode & ~0o777) | tweak if shared < 0 else mode | tweak
    if stat.S_ISDIR(mode):
        new |= (new & 0o444) >> 2
        if new & 0o060:  # the group gets access: what is created inside keeps the group
            new |= stat.S_ISGID
    return new


def _umask_for(shared: int, current: int) -> int:
    """The umask that gives files libgit2 creates (0666, 0444 for objects) git's mode at once.

    Directories (0777) get their search bits too; their setgid bit is
    inherited from a setgid parent or set afterwards.
    """
    wanted = -shared if shared < 0 else shared
    wanted |= (wanted & 0o444) >> 2  # directories' search bits
    if shared < 0:
        return 0o777 & ~wanted
    return current & ~wanted


@contextmanager
def shared_writes(repo: pygit2.Repository, refs: Sequence[str]) -> Iterator[None]:
    """Around writes of objects and of `refs` into `repo`: give git's shared modes.

    Nothing changes for a repository that is not shared. The directories a
    write may create are the object fan-out directories and the ones above
    each ref and its reflog; those that did not exist before are adjusted
    after it. One that another user made in the meantime is theirs to adjust
    (chmod is refused) and is left alone, as git leaves it.
    """
    shared = shared_setting(repo)
    if shared == PERM_UMASK:
        yield
        return
    git_dir = Path(repo.path)
    objects = git_dir / "objects"
    objects_before = _entries(objects)
    candidates = {git_dir / top / "/".join(ref.split("/")[:depth])
                  for ref in refs for top in ("", "logs")
                  for depth in range(1, ref.count("/") + 1)}
    candidates.add(git_dir / "logs")
    missing = [path for path in candidates if not os.path.lexists(path)]
    with _umask_lock:
        current = os.umask(0o077)  # private for the instant before the real value
        os.umask(_umask_for(shared, current))
        try:
            yield
        finally:
            os.umask(current)
            created = missing + [objects / name for name in _entries(objects) - objects_before]
            for path in sorted(created, key=lambda found: len(found.parts)):
                _adjust(path, shared)


def _entries(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _adjust(path: Path, shared: int) -> None:
    """git's adjust_shared_perm for a directory we created (files get it from the umask)."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISDIR(mode):
            return
        wanted = _shared_mode(mode, shared)
        if stat.S_IMODE(wanted) != stat.S_IMODE(mode):
            os.chmod(path, stat.S_IMODE(wanted))
    except OSError:
        pass  # gone again (an empty ref directory pruned), or another user's: not ours to fix
