"""One way to write a file: whole or not at all.

Readers in other processes (another agent in the same checkout, the shell
completion, git running a hook, a test waiting on a pause point) may read
at any moment, so a file is written beside its final name and renamed over
it: a reader sees the old content or the new, never a torn mix, and a hook
is executable from the moment it exists. Every file the tool writes goes
through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `text` in one rename; makes the parent folder if needed.

    `mode`: the file's permissions (e.g. 0o755 for a hook), set before the
    rename; by default the temporary file's own (read and write for us only).
    A link at `path` is replaced, never written through.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
