"""Credentials and host-key checks for libgit2, done the way git users expect.

libgit2 knows nothing of git's credential helpers, ssh-agent or key files,
and pygit2's default accepts any ssh host key. This module closes those gaps:
`git credential fill` for passwords (so `gh auth git-credential` works), the
agent then the usual key files for ssh, and libgit2's own known_hosts verdict
for host keys. Attempts are capped: libgit2 calls back again on every failure.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pygit2.enums import CredentialType

from ..errors import GitError
from .libgit2_env import pygit2

MAX_SSH_ATTEMPTS = 4
KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")


class AuthFailed(GitError):
    kind = "auth"


def safe_url(url: str) -> str:
    """The URL without any user:password part, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rsplit("@", 1)[-1]
    if parts.password or "@" in parts.netloc and parts.scheme in ("http", "https"):
        host = parts.netloc.rsplit("@", 1)[-1]
        return parts._replace(netloc=host).geturl()
    return url


def _credential_fill(url: str, username: str | None) -> tuple[str, str] | None:
    parts = urlsplit(url)
    request = f"protocol={parts.scheme}\nhost={parts.netloc.rsplit('@', 1)[-1]}\n"
    if parts.path:
        request += f"path={parts.path.lstrip('/')}\n"
    if username:
        request += f"username={username}\n"
    env = dict(os.environ)
    if not sys.stdin.isatty():
        env["GIT_TERMINAL_PROMPT"] = "0"
        env.setdefault("GIT_ASKPASS", "")
        env.setdefault("SSH_ASKPASS", "")
    try:
        completed = subprocess.run(["git", "credential", "fill"], input=request + "\n",
                                   capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    answer = dict(line.split("=", 1) for line in completed.stdout.splitlines() if "=" in line)
    if "password" not in answer:
        return None
    return answer.get("username", username or ""), answer["password"]


def _credential_reject(url: str, username: str, password: str) -> None:
    parts = urlsplit(url)
    request = (f"protocol={parts.scheme}\nhost={parts.netloc.rsplit('@', 1)[-1]}\n"
               f"username={username}\npassword={password}\n\n")
    subprocess.run(["git", "credential", "reject"], input=request, capture_output=True,
                   text=True, timeout=30, check=False)


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials and certificate checks shared by every libgit2 operation."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.ssh_attempts = 0
        self.password_tried: tuple[str, str] | None = None
        self.host_key_rejected = False

    def credentials(self, url: str, username_from_url: str | None,
                    allowed_types: CredentialType
                    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        if allowed_types & CredentialType.SSH_KEY:
            return self._ssh_key(username_from_url or getpass.getuser())
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(username_from_url or getpass.getuser())
        if allowed_types & CredentialType.USERPASS_PLAINTEXT:
            if self.password_tried is not None:
                _credential_reject(url, *self.password_tried)
                raise AuthFailed(f"authentication failed for {safe_url(url)}")
            found = _credential_fill(url, username_from_url)
            if found is None:
                raise AuthFailed(
                    f"authentication required for {safe_url(url)} and no credential helper"
                    " answered (configure one, e.g. `gh auth setup-git`)")
            self.password_tried = found
            return pygit2.UserPass(*found)
        raise AuthFailed(f"no supported authentication method for {safe_url(url)}")

    def _ssh_key(self, user: str) -> pygit2.Keypair:
        self.ssh_attempts += 1
        candidates: list[pygit2.Keypair] = []
        if os.environ.get("SSH_AUTH_SOCK"):
            candidates.append(pygit2.KeypairFromAgent(user))
        ssh_dir = Path(os.environ.get("HOME", str(Path.home()))) / ".ssh"
        for name in KEY_FILES:
            private = ssh_dir / name
            public = ssh_dir / f"{name}.pub"
            if private.is_file() and public.is_file():
                candidates.append(pygit2.Keypair(user, str(public), str(private), ""))
        if self.ssh_attempts > min(len(candidates), MAX_SSH_ATTEMPTS):
            raise AuthFailed(f"ssh authentication failed for {safe_url(self.url)}"
                             " (tried ssh-agent and ~/.ssh/id_* keys)")
        return candidates[self.ssh_attempts - 1]

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # libgit2 checks ssh host keys against ~/.ssh/known_hosts and TLS
        # certificates against the system store; `valid` is its verdict.
        # pygit2's default would accept any ssh host key, so we return it.
        if not valid:
            self.host_key_rejected = True
        return bool(valid)
