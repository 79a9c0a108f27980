"""Many new objects at once, written to disk as one pack instead of loose files.

A reap of 1,000 stale claims writes a note on each: a blob, a tree and a
commit, 3,000 objects. Written loose, each is a file, often a new folder,
and a check of the object store first: about 1.3 ms apiece (4 s of a 7 s
reap at 10,000 claims, cProfile). Here the objects go to libgit2's
in-memory object backend (mempack) of a second handle on the repository,
and are written out as one pack (libgit2's pack builder, which writes under
a temporary name and renames into place) before anything reads them from
another process. pygit2 declares none of the mempack calls, so they are
called through ctypes in the libgit2 that pygit2 loaded. Where that is not
available the objects are written loose, as before.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import GitError
from .libgit2_c import Unavailable, address, function
from .libgit2_env import pygit2

# above the loose (1) and packed (2) backends: new objects are written here
MEMORY_PRIORITY = 999


@contextmanager
def objects_in_memory(git_dir: Path, pack_folder: Path) -> Iterator[pygit2.Repository | None]:
    """A handle on the repository whose new objects stay in memory until the end.

    On a normal exit they are written to `pack_folder` as one pack; on an
    exception they are dropped (nothing refers to them). Yields None where
    mempack cannot be used: the caller then writes through its usual handle.
    """
    try:
        functions = _functions()
        scratch = pygit2.Repository(str(git_dir))
        backend = _add_memory_backend(scratch, functions)
    except (Unavailable, AttributeError, ImportError, OSError, TypeError, pygit2.GitError,
            KeyError):
        yield None
        return
    yield scratch
    try:
        builder = pygit2.PackBuilder(scratch)
        status = functions["git_mempack_write_thin_pack"](backend, address(builder._packbuilder))
        if status < 0:
            from pygit2.errors import check_error

            check_error(status)
        if len(builder):
            builder.write(str(pack_folder))
    except (pygit2.GitError, OSError) as error:
        # (a full disk, a folder we may not write): nothing was pushed yet
        raise GitError(f"cannot write new objects to {pack_folder}: {error}") from error


def _add_memory_backend(repo: pygit2.Repository,
                        functions: dict[str, Callable[..., int]]) -> int:
    """Put a mempack backend in front of `repo`'s object store; returns the backend."""
    backend = ctypes.c_void_p()
    odb = ctypes.c_void_p()
    repo_pointer = int.from_bytes(repo._pointer, sys.byteorder)
    if functions["git_mempack_new"](ctypes.byref(backend)) < 0:
        raise Unavailable("git_mempack_new failed")
    if functions["git_repository_odb"](ctypes.byref(odb), repo_pointer) < 0:
        raise Unavailable("git_repository_odb failed")
    try:
        # the object store owns the backend from here (freed with it)
        if functions["git_odb_add_backend"](odb, backend, MEMORY_PRIORITY) < 0:
            raise Unavailable("git_odb_add_backend failed")
    finally:
        functions["git_odb_free"](odb)  # our reference only; the repository keeps its own
    assert backend.value is not None
    return backend.value


_OUT = ctypes.POINTER(ctypes.c_void_p)
_SIGNATURES: dict[str, list[Any]] = {
    "git_mempack_new": [_OUT],
    "git_repository_odb": [_OUT, ctypes.c_void_p],
    "git_odb_add_backend": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int],
    "git_odb_free": [ctypes.c_void_p],
    "git_mempack_write_thin_pack": [ctypes.c_void_p, ctypes.c_void_p],
}


@cache
def _functions() -> dict[str, Callable[..., int]]:
    """The libgit2 calls above."""
    return {name: function(name, argtypes) for name, argtypes in _SIGNATURES.items()}
