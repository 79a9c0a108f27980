"""libgit2 over the network (git://, http(s)://, ssh://), with leases made real.

libgit2 reports a server's rejection only through push_update_reference and
sends the *advertised* old value, not ours. So every push checks, in
push_negotiation (after the advertisement, before the upload), that the
remote holds what the caller expects, and aborts otherwise; the server then
checks the advertised old value under its own lock, which closes the race.
A guard (a ref that must hold a value for an update to count) is checked
against the same advertisement, read from the open connection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pygit2.enums import Option

from .libgit2_env import pygit2

if TYPE_CHECKING:
    from pygit2.remotes import PushUpdate

from ..errors import GitError
from ..safetext import clean
from .credentials import AuthFailed, Callbacks, safe_url
from .localrepo import LocalRepo
from .transport import ZERO_OID, RefUpdate, Transport, UpdateResult, UpdateStatus

CONNECT_TIMEOUT_MS = 10_000
SERVER_TIMEOUT_MS = 60_000
_timeouts_set = False


def _set_timeouts() -> None:
    global _timeouts_set
    if not _timeouts_set:
        pygit2.option(Option.SET_SERVER_CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
        pygit2.option(Option.SET_SERVER_TIMEOUT, SERVER_TIMEOUT_MS)
        _timeouts_set = True


class _LeaseBroken(Exception):
    """Raised inside push_negotiation to abort before anything is uploaded."""


class _PushCallbacks(Callbacks):
    def __init__(self, url: str, updates: Sequence[RefUpdate], remote: pygit2.Remote) -> None:
        super().__init__(url)
        self.expected = {u.ref: u.expect for u in updates}
        self.guards = [u for u in updates if u.guard is not None]
        # not `self.remote`: pygit2's callbacks object uses that name for its clone hook
        self.pushing_to = remote
        self.negotiated = False
        self.stale: dict[str, str | None] = {}
        self.unguarded: dict[str, str | None] = {}  # update ref -> its guard ref's value
        self.reports: dict[str, str | None] = {}
        self.host_text: list[str] = []  # what the server's hooks said ("remote: ...")

    def sideband_progress(self, string: str) -> None:
        self.host_text.append(string)

    def host_words(self) -> str:
        """The server's own explanation (a hook's or policy's lines), one clean line."""
        return host_words("".join(self.host_text))

    def push_negotiation(self, updates: list[PushUpdate]) -> None:
        for update in updates:
            remote_old = str(update.src)
            current = None if remote_old == ZERO_OID else remote_old
            if self.expected.get(update.dst_refname) != current:
                self.stale[update.dst_refname] = current
        if self.guards:
            # The advertisement this push negotiated against, from the open connection.
            advertised = {head.name: str(head.oid)
                          for head in self.pushing_to.list_heads(connect=False)}
            for guarded in self.guards:
                assert guarded.guard is not None
                value = advertised.get(guarded.guard.ref)
                if value != guarded.guard.expect:
                    self.unguarded[guarded.ref] = value
        if self.stale or self.unguarded:
            raise _LeaseBroken()
        self.negotiated = True

    def push_update_reference(self, refname: str, message: str | None) -> None:
        self.reports[refname] = message


def describe_error(error: Exception, url: str, callbacks: Callbacks | None = None) -> GitError:
    """A one-line GitError for a libgit2 failure; auth and host keys named plainly."""
    if isinstance(error, GitError):
        return error
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if callbacks is not None and callbacks.host_key_rejected:
        return GitError(f"host key for {safe_url(url)} is unknown or has changed"
                        " (check ~/.ssh/known_hosts); refusing to connect")
    if isinstance(error, pygit2.GitError) and "certificate" in text.lower():
        return GitError(f"certificate check failed for {safe_url(url)}: {text}")
    return GitError(f"{safe_url(url)}: {text}")


