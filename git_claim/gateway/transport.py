"""The transport interface: list, fetch and compare-and-swap pushes of refs.

Every push names, per ref, the value it expects the remote to hold; a
transport must never apply an update whose expectation fails. An update may
also carry a guard: another ref that must hold a given value for the update
to apply (a heartbeat's note counts only while the claim ref still holds our
claim). Nothing is written to a guard's ref. Results are per ref, because no
transport here applies a multi-ref push atomically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

ZERO_OID = "0" * 40
# The destination a fetch refspec names only because a pattern needs one:
# transports here fetch without writing refs, so nothing is written under it.
UNWRITTEN_NAMESPACE = "refs/claim-cache/"


class UpdateStatus(Enum):
    OK = "ok"  # the remote now holds the new value
    STALE = "stale"  # the remote did not hold the expected value; nothing written
    REJECTED = "rejected"  # the server refused (hook, lock file, lost race at the server)
    UNKNOWN = "unknown"  # connection lost after sending: re-read the remote to settle
    NOT_TRIED = "not-tried"  # another ref's lease broke first; nothing sent for this one
    GUARD_BROKEN = "guard-broken"  # the guard ref did not hold its value; nothing written


@dataclass(frozen=True)
class Guard:
    """`ref` must hold `expect` on the remote, checked in the same step as the update."""

    ref: str
    expect: str


@dataclass(frozen=True)
class RefUpdate:
    """Set `ref` to `new` (None deletes) only if it holds `expect` (None: absent)."""

    ref: str
    new: str | None
    expect: str | None
    guard: Guard | None = None


@dataclass(frozen=True)
class UpdateResult:
    ref: str
    status: UpdateStatus
    message: str = ""
    current: str | None = None  # what the remote held when the lease (or guard) broke
    current_known: bool = False  # False: `current` was not observed; re-read the remote

    @property
    def ok(self) -> bool:
        return self.status is UpdateStatus.OK

    @property
    def locked(self) -> bool:
        """True when refused only because another writer held a lock for the moment."""
        return False


class Transport(ABC):
    """A way to reach one remote. Implementations live beside this module."""

    name: str = "transport"

    @abstractmethod
    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        """Refs under any of `prefixes` on the remote, name -> object id (not peeled)."""

    def list_refs_for_push(self, prefixes: Sequence[str]) -> dict[str, str]:
        """Like :meth:`list_refs`, read where the next :meth:`push` will be judged.

        A transport that can keeps the push connection this listing came
        from open for the next push, so that reading a ticket and writing
        it cost one connection, not two. The push still checks every
        expectation against its own advertisement; this only saves a
        round trip.
        """
        return self.list_refs(prefixes)

    @abstractmethod
    def fetch(self, sources: Sequence[str]) -> None:
        """Bring the objects behind remote refs into the local object database.

        A source is a ref name, or a prefix ending in `*`. No local ref is
        written: only the objects are needed, and a ref per fetched claim
        costs tens of system calls, seconds at 10,000 claims.
        """

    def refetch(self, refs: Sequence[str], objects: Sequence[str] = ()) -> None:
        """Fetch the objects of `refs` whose tips this clone has but cannot read whole.

        :meth:`fetch` may skip a ref whose tip object is present; this one
        must bring what that tip references and the clone lacks, `objects`
        (ids known to be missing) included. The git CLI's fetch does (its
        connectivity check fails and it fetches), except in a partial clone.
        """
        self.fetch(refs)

    @abstractmethod
    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        """Apply each update as a compare-and-swap; results in the order given."""

    def close(self) -> None:  # noqa: B027 (optional: most transports hold no connection)
        """Release connections; a no-op for most transports."""


def fetch_refspecs(sources: Sequence[str]) -> list[str]:
    """Refspecs for `sources`, each with a destination that is never written."""
    return [f"+{source}:{UNWRITTEN_NAMESPACE}{source[len('refs/'):]}" for source in sources]
