"""The soak's checker on hand-written histories: clean ones pass, each kind of violation fails.

Times are seconds; TTL is 10. Agent A holds claim X on ticket t1 first, B
holds Y after it. Tag and commit ids are short stand-ins for object ids.
"""

from __future__ import annotations

import json

from soak.checker import Fault, History, Note, Op, RefChange, check, load_ops

TTL = 10.0
X, Y = "x" * 40, "y" * 40
REF = "refs/claims/t1"
NOTES = "refs/notes/claims/t1"


def op(ident: str, kind: str, agent: str, start: float, end: float | None, outcome: str = "ok",
       *, pid: int | None = None, tag: str | None = None, tries: list | None = None,
       ended: dict | None = None, **fields) -> Op:
    pid = pid or (100 if agent == "A" else 200)
    return Op(f"{pid}-t.{ident}", kind, "t1", agent, pid, start, end, outcome,
              fields={"tag": tag, **fields}, tries=tries or [], ended=ended or {})


def beat(ident: str, agent: str, tag: str, start: float, end: float | None, commit: str,
         outcome: str = "ok") -> Op:
    return op(ident, "heartbeat", agent, start, end, outcome, tag=tag,
              tries=[{"t": start, "commit": commit, "at": start}])


def a_reaped_then_b(*, a_end: float, a_fence: float | None = None, judged: float = 21.0,
                    extra: list[Op] | None = None) -> History:
    """A claims X at 1, beats at 10, goes quiet; the reaper frees X; B claims Y at 22."""
    run_tries = [{"t": a_fence, "fence": "640 is no longer yours"}] if a_fence else []
    ops = [
        op("a1", "claim", "A", 0.9, 1.0, tag=X, at=0.9),
        op("a2", "run", "A", 1.1, a_end, "failed", tag=X, tries=run_tries),
        beat("a3", "A", X, 10.0, 10.2, "c1"),
        op("r1", "reap", "R", judged, judged + 0.3, pid=300, tag=X, judged=judged,
           tries=[{"t": judged, "commit": "c2"}]),
        op("b1", "claim", "B", 21.9, 22.0, tag=Y, at=21.9),
        op("b2", "run", "B", 22.1, 40.0, tag=Y),
        op("b3", "release", "B", 40.1, 40.5, tag=Y, tries=[{"t": 40.2, "tag": Y, "commit": "c3"}]),
        *(extra or []),
    ]
    changes = [RefChange(1.0, None, X, REF), RefChange(21.5, X, None, REF),
               RefChange(22.0, None, Y, REF), RefChange(40.4, Y, None, REF)]
    notes = [Note("c1", X, "heartbeat"), Note("c2", X, "reaped"), Note("c3", Y, "released")]
    return History(ops, [], changes, {"t1": notes}, {}, TTL, end=50.0)


def kinds(history: History) -> list[str]:
    return [v.kind for v in check(history).violations]


def test_a_clean_history_passes_and_counts_what_happened():
    report = check(a_reaped_then_b(a_end=15.0))
    assert report.ok, report.violations
    assert report.figures["claims"] == {"pushes": 2, "won": 2, "contended": 0}
    assert report.figures["double_claims"] == 0 and report.figures["stuck"] == 0


def test_a_frozen_holder_may_overlap_until_its_first_heartbeat_after_the_new_claim():
    # A resumes at 23, beats (refused, 23.0-23.4) and fences at once: allowed.
    late_beat = beat("a4", "A", X, 23.0, 23.4, "c9", outcome="failed")
    history = a_reaped_then_b(a_end=26.0, a_fence=23.5, extra=[late_beat])
    history.faults = [Fault("pause", 11.0, "A", until=23.0)]
    report = check(history)
    assert report.ok, report.violations
    assert report.figures["holders_overlapping"] == 1
    assert report.figures["longest_overlap_s"] == 0.4  # 22.0-23.4, of which 1 s frozen


def test_a_holder_that_goes_on_after_a_heartbeat_told_it_fails():
    # A's beat at 24 ended after B's claim, yet A's command ran on until 30.
    late_beat = beat("a4", "A", X, 23.0, 24.0, "c9", outcome="failed")
    history = a_reaped_then_b(a_end=30.0, extra=[late_beat])
    assert kinds(history) == ["double-claim"]


def test_a_holder_that_never_checks_may_not_outlive_its_lease():
    # No beat after 10 and not frozen: its lease ended at 20, yet it believed until 25.
    assert kinds(a_reaped_then_b(a_end=25.0)) == ["double-claim"]
    frozen = a_reaped_then_b(a_end=25.0)
    frozen.faults = [Fault("pause", 12.0, "A", until=24.0)]  # 12 s frozen: lease end 32
    assert check(frozen).ok