class Libgit2Transport(Transport):
    name = "libgit2"

    def __init__(self, local: LocalRepo, remote_name: str, url: str) -> None:
        _set_timeouts()
        self.local = local
        self.url = url
        self.remote_name = remote_name

    @property
    def remote(self) -> pygit2.Remote:
        """A fresh remote per operation: libgit2 keeps a connection's direction."""
        repo = self.local.repo
        try:
            return repo.remotes[self.remote_name]
        except (KeyError, ValueError):
            return repo.remotes.create_anonymous(self.url)

    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        callbacks = Callbacks(self.url)
        try:
            heads = self.remote.list_heads(callbacks=callbacks, proxy=True)
        except (pygit2.GitError, OSError, AuthFailed) as error:
            raise describe_error(error, self.url, callbacks) from error
        return {head.name: str(head.oid) for head in heads if head.name is not None
                and head.name.startswith(tuple(prefixes)) and not head.name.endswith("^{}")}

    def fetch(self, refspecs: Sequence[str]) -> None:
        if not refspecs:
            return
        callbacks = Callbacks(self.url)
        try:
            self.remote.fetch(list(refspecs), callbacks=callbacks, proxy=True,
                              message="git-claim: fetch claims")
        except (pygit2.GitError, OSError, AuthFailed) as error:
            raise describe_error(error, self.url, callbacks) from error

    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        specs = [f"+{u.new}:{u.ref}" if u.new else f":{u.ref}" for u in updates]
        remote = self.remote
        callbacks = _PushCallbacks(self.url, updates, remote)
        try:
            remote.push(specs, callbacks=callbacks, proxy=True)
        except _LeaseBroken:
            return [_broken(u, callbacks) for u in updates]
        except (pygit2.GitError, OSError, AuthFailed) as error:
            if not callbacks.negotiated:
                raise describe_error(error, self.url, callbacks) from error
            # Sent but not confirmed: the server may have applied any of them.
            message = describe_error(error, self.url, callbacks).message
            return [self._reported(u, callbacks) if u.ref in callbacks.reports else
                    UpdateResult(u.ref, UpdateStatus.UNKNOWN, message) for u in updates]
        return [self._reported(u, callbacks) if u.ref in callbacks.reports else
                UpdateResult(u.ref, UpdateStatus.UNKNOWN, "the server did not report this ref")
                for u in updates]

    @staticmethod
    def _reported(update: RefUpdate, callbacks: _PushCallbacks) -> UpdateResult:
        message = callbacks.reports[update.ref]
        if message is None:
            return UpdateResult(update.ref, UpdateStatus.OK)
        said = callbacks.host_words()
        if said and said not in message:
            message = f"{message} ({said})"
        return UpdateResult(update.ref, UpdateStatus.REJECTED, clean(message, 400))


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS_PREFIXES = ("Resolving deltas", "Counting objects", "Compressing objects",
                     "Writing objects", "Total ", "Unpacking objects", "Enumerating objects")


def host_words(text: str) -> str:
    """A hook's or a policy's lines from the server's side band, as one clean line.

    Progress meters are dropped; carriage-return redraws keep their last state.
    """
    lines = []
    text = ANSI_ESCAPE.sub("", text)  # a hook's colours: the words, not `?[1;31m`
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rsplit("\r", 1)[-1].strip()
        if line.startswith("remote:"):
            line = line[len("remote:"):].strip()
        if line and not line.startswith(PROGRESS_PREFIXES):
            lines.append(line)
    return clean("; ".join(lines[-5:]), 300)


def _broken(update: RefUpdate, callbacks: _PushCallbacks) -> UpdateResult:
    """The verdict on one update of a push aborted in negotiation."""
    if update.ref in callbacks.stale:
        return UpdateResult(update.ref, UpdateStatus.STALE, "remote changed",
                            callbacks.stale[update.ref], True)
    if update.ref in callbacks.unguarded:
        assert update.guard is not None
        return UpdateResult(update.ref, UpdateStatus.GUARD_BROKEN,
                            f"{update.guard.ref} changed", callbacks.unguarded[update.ref], True)
    return UpdateResult(update.ref, UpdateStatus.NOT_TRIED)


__all__ = ["Libgit2Transport"]
