"""Choosing the transport for a remote: libgit2, a local transaction, or the git CLI.

`claim.transport` is `auto` (default), `libgit2` or `git`. `auto` uses libgit2
unless it cannot serve the remote as the user's git would: an ssh host that
is an alias in ~/.ssh/config, a custom ssh command, or a remote helper.
Path and file:// remotes never use libgit2's unsafe local push.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import GitError, UsageError
from .localrepo import LocalRepo
from .transport import Transport

TRANSPORTS = ("auto", "libgit2", "git")
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)")


def remote_url(config: dict[str, list[str]], remote: str) -> str:
    urls = config.get(f"remote.{remote}.pushurl") or config.get(f"remote.{remote}.url")
    if urls:
        return urls[-1]
    if "://" in remote or remote.startswith(("/", ".")):
        return remote
    raise GitError(f"no remote named {remote!r} (set claim.remote or add the remote)")


def _ssh_host(url: str) -> str | None:
    if url.startswith("ssh://"):
        rest = url[len("ssh://"):]
        return rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":")[0]
    match = _SCP_LIKE.match(url)
    return match.group(1) if match and "://" not in url else None


def _ssh_config_aliases() -> set[str]:
    path = Path(os.environ.get("HOME", str(Path.home()))) / ".ssh" / "config"
    aliases: set[str] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return aliases
    for line in text.splitlines():
        words = line.strip().split()
        if len(words) > 1 and words[0].lower() == "host":
            aliases.update(word for word in words[1:] if not any(c in word for c in "*?!"))
    return aliases


def libgit2_can_serve(url: str, config: dict[str, list[str]]) -> bool:
    if "::" in url.split("/", 1)[0]:
        return False  # a remote helper: transport::address
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme and scheme not in ("http", "https", "git", "ssh", "file"):
        return False
    host = _ssh_host(url)
    if host is not None:
        if os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH") \
                or config.get("core.sshcommand"):
            return False
        if host in _ssh_config_aliases():
            return False
    return True


def open_transport(local: LocalRepo, config: dict[str, list[str]], remote: str,
                   kind: str) -> Transport:
    if kind not in TRANSPORTS:
        raise UsageError(f"claim.transport must be one of {', '.join(TRANSPORTS)}, not {kind!r}")
    url = remote_url(config, remote)
    if kind == "git" or (kind == "auto" and not libgit2_can_serve(url, config)):
        from .gitcli_transport import GitCliTransport

        return GitCliTransport(local, remote, url)
    from .local_transport import LocalTransport, local_path

    path = local_path(url)
    if path is not None:
        return LocalTransport(local, remote, url, path)
    from .libgit2_transport import Libgit2Transport

    return Libgit2Transport(local, remote, url)