def test_a_command_started_on_a_claim_whose_lease_ran_out_fails():
    # A's claim push froze: written at 0.9, acknowledged at 12, command started at 12.1.
    history = a_reaped_then_b(a_end=13.0)
    history.ops[0] = op("a1", "claim", "A", 0.9, 12.0, tag=X, at=0.9)
    history.ops[1] = op("a2", "run", "A", 12.1, 13.0, "failed", tag=X)
    history.ops = [o for o in history.ops if not o.id.endswith(".a3")]
    history.notes["t1"] = history.notes["t1"][1:]
    history.faults = [Fault("pause", 1.0, "A", until=11.9)]
    assert kinds(history) == ["stale-start"]
    history.ops[1].start = 10.8  # within the lease: allowed
    assert check(history).ok


def test_a_reap_before_the_lease_ran_out_fails():
    history = a_reaped_then_b(a_end=15.0, judged=19.0)  # last beat at 10, TTL 10
    violations = check(history).violations
    assert [v.kind for v in violations] == ["double-claim"]
    assert "1.00s before its lease ran out" in violations[0].message


def test_a_claim_that_left_the_remote_without_a_release_or_reap_is_lost():
    history = a_reaped_then_b(a_end=15.0)
    history.notes["t1"] = [n for n in history.notes["t1"] if n.commit != "c2"]
    history.ops = [o for o in history.ops if not o.id.endswith(".r1")]
    assert kinds(history) == ["lost-claim"]


def test_an_acknowledged_claim_the_server_never_set_is_lost():
    history = a_reaped_then_b(a_end=15.0)
    history.ops.append(op("z1", "claim", "Z", 45.0, 45.1, pid=400, tag="z" * 40, at=45.0))
    assert kinds(history) == ["lost-claim"]


def test_an_acknowledged_beat_missing_from_the_notes_is_lost():
    history = a_reaped_then_b(a_end=15.0, extra=[beat("a9", "A", X, 5.0, 5.1, "c8")])
    assert kinds(history) == ["lost-claim"]


def test_a_claim_still_held_after_the_final_reap_is_stuck():
    history = a_reaped_then_b(a_end=15.0)
    history.final = {"t1": (Y, "held")}
    history.changes = history.changes[:-1]
    history.notes["t1"] = history.notes["t1"][:-1]
    history.ops = [o for o in history.ops if not o.id.endswith(".b3")]
    assert kinds(history) == ["stuck"]
    history.final = {"t1": ("d" * 40, "done")}  # an outcome is no stuck claim
    assert check(history).ok


def test_a_beat_accepted_after_the_reap_is_a_double_claim():
    history = a_reaped_then_b(a_end=15.0, extra=[beat("a5", "A", X, 21.0, 21.6, "c5")])
    history.notes["t1"].insert(2, Note("c5", X, "heartbeat"))
    assert set(kinds(history)) == {"double-claim"}  # after the reap, and inside the lease


def test_a_claim_ref_replaced_by_another_claim_is_a_double_claim():
    history = a_reaped_then_b(a_end=15.0)
    history.changes[1:3] = [RefChange(21.5, X, Y, REF)]
    assert "double-claim" in kinds(history)


def test_a_note_no_operation_recorded_fails():
    history = a_reaped_then_b(a_end=15.0)
    history.notes["t1"].insert(1, Note("c7", X, "heartbeat"))
    assert kinds(history) == ["unrecorded"]


def test_a_killed_claim_is_ambiguous_and_resolved_by_the_server():
    history = a_reaped_then_b(a_end=15.0)
    history.ops[0] = op("a1", "claim", "A", 0.9, None, tag=X, at=0.9)  # no end line
    history.ops = [o for o in history.ops if o.id[-3:] not in (".a2", ".a3")]
    history.notes["t1"] = history.notes["t1"][1:]
    history.faults = [Fault("kill", 1.05, "A")]
    report = check(history)
    assert report.ok, report.violations
    assert report.figures["ambiguous"] == {"claim": {"killed, applied": 1}}
    assert report.figures["crash_to_reap_s"]["count"] == 1
    assert report.figures["crash_to_reap_s"]["min"] == round(21.3 - 1.05, 1)


def test_the_log_reader_keeps_whole_lines_and_drops_a_torn_last_one():
    lines = [json.dumps({"id": "1.1", "ph": "start", "t": 1.0, "op": "claim", "ticket": "t1",
                         "agent": "A", "pid": 1, "tag": X}),
             json.dumps({"id": "1.1", "ph": "try", "t": 1.1, "commit": "c1"}),
             json.dumps({"id": "1.1", "ph": "end", "t": 1.2, "outcome": "ok"}),
             '{"id": "2.1", "ph": "sta']
    (only,) = load_ops(lines)
    assert (only.op, only.tag, only.end, only.outcome, only.commits()) == \
        ("claim", X, 1.2, "ok", ["c1"])
