"""The cheap git calls of the TAB path: git's own answer, without pygit2 or the protocol.

A completion runs on every TAB, so it asks the git executable for the little
it needs (our git dirs, our remotes) and reads ticket ids with the one
validator, importing nothing heavy. Both the candidates (git_claim.completion)
and the live-claims check (git_claim.live_claims) use these; neither imports
the other for them.
"""

from __future__ import annotations

import os


def git(*args: str) -> str | None:
    """`git ARGS`'s output, or None. posix_spawn: importing subprocess costs more than git."""
    if not hasattr(os, "posix_spawnp"):
        import subprocess

        try:
            done = subprocess.run(["git", *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp("git", ["git", *args], os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ])
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as output:
        while chunk := output.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def git_dirs() -> tuple[str, str] | None:
    """The per-worktree git dir (our ownership records) and the common one (the caches)."""
    out = git("rev-parse", "--git-dir", "--git-common-dir")
    lines = out.splitlines() if out else []
    if len(lines) < 2:
        return None
    return os.path.abspath(lines[0]), os.path.abspath(lines[1])


def ticket_id(raw: object) -> str | None:
    """`raw` (a value from one of our JSON files) as a canonical ticket id, or None."""
    from .errors import BadTicketError
    from .ticket import parse_ticket

    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        return None
    try:
        return str(parse_ticket(str(raw)))
    except BadTicketError:
        return None
