"""One compare-and-swap on the remote, settled by re-reading it.

Every state change of the claim log (a claim, a note that releases, reaps,
reopens or beats) is one ref update with an expected old value. The push's
answer may be lost or refused for reasons that are not a lost race, so the
outcome is what the remote holds afterwards, read back, never what the push
"returned". The claim log's modules (lock, liveness) build the updates and
judge the outcome; this module only applies one and reports what landed.
This module never prints.
"""

from __future__ import annotations

import random
import time
from time import monotonic

from .errors import GitError, HostRefused
from .gateway.transport import RefUpdate, UpdateStatus
from .safetext import clean
from .session import Session

MAX_ROUNDS = 5  # read, judge, swap: how many times before an operation gives up (GitError)
LOCK_RETRY_SECONDS = 2.0  # how long a refusal for a contended ref lock is retried
LOCK_SIGNS = ("failed to update ref", "failed to lock", "cannot lock ref", ".lock exists",
              "is locked on the remote")
EMAIL_DOMAIN = "git-claim.invalid"  # of the tagger and author of our tags and notes commits


class GuardBroken(Exception):
    """The claim ref no longer held the claim an update was guarded by: nothing was written."""


def swap(session: Session, update: RefUpdate) -> str | None:
    """Apply one compare-and-swap and return what the remote holds afterwards.

    The update took effect exactly when the returned value equals `update.new`.
    A rejection or an unknown outcome is settled by re-reading the ref, never
    by trusting that a push "returned". A broken guard raises GuardBroken; a
    refusal that left the ref as we expected raises HostRefused, in the host's
    own words (a protected-ref rule, a hook), so no caller mistakes it for a
    lost race.
    """
    deadline = monotonic() + LOCK_RETRY_SECONDS
    pause_seconds = 0.05
    while True:
        result = session.transport.push([update])[0]
        if result.ok:
            return update.new
        if result.status is UpdateStatus.GUARD_BROKEN:
            raise GuardBroken(result.message)
        if result.status is UpdateStatus.STALE and result.current_known:
            return result.current
        current = _read_back(session, update.ref)
        refused = result.status is UpdateStatus.REJECTED and current == update.expect
        if refused and _lock_contention(result.message) and monotonic() < deadline:
            # another writer held the ref's lock past the server's own patience
            # (git waits 100 ms): the compare-and-swap is safe to try again
            time.sleep(pause_seconds * random.uniform(0.5, 1.5))
            pause_seconds = min(pause_seconds * 2, 0.5)
            continue
        if refused:
            raise HostRefused(f"the remote refused to {_verb(update)} {update.ref}:"
                              f" {clean(result.message or 'rejected', 300)}",
                              ref=update.ref, host_message=clean(result.message, 300))
        return current


def _read_back(session: Session, ref: str) -> str | None:
    """What `ref` holds now, to settle a push whose answer was lost or refused.

    The connection that lost the answer may have been cut with others: a
    failed read is tried twice more before the outcome is reported unknown
    (GitError, exit 3).
    """
    for pause_seconds in (0.2, 0.5, None):
        try:
            return session.transport.list_refs([ref]).get(ref)
        except GitError:
            if pause_seconds is None:
                raise
            time.sleep(pause_seconds)
    return None  # not reached


def _verb(update: RefUpdate) -> str:
    if update.new is None:
        return "delete"
    return "create" if update.expect is None else "update"


def _lock_contention(message: str) -> bool:
    """Whether a refusal reads like a ref lock held by another writer.

    git's receive-pack says "failed to update ref" or "failed to lock" when its
    wait for a `.lock` ran out; libgit2 and our path transport name the lock
    file. A hook's own words that merely mention a lock are not retried.
    """
    lowered = message.lower()
    return any(sign in lowered for sign in LOCK_SIGNS)
