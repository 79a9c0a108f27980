"""Fetch objects without writing a ref: libgit2's `git_remote_download`.

A listing that lacks the objects of many claims fetches them by pattern.
`Remote.fetch` (libgit2's `git_remote_fetch`) then writes one local ref per
fetched ref, and each write is a lock file, a rename and a scan of its
folder: about 35 system calls a ref, 6-9 s for 10,000 claims, where the
transfer itself takes under a second. We need the objects, never the refs
(the next listing checks the object database, not refs, before it fetches).
`git_remote_download` is the first half of `git_remote_fetch`: it
negotiates over the same connection and indexes the pack, and writes no ref
and no FETCH_HEAD. pygit2 does not declare it, so it is called through
ctypes in the libgit2 that pygit2 loaded, with pygit2's own option and
callback structures. Where that library or pygit2's private handles are not
what this expects, `Remote.fetch` is used: slower, same result.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from functools import cache

from .libgit2_c import Unavailable, address, function
from .libgit2_env import pygit2


def download(remote: pygit2.Remote, refspecs: Sequence[str],
             callbacks: pygit2.RemoteCallbacks) -> None:
    """Bring the objects behind `refspecs` into the local repository, writing no ref.

    The refspecs' destinations only satisfy the refspec syntax (a pattern
    needs one); nothing is written there. Raises pygit2.GitError (or a
    callback's exception) as `Remote.fetch` would.
    """
    try:
        functions = _functions()
        handle = address(remote._remote)
    except (Unavailable, AttributeError, ImportError, OSError, TypeError):
        remote.fetch(list(refspecs), callbacks=callbacks, proxy=True,
                     message="git-claim: fetch claims")
        return
    from pygit2.callbacks import git_fetch_options, git_proxy_options
    from pygit2.ffi import ffi
    from pygit2.utils import StrArray

    download_c, disconnect_c = functions
    with git_fetch_options(callbacks) as payload:
        options = payload.fetch_options
        # nothing here shows progress: skip a call into Python per object received
        options.callbacks.transfer_progress = ffi.NULL
        with git_proxy_options(remote, options.proxy_opts, True), StrArray(list(refspecs)) as specs:
            status = download_c(handle, address(specs.ptr), address(options))
            # git_remote_fetch disconnects here too: the server's connection is
            # not left open until the remote object is freed
            disconnect_c(handle)
            payload.check_error(status)


@cache
def _functions() -> tuple[Callable[..., int], Callable[..., int]]:
    """git_remote_download and git_remote_disconnect."""
    return (function("git_remote_download", [ctypes.c_void_p] * 3),
            function("git_remote_disconnect", [ctypes.c_void_p]))
