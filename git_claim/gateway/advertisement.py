"""The refs a connected remote advertised, under some prefixes, read cheaply.

pygit2's `Remote.list_heads` builds a Python object per advertised ref
(two Oids and two decoded strings): on a remote with 40,000 refs (20,000
finished claims and their notes) that took 0.4-0.5 s of a claim's CPU,
for the handful of refs a claim reads. Here the names are compared as
bytes through the same libgit2 call (`git_remote_ls`), and only the refs
under the prefixes are decoded. Where pygit2's private handle or its cffi
module is not what this expects, the public `list_heads` is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from .libgit2_env import pygit2

PEELED = b"^{}"


def advertised(remote: pygit2.Remote, prefixes: Sequence[str]) -> dict[str, str]:
    """Refs under `prefixes` in the advertisement of `remote` (connected), name -> id."""
    try:
        return _through_cffi(remote, tuple(p.encode() for p in prefixes))
    except (AttributeError, ImportError, TypeError):
        heads = remote.list_heads(connect=False)
        return {head.name: str(head.oid) for head in heads if head.name is not None
                and head.name.startswith(tuple(prefixes)) and not head.name.endswith("^{}")}


def _through_cffi(remote: pygit2.Remote, prefixes: tuple[bytes, ...]) -> dict[str, str]:
    from pygit2.errors import check_error
    from pygit2.ffi import C, ffi

    refs = ffi.new("git_remote_head ***")
    size = ffi.new("size_t *")
    check_error(C.git_remote_ls(refs, size, remote._remote))
    heads = refs[0]
    found: dict[str, str] = {}
    for index in range(int(size[0])):
        head = heads[index]
        name = ffi.string(head.name)
        if name.startswith(prefixes) and not name.endswith(PEELED):
            found[name.decode("utf-8", "surrogateescape")] = bytes(ffi.buffer(head.oid.id)).hex()
    return found
