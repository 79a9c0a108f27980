"""libgit2 over the network (git://, http(s)://, ssh://), with leases made real.

libgit2 reports a server's rejection only through push_update_reference and
sends the *advertised* old value, not ours. So every push checks, in
push_negotiation (after the advertisement, before the upload), that the
remote holds what the caller expects, and aborts otherwise; the server then
checks the advertised old value under its own lock, which closes the race.
A guard (a ref that must hold a value for an update to count) is checked
against the same advertisement, read from the open connection.

A listing keeps its connection open for the operation that follows it: a
fetch after a plain listing, or a push after `list_refs_for_push` (a
claim's read). A guarded push never uses a held connection, and a push
connection is never kept idle through a fetch (see docs/protocol.md, "One
connection for a read and its write").
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from time import monotonic
from typing import TYPE_CHECKING

from pygit2.enums import Option

from .libgit2_env import pygit2

if TYPE_CHECKING:
    from pygit2.remotes import PushUpdate

from ..errors import GitError
from ..safetext import clean
from .advertisement import advertised
from .credentials import AuthFailed, Callbacks, safe_url
from .download import download
from .localrepo import LocalRepo
from .nodelay import no_delay_on_tcp_sockets
from .transport import (
    ZERO_OID,
    RefUpdate,
    Transport,
    UpdateResult,
    UpdateStatus,
    fetch_refspecs,
)

CONNECT_TIMEOUT_MS = 10_000
SERVER_TIMEOUT_MS = 60_000
DIRECTION_FETCH, DIRECTION_PUSH = 0, 1  # GIT_DIRECTION_FETCH, GIT_DIRECTION_PUSH
# How long a connection opened by a listing waits for the fetch or push that
# follows it. The listing and the write of one command are milliseconds
# apart; an older one (a command that listed, then did something else) is
# not used, so no push negotiates against an advertisement that old, and no
# server is kept waiting on an idle connection.
HELD_SECONDS = 2.0
HELD_VARIABLE = "GIT_CLAIM_TEST_HELD_SECONDS"  # a test that pauses in between stretches it


def _held_seconds() -> float:
    try:
        return float(os.environ[HELD_VARIABLE])
    except (KeyError, ValueError):
        return HELD_SECONDS
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
            listed = advertised(self.pushing_to, [g.guard.ref for g in self.guards if g.guard])
            for guarded in self.guards:
                assert guarded.guard is not None
                value = listed.get(guarded.guard.ref)
                if value != guarded.guard.expect:
                    self.unguarded[guarded.ref] = value
        if self.stale or self.unguarded:
            raise _LeaseBroken()
        # The commands go out next, then the pack in a second write: without
        # TCP_NODELAY the kernel holds that write for the server's delayed
        # ACK (about 40 ms on Linux) on every push.
        no_delay_on_tcp_sockets()
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
        # The connection the last listing came over, kept for the operation
        # that follows it: (direction, remote, when). A listing then a fetch,
        # or a listing then a push, cost one connection instead of two.
        self._held: tuple[int, pygit2.Remote, float] | None = None

    @property
    def remote(self) -> pygit2.Remote:
        """A fresh remote per operation: libgit2 keeps a connection's direction."""
        repo = self.local.repo
        try:
            return repo.remotes[self.remote_name]
        except (KeyError, ValueError):
            return repo.remotes.create_anonymous(self.url)

    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        """The advertisement of a fetch connection, kept open for a fetch that follows.

        A listing is newer than any connection held before it: the next push
        must not negotiate against an older advertisement, so that one is
        dropped.
        """
        self._held = None
        remote = self.remote
        callbacks = Callbacks(self.url)
        try:
            remote.connect(callbacks=callbacks, proxy=True)
            listed = advertised(remote, prefixes)
        except (pygit2.GitError, OSError, AuthFailed) as error:
            raise describe_error(error, self.url, callbacks) from error
        self._held = (DIRECTION_FETCH, remote, monotonic())
        return listed

    def list_refs_for_push(self, prefixes: Sequence[str]) -> dict[str, str]:
        """The advertisement of a push connection, kept open for the next push.

        libgit2 pushes over a connection that is already open (it only
        resets its callbacks), so the read before a claim or a `--next`
        costs no connection of its own (a guarded write opens its own, see
        `push`). A host that will not open
        a push connection here (no right to push, an HTTP server that asks
        for credentials only to push) is listed the plain way, and the push
        then fails in the host's own words as before.
        """
        self._held = None
        remote = self.remote
        callbacks = Callbacks(self.url)
        try:
            remote.connect(callbacks=callbacks, direction=DIRECTION_PUSH, proxy=True)
            listed = advertised(remote, prefixes)
        except (pygit2.GitError, OSError, AuthFailed) as error:
            if _unreachable(error):
                # the plain listing would wait out the same timeout again
                raise describe_error(error, self.url, callbacks) from error
            return self.list_refs(prefixes)
        self._held = (DIRECTION_PUSH, remote, monotonic())
        return listed

    def _connection(self, direction: int) -> pygit2.Remote:
        """The held connection if it goes that way and is fresh, else a new remote.

        A held connection serves one operation, in its own direction; an
        operation the other way opens its own and leaves it alone (`fetch`
        drops a held push connection itself).
        """
        held = self._held
        if held is None or held[0] != direction:
            return self.remote
        self._held = None
        fresh = monotonic() - held[2] < _held_seconds()
        return held[1] if fresh else self.remote

    def close(self) -> None:
        self._held = None  # freeing the remote closes its connection

    def fetch(self, sources: Sequence[str]) -> None:
        if not sources:
            return
        if self._held is not None and self._held[0] == DIRECTION_PUSH:
            # One connection at a time: a push connection kept idle through a
            # fetch would double what each agent holds open on the server (git
            # daemon's default limit is 32 connections, and it kills the
            # oldest from the same address beyond it), and the fetch outlasts
            # the listing's freshness anyway. The push opens its own.
            self._held = None
        callbacks = Callbacks(self.url)
        try:
            download(self._connection(DIRECTION_FETCH), fetch_refspecs(sources), callbacks)
        except (pygit2.GitError, OSError, AuthFailed) as error:
            raise describe_error(error, self.url, callbacks) from error

    def refetch(self, refs: Sequence[str], objects: Sequence[str] = ()) -> None:
        """Through the git CLI: libgit2 never asks for a tip the clone has."""
        from .gitcli_transport import GitCliTransport

        GitCliTransport(self.local, self.remote_name, self.url).refetch(refs, objects)

    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        specs = [f"+{u.new}:{u.ref}" if u.new else f":{u.ref}" for u in updates]
        # A guard is checked against the advertisement the push negotiates
        # with, not under the server's lock: a held connection's is as old as
        # its listing, so a guarded write always opens a connection of its own
        # (the guard is then as fresh as it was before listings were held).
        if any(u.guard is not None for u in updates):
            self._held = None
        waiting = self._held[1] if self._held is not None else None
        remote = self._connection(DIRECTION_PUSH)
        held = remote is waiting
        callbacks = _PushCallbacks(self.url, updates, remote)
        try:
            remote.push(specs, callbacks=callbacks, proxy=True)
        except _LeaseBroken:
            return [_broken(u, callbacks) for u in updates]
        except (pygit2.GitError, OSError, AuthFailed) as error:
            if not callbacks.negotiated and held and not isinstance(error, AuthFailed):
                # The held connection died before anything was sent (a server
                # that closed it, idle): the same push on a connection of its own.
                return self.push(updates)
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


UNREACHABLE_SIGNS = ("timed out", "timeout", "connection refused", "could not resolve",
                     "failed to resolve", "network is unreachable", "no route to host")


def _unreachable(error: Exception) -> bool:
    """A failure to reach the host at all, which a second connection would only repeat."""
    text = str(error).lower()
    return isinstance(error, TimeoutError) or any(sign in text for sign in UNREACHABLE_SIGNS)


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
