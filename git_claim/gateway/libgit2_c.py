"""libgit2 calls that pygit2 does not declare, through ctypes in pygit2's own libgit2.

pygit2's cffi module is linked against libgit2, so looking a name up through
its handle finds the very library (and state) pygit2 uses. Callers fall back
to pygit2's public API when a name is missing (Unavailable).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any


class Unavailable(Exception):
    """This pygit2 does not let us reach that libgit2 call."""


def address(pointer: object) -> int:
    """A cffi pointer from pygit2 (a remote, a pack builder, an options struct) as an int."""
    from pygit2.ffi import ffi

    return int(ffi.cast("uintptr_t", pointer))


def function(name: str, argtypes: Sequence[Any]) -> Callable[..., int]:
    """The libgit2 function `name`, returning int, taking `argtypes`."""
    try:
        found = getattr(_library(), name)
    except AttributeError as missing:
        raise Unavailable(str(missing)) from missing
    found.argtypes = list(argtypes)
    found.restype = ctypes.c_int
    return found  # type: ignore[no-any-return]


@cache
def _library() -> ctypes.CDLL:
    from pygit2 import _libgit2

    try:
        return ctypes.CDLL(_libgit2.__file__)
    except OSError as missing:
        raise Unavailable(str(missing)) from missing
