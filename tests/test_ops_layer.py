"""The operations called directly, as the CLI calls them: a session, a request, a result.

The same requests the command line builds, against a real server; the
results are frozen and typed, refusals and empty backlogs are typed errors
with their documented exit codes.
"""

from __future__ import annotations

import dataclasses

import pytest

from git_claim.errors import ExitCode, RefusedError, UsageError
from git_claim.ops.claim import NextRequest, NothingEligible, TakeRequest, take
from git_claim.ops.gc import GcRequest, gc
from git_claim.ops.run import RunRequest, lease_for
from git_claim.session import open_session
from git_claim.tracker.base import Ticket


def session_of(agent):
    return open_session(agent.workdir, agent=agent.name)


def test_take_and_next_return_frozen_results(make_world):
    world = make_world("path", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    claimed = take(session_of(alice), TakeRequest(tickets=("OP1",)))
    assert (claimed.ticket, claimed.epoch, claimed.agent) == ("OP1", 1, "alice")
    assert claimed.ref == "refs/claims/OP1" and not claimed.from_backlog
    assert claimed.worktree is None and not claimed.already_ours
    with pytest.raises(dataclasses.FrozenInstanceError):
        claimed.ticket = "x"  # type: ignore[misc]
    with pytest.raises(RefusedError) as refused:
        take(session_of(bob), TakeRequest(tickets=("OP1",)))
    assert refused.value.exit_code == ExitCode.NO and "held by alice" in refused.value.message

    backlog = (Ticket("OP1", "one"), Ticket("OP2", "two", ("bug",)))
    picked = take(session_of(bob), NextRequest(backlog=backlog))
    assert picked.ticket == "OP2" and picked.from_backlog and picked.title == "two"
    assert picked.labels == ("bug",) and picked.pushes == 1
    assert dict(picked.skipped) == {"claimed, done or blocked": 1}
    with pytest.raises(NothingEligible) as empty:
        take(session_of(bob), NextRequest(backlog=backlog))
    assert empty.value.exit_code == ExitCode.EMPTY == 6
    assert empty.value.details["skipped"] == {"claimed, done or blocked": 2}


def test_gc_and_the_lease_arithmetic(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    session = session_of(alice)
    assert gc(session, GcRequest(dry_run=True)).worktrees == ()
    request = RunRequest(command=("true",), claim=TakeRequest(tickets=("OP3",)), interval=60,
                         grace=10)
    lease = lease_for(session, request)
    ttl = session.settings.ttl
    assert lease.give_up == ttl - max(session.settings.max_skew, 60)
    assert lease.span == min(lease.give_up, ttl - 10) and lease.span > lease.interval
    with pytest.raises(UsageError, match="leave no lease"):
        lease_for(session, dataclasses.replace(request, interval=ttl))
