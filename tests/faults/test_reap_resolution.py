"""A reaper never frees a claim before TTL of real silence, though records keep whole seconds.

Found by the soak: a claim written at 12:00:00.9 reads back as 12:00:00, so
by the timestamp rule alone a reaper could free it up to one second early.
"""

from __future__ import annotations

from git_claim.claims import ClaimView
from git_claim.clock import iso, parse_iso
from git_claim.liveness import is_stale
from git_claim.record import STATE_HELD, ClaimRecord

TTL, SKEW = 60.0, 5.0


def view_written_at(written: float) -> ClaimView:
    recorded = parse_iso(iso(written))  # what a reaper reads back
    record = ClaimRecord(ticket="640", state=STATE_HELD, agent="alice", time=recorded)
    return ClaimView("640", "refs/claims/640", "a" * 40, record, None, None)


def stale(view: ClaimView, at: float) -> bool:
    return is_stale(view, ttl=TTL, max_skew=SKEW, at=at, memory=None)[0]


def test_a_claim_is_never_stale_before_ttl_plus_skew_of_true_silence():
    written = 1_800_000_000.95
    view = view_written_at(written)
    assert view.record.time == 1_800_000_000.0  # the fraction is gone
    assert not stale(view, written + TTL + SKEW - 0.01)
    assert not stale(view, written + TTL + SKEW)


def test_a_claim_is_stale_within_a_second_after_that():
    for fraction in (0.0, 0.5, 0.99):
        written = 1_800_000_000 + fraction
        assert stale(view_written_at(written), written + TTL + SKEW + 1.01)
