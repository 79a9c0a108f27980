"""The operations layer's requests and results, and the one staleness rule, without a remote.

The commands' behaviour against real remotes is tested through the installed
executables elsewhere; here are the decisions the operations make on data:
which flags make which request, when a result is incomplete (exit 5), how
skips are counted, and that the board and the reaper judge a claim alike.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from git_claim.board import claim_state
from git_claim.claims import ClaimView
from git_claim.errors import ExitCode, IncompleteError, UsageError
from git_claim.liveness import (
    RECORD_RESOLUTION,
    ReapEntry,
    Skip,
    SkipKind,
    Undone,
    is_stale,
    staleness,
)
from git_claim.ops.compact import Compacted
from git_claim.ops.reap import Reaped
from git_claim.ops.release import ReleaseRequest
from git_claim.ops.results import ClaimState, Event, Outcome
from git_claim.record import STATE_HELD, ClaimRecord

TTL, SKEW = 60.0, 5.0
T0 = 1_800_000_000.0


def held(time: float = T0, ticket: str = "640") -> ClaimView:
    record = ClaimRecord(ticket=ticket, state=STATE_HELD, agent="alice", time=time)
    return ClaimView(ticket, f"refs/claims/{ticket}", "a" * 40, record, None, None)


def test_release_flags_make_one_request():
    assert ReleaseRequest.from_flags("640", done=False, blocked=False, reason="",
                                     force=False) == ReleaseRequest("640")
    blocked = ReleaseRequest.from_flags("640", done=False, blocked=True, reason="no key",
                                        force=True)
    assert (blocked.outcome, blocked.reason, blocked.force) == (Outcome.BLOCKED, "no key", True)
    with pytest.raises(UsageError, match="exclude each other"):
        ReleaseRequest.from_flags("640", done=True, blocked=True, reason="", force=False)
    with pytest.raises(UsageError, match="--reason goes with --blocked"):
        ReleaseRequest.from_flags("640", done=True, blocked=False, reason="x", force=False)


def test_states_and_outcomes_are_enums_that_read_as_their_json():
    import json

    assert json.dumps([ClaimState.STALE, Outcome.DONE, Event.REOPENED]) == \
        '["stale", "done", "reopened"]'
    assert Event.of("reopened") is Event.REOPENED
    assert Event.of("from-a-future-version") is Event.UNKNOWN


def reaped(*skipped: ReapEntry) -> Reaped:
    return Reaped(dry_run=False, ttl=TTL, max_skew=SKEW, reaped=(), live=(),
                  skipped=skipped, revived=())


def test_a_reap_is_complete_unless_a_stale_claim_was_left_in_place():
    kept = ReapEntry("20", "alice", 100.0, "open pull request #5 from claim/20",
                     SkipKind.KEPT_BY_CHECK)
    unreadable = ReapEntry("21", "?", None, "unreadable claim: x", SkipKind.UNREADABLE)
    done = reaped(kept, unreadable)
    assert done.failure is None and done.exit_code is ExitCode.OK
    refused = ReapEntry("22", "bob", 100.0, "the remote refused the reap: hook says no",
                        SkipKind.REFUSED, Undone.REFUSED)
    unknown = ReapEntry("23", "bob", 100.0, "open pull requests unknown (gh is down)",
                        SkipKind.CHECK_UNANSWERED, Undone.UNCHECKED)
    partial = reaped(kept, refused, unknown, unreadable)
    assert partial.exit_code is ExitCode.INCOMPLETE
    assert [e.ticket for e in partial.undone] == ["22", "23"]
    assert isinstance(partial.failure, IncompleteError)
    assert partial.failure.message.startswith("2 claims not freed: 22: the remote refused")
    assert partial.skips == ((SkipKind.KEPT_BY_CHECK, 1), (SkipKind.REFUSED, 1),
                             (SkipKind.CHECK_UNANSWERED, 1), (SkipKind.UNREADABLE, 1))
    assert refused.as_dict()["undone"] == "refused" and "undone" not in kept.as_dict()


def test_a_skip_check_that_could_not_tell_leaves_the_reap_undone():
    assert Skip("open pull request #5").kind is SkipKind.KEPT_BY_CHECK
    assert Skip("open pull requests unknown", sure=False).kind is SkipKind.CHECK_UNANSWERED


def test_a_compaction_is_incomplete_when_the_remote_refused_a_delete():
    fine = Compacted(False, 2, ("refs/claims/1@2",), ("refs/claims/1@2",), MappingProxyType({}))
    assert fine.failure is None and fine.exit_code is ExitCode.OK
    refused = Compacted(False, 2, ("refs/claims/1@2",), (),
                        MappingProxyType({"refs/claims/1@2": "deny deletes"}))
    assert refused.exit_code is ExitCode.INCOMPLETE
    assert refused.failure is not None and "refs/claims/1@2: deny deletes" in \
        refused.failure.message


def test_board_and_reaper_share_the_staleness_rule_at_its_boundary():
    """Around TTL + skew + the records' resolution, second by second and within one."""
    view = held()
    limit = TTL + SKEW + RECORD_RESOLUTION
    for offset in [x / 10 for x in range(-30, 31)]:
        at = T0 + limit + offset
        judged = staleness(view, ttl=TTL, max_skew=SKEW, at=at)
        reaper_says, _ = is_stale(view, ttl=TTL, max_skew=SKEW, at=at, memory=None)
        board_says = claim_state(view, ttl=TTL, max_skew=SKEW, at=at)
        assert reaper_says == judged.stale == (board_says is ClaimState.STALE), offset
        if judged.stale:
            assert judged.reap_in == 0
        else:
            assert judged.reap_in is not None and judged.reap_in >= 0
            assert math.isclose(judged.reap_in, limit - (at - T0), abs_tol=1e-6)


def test_what_a_reaper_of_this_clone_remembers_counts_for_the_board_too():
    view = held(time=T0)
    at = T0 + 10  # young by its timestamp
    assert not staleness(view, ttl=TTL, max_skew=SKEW, at=at).stale
    remembered = staleness(view, ttl=TTL, max_skew=SKEW, at=at, seen_for=TTL - 4)
    assert not remembered.stale and remembered.reap_in == pytest.approx(4)
    assert staleness(view, ttl=TTL, max_skew=SKEW, at=at, seen_for=TTL).stale
    assert claim_state(view, ttl=TTL, max_skew=SKEW, at=at, seen_for=TTL) is ClaimState.STALE


def test_the_operations_import_no_click_and_print_nothing():
    """The layer under the CLI: importing every operation (and what it uses) loads no click."""
    import subprocess
    import sys

    modules = ["release", "reap", "liveness", "board", "log", "compact", "hook"]
    code = ("import sys\n"
            + "".join(f"import git_claim.ops.{name}\n" for name in modules)
            + "import git_claim.board, git_claim.history, git_claim.liveness, git_claim.lock\n"
            + "assert 'click' not in sys.modules, 'click'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
