"""The soak's checker on hand-written histories: clean ones pass, each kind of violation fails.

Times are seconds; TTL is 10. Agent A holds claim X on ticket t1 first (its
first epoch, refs/claims/t1), B holds Y after it (the next epoch,
refs/claims/t1@2). Claim refs are only ever created; a heartbeat, a release
or a reap is a note in refs/notes/claims/t1. Tag and commit ids are short
stand-ins for object ids.
"""

from __future__ import annotations

import json

from soak.checker import (
    Fault,
    History,
    Note,
    Op,
    RefChange,
    RunRecord,
    Worker,
    check,
    load_ops,
    load_workers,
)

TTL = 10.0
X, Y = "x" * 40, "y" * 40
REF = "refs/claims/t1"
REF2 = "refs/claims/t1@2"
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
        op("a1", "claim", "A", 0.9, 1.0, tag=X, at=0.9, epoch=1),
        op("a2", "run", "A", 1.1, a_end, "failed", tag=X, tries=run_tries),
        beat("a3", "A", X, 10.0, 10.2, "c1"),
        op("r1", "reap", "R", judged, judged + 0.3, pid=300, tag=X, judged=judged,
           tries=[{"t": judged, "commit": "c2"}]),
        op("b1", "claim", "B", 21.9, 22.0, tag=Y, at=21.9, epoch=2),
        op("b2", "run", "B", 22.1, 40.0, tag=Y),
        op("b3", "release", "B", 40.1, 40.5, tag=Y, tries=[{"t": 40.2, "tag": Y, "commit": "c3"}]),
        *(extra or []),
    ]
    changes = [RefChange(1.0, None, X, REF), RefChange(10.1, None, "c1", NOTES),
               RefChange(judged + 0.2, "c1", "c2", NOTES), RefChange(22.0, None, Y, REF2),
               RefChange(40.3, "c2", "c3", NOTES)]
    notes = [Note("c1", X, "heartbeat"), Note("c2", X, "reaped"),
             Note("c3", Y, "released", "free")]
    return History(ops, [], changes, {"t1": notes}, {}, TTL, end=50.0)


def drop_note(history: History, commit: str) -> None:
    """The note `commit` never landed: off the notes and off the server's log."""
    history.notes["t1"] = [n for n in history.notes["t1"] if n.commit != commit]
    history.changes = [c for c in history.changes if c.new != commit]


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
    drop_note(history, "c1")
    history.faults = [Fault("pause", 1.0, "A", until=11.9)]
    assert kinds(history) == ["stale-start"]
    history.ops[1].start = 10.8  # within the lease: allowed
    assert check(history).ok


def test_a_reap_before_the_lease_ran_out_fails():
    history = a_reaped_then_b(a_end=15.0, judged=19.0)  # last beat at 10, TTL 10
    violations = check(history).violations
    assert [v.kind for v in violations] == ["double-claim"]
    assert "1.00s before its lease ran out" in violations[0].message


def test_a_claim_ref_deleted_by_no_injected_change_is_a_lost_claim():
    # X's ref deleted at 21.5 with no reap (agents never delete): B claims t1 afresh
    history = a_reaped_then_b(a_end=15.0)
    drop_note(history, "c2")
    history.ops = [o for o in history.ops if not o.id.endswith(".r1")]
    history.changes[2:3] = [RefChange(21.5, X, None, REF), RefChange(22.0, None, Y, REF)]
    history.ops[3].fields["epoch"] = 1
    found = check(history).violations
    assert [v.kind for v in found] == ["lost-claim"], found
    assert "refs/claims/t1 held xxxxxxxxxxxx and was deleted" in found[0].message


def test_a_claim_created_while_the_newest_was_in_force_is_a_double_claim():
    # no reap: X was still held when B's claim created t1@2
    history = a_reaped_then_b(a_end=15.0)
    drop_note(history, "c2")
    history.ops = [o for o in history.ops if not o.id.endswith(".r1")]
    found = check(history).violations
    assert [v.kind for v in found] == ["double-claim"], found
    assert "while epoch 1's claim xxxxxxxxxxxx was still in force (its last note: heartbeat)" \
        in found[0].message
    done = a_reaped_then_b(a_end=15.0)  # X released as done: an outcome in force, no free ticket
    done.notes["t1"][1] = Note("c2", X, "released", "done")
    done.ops[3] = op("r1", "release", "A", 21.0, 21.3, tag=X, outcome="done",
                     tries=[{"t": 21.0, "tag": X, "commit": "c2"}])
    assert "double-claim" in kinds(done)
    done.notes["t1"].insert(2, Note("c4", X, "reopened"))  # reopened before B claimed: fine
    done.changes.insert(3, RefChange(21.6, "c2", "c4", NOTES))
    done.ops.append(op("j1", "reopen", "J", 21.5, 21.7, pid=500, tag=X,
                       tries=[{"t": 21.5, "tag": X, "commit": "c4"}]))
    assert check(done).ok, check(done).violations


def test_a_claim_created_out_of_turn_is_a_double_claim():
    history = a_reaped_then_b(a_end=15.0)  # B's claim as t1@3, skipping epoch 2
    history.changes[3] = RefChange(22.0, None, Y, "refs/claims/t1@3")
    history.ops[4].fields["epoch"] = 3
    found = check(history).violations
    assert [v.kind for v in found] == ["double-claim"], found
    assert "out of turn: the newest claim was epoch 1" in found[0].message


def test_a_claim_that_landed_at_another_epoch_than_it_recorded_is_lost():
    history = a_reaped_then_b(a_end=15.0)
    history.ops[4].fields["epoch"] = 3  # B's fencing token would name the wrong claim
    found = check(history).violations
    assert [v.kind for v in found] == ["lost-claim"], found
    assert "recorded epoch 3, but the server set it as refs/claims/t1@2" in found[0].message


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
    drop_note(history, "c3")
    history.ops = [o for o in history.ops if not o.id.endswith(".b3")]
    assert kinds(history) == ["stuck"]
    history.final = {"t1": ("d" * 40, "done")}  # an outcome is no stuck claim
    assert check(history).ok


def test_a_beat_accepted_after_the_reap_is_a_double_claim():
    history = a_reaped_then_b(a_end=15.0, extra=[beat("a5", "A", X, 21.0, 21.6, "c5")])
    history.notes["t1"].insert(2, Note("c5", X, "heartbeat"))
    history.changes.insert(3, RefChange(21.5, "c2", "c5", NOTES))
    assert set(kinds(history)) == {"double-claim"}  # after the reap, and inside the lease


def test_notes_after_an_end_or_an_outcome_are_double_claims():
    # a release of X accepted after its reap
    history = a_reaped_then_b(a_end=15.0, extra=[
        op("a6", "release", "A", 21.3, 21.6, tag=X, tries=[{"t": 21.3, "tag": X, "commit": "c6"}])])
    history.notes["t1"].insert(2, Note("c6", X, "released", "free"))
    history.changes.insert(3, RefChange(21.5, "c2", "c6", NOTES))
    assert "was accepted after it was reaped" in str(check(history).violations)
    # a heartbeat of a claim released as done, and a reopening of a claim with no outcome
    done = a_reaped_then_b(a_end=15.0, extra=[beat("b5", "B", Y, 40.6, 40.8, "c7"),
                                              op("j1", "reopen", "J", 41.0, 41.2, pid=500, tag=X,
                                                 tries=[{"t": 41.0, "tag": X, "commit": "c8"}])])
    done.notes["t1"][2] = Note("c3", Y, "released", "done")
    done.notes["t1"] += [Note("c7", Y, "heartbeat"), Note("c8", X, "reopened")]
    done.changes += [RefChange(40.7, "c3", "c7", NOTES), RefChange(41.1, "c7", "c8", NOTES)]
    found = [v.message for v in check(done).violations]
    assert any("heartbeat of yyyyyyyyyyyy was accepted after it was released as done" in m
               for m in found), found
    assert any("reopened of xxxxxxxxxxxx was accepted after it was reaped" in m
               for m in found), found


def test_a_claim_ref_replaced_by_another_claim_is_a_double_claim():
    history = a_reaped_then_b(a_end=15.0)
    history.changes[3] = RefChange(21.5, X, Y, REF)
    history.ops[4].fields["epoch"] = 1
    assert {"double-claim", "lost-claim"} <= set(kinds(history))  # and X left the remote


def test_a_note_no_operation_recorded_fails():
    history = a_reaped_then_b(a_end=15.0)
    history.notes["t1"].insert(1, Note("c7", X, "heartbeat"))
    assert kinds(history) == ["unrecorded"]


def test_a_killed_claim_is_ambiguous_and_resolved_by_the_server():
    history = a_reaped_then_b(a_end=15.0)
    history.ops[0] = op("a1", "claim", "A", 0.9, None, tag=X, at=0.9)  # no end line
    history.ops = [o for o in history.ops if o.id[-3:] not in (".a2", ".a3")]
    drop_note(history, "c1")
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


# --------------------------------------------------------------------------
# The workers' own logs: who really worked on a ticket, and when.
#
# A's run (command pid 1001) started worker 1002 under claim X; B's run
# (command 2001) worker 2002 under Y. Interval 2 s, grace 1 s: a worker may
# outlive the moment its holder had to know by grace + SLACK (0.5 s).

def worker(pid: int, run: str, loop: str, start: float, last: float, stop: str | None = "done",
           *, script: int | None = None, signals: list | None = None) -> Worker:
    return Worker(pid, run, loop, "t1", loop, "py-fg", script or pid - 1, start, last, stop,
                  signals or [])


def with_workers(history: History, a_last: float, *, a_stop: str | None = "done",
                 b_start: float = 22.3) -> History:
    """Give the runs of `a_reaped_then_b` their command pids and workers."""
    for o in history.ops:
        if o.op == "run":
            o.fields["child"] = 1001 if o.agent == "A" else 2001
    history.workers = [worker(1002, "A.1", "A", 1.3, a_last, a_stop),
                       worker(2002, "B.1", "B", b_start, 39.8)]
    history.runs = {"A.1": RunRecord("A.1", "A", 1.0, None),
                    "B.1": RunRecord("B.1", "B", 21.8, 41.0)}
    history.interval, history.grace = 2.0, 1.0
    return history


def test_workers_that_worked_in_turn_pass():
    report = check(with_workers(a_reaped_then_b(a_end=15.0), a_last=14.9))
    assert report.ok, report.violations
    assert report.figures["setups"]["workers"]["py-fg"]["started"] == 2
    assert report.figures["double_holds"] == 0


def test_two_workers_on_one_ticket_at_once_are_a_double_hold():
    # A's run ended its command at 15, but its worker went on working till 30,
    # long after the reap (21.2) and while B's worker worked (from 22.3).
    history = with_workers(a_reaped_then_b(a_end=15.0), a_last=30.0)
    found = check(history).violations
    assert {v.kind for v in found} == {"double-hold", "orphan"}
    (hold,) = [v for v in found if v.kind == "double-hold"]
    assert "worker 1002" in hold.message and "worker 2002" in hold.message
    assert "was reaped at 21.200" in hold.message


def frozen_a(*, a_last: float) -> History:
    """A frozen 11-23 with its worker; reaped meanwhile; B works from 22.3; A resumes at 23,
    its beat (23.0-23.4) is refused and its run stops the command (fence at 23.45)."""
    late_beat = beat("a4", "A", X, 23.0, 23.4, "c9", outcome="failed")
    history = with_workers(a_reaped_then_b(a_end=26.0, a_fence=23.45, extra=[late_beat]),
                           a_last=a_last, a_stop="SIGTERM")
    history.faults = [Fault("pause", 11.0, "A", until=23.0)]
    return history


def test_a_frozen_holder_s_worker_may_overlap_until_its_first_beat_after_resuming():
    report = check(frozen_a(a_last=23.6))  # stopped 0.2 s after the refusal
    assert report.ok, report.violations
    within = report.figures["setups"]["overlaps within bounds"]
    assert within == {"count": 1, "longest s": 1.3}  # 22.3-23.6, most of it frozen


def test_a_frozen_holder_s_worker_that_outlives_grace_after_the_refusal_is_a_double_hold():
    # the refusal ended at 23.4: the worker had to be gone by 23.4 + 1 + 0.5 = 24.9
    found = check(frozen_a(a_last=25.0)).violations
    assert [v.kind for v in found] == ["double-hold"], found
    assert "had to know by 23.400 (its first heartbeat after the loss was refused)" \
        in found[0].message


def killed_run_alone(a_last: float) -> History:
    """SIGKILL to A's `run` alone at 14.0, its worker's last line (no stop) at `a_last`."""
    history = a_reaped_then_b(a_end=15.0)
    history.ops[1] = op("a2", "run", "A", 1.1, None, tag=X, child=1001)  # killed: no end line
    history = with_workers(history, a_last=a_last, a_stop=None)
    history.faults = [Fault("kill-run", 14.0, "A", detail={"run": "A.1", "pid": 999})]
    history.runs["A.1"].exit = 14.01
    return history


def test_a_sigkilled_worker_whose_last_working_line_is_within_grace_of_the_kill_passes():
    report = check(killed_run_alone(a_last=14.8))  # 14.0 + grace 1 + 0.5 = 15.5
    assert report.ok, report.violations
    assert report.figures["setups"]["workers"]["py-fg"]["no stop line (killed)"] == 1
    assert report.figures["setups"]["signals"]["kill-run"]["worker last line after it, max s"] \
        == 0.8


def test_a_worker_line_later_than_grace_after_its_run_was_killed_is_flagged():
    found = check(killed_run_alone(a_last=15.6)).violations
    assert [v.kind for v in found] == ["orphan"], found
    assert "kill-run at 14.000" in found[0].message and "0.10s after" in found[0].message


def test_a_worker_logging_after_its_run_reported_the_command_gone_is_flagged():
    history = with_workers(a_reaped_then_b(a_end=15.0), a_last=15.2)  # run op ended at 15.0
    found = check(history).violations
    assert [v.kind for v in found] == ["orphan"], found
    assert "every process of the command had ended" in found[0].message


def foreign_delete(*, refused_beat: tuple[float, float], a_last: float) -> History:
    """A beats at 10; a foreign push deletes X at 12.0; B claims Y at 12.2 (t1 again: no claim
    was left) and works from 12.3; A's next beat is refused (the guard) and its run stops the
    command."""
    start, end = refused_beat
    ops = [
        op("a1", "claim", "A", 0.9, 1.0, tag=X, at=0.9, epoch=1),
        op("a2", "run", "A", 1.1, end + 0.3, "failed", tag=X, child=1001,
           tries=[{"t": end + 0.05, "fence": "t1 is no longer yours"}]),
        beat("a3", "A", X, 10.0, 10.2, "c1"),
        beat("a4", "A", X, start, end, "c9", outcome="failed"),
        op("b1", "claim", "B", 12.1, 12.2, tag=Y, at=12.1, epoch=1),
        op("b2", "run", "B", 12.25, 30.0, tag=Y, child=2001),
        op("b3", "release", "B", 30.1, 30.5, tag=Y, tries=[{"t": 30.2, "tag": Y, "commit": "c3"}]),
    ]
    changes = [RefChange(1.0, None, X, REF), RefChange(10.1, None, "c1", NOTES),
               RefChange(12.0, X, None, REF), RefChange(12.2, None, Y, REF),
               RefChange(30.3, "c1", "c3", NOTES)]
    notes = [Note("c1", X, "heartbeat"), Note("c3", Y, "released", "free")]
    faults = [Fault("foreign-delete", 11.95, None, until=12.05,
                    detail={"ref": REF, "ticket": "t1"})]
    history = History(ops, faults, changes, {"t1": notes}, {}, TTL, end=50.0,
                      workers=[worker(1002, "A.1", "A", 1.3, a_last, "SIGTERM"),
                               worker(2002, "B.1", "B", 12.3, 29.9)],
                      runs={"A.1": RunRecord("A.1", "A", 1.0, end + 0.5),
                            "B.1": RunRecord("B.1", "B", 12.0, 31.0)})
    return history


def test_a_holder_whose_claim_a_foreign_push_deleted_stops_at_its_next_beat():
    report = check(foreign_delete(refused_beat=(12.2, 12.4), a_last=12.55))
    assert report.ok, report.violations  # no lost claim either: the deletion was injected
    assert report.figures["faults"] == {"foreign-delete": 1}
    assert report.figures["setups"]["foreign"]["claim ref changes"] == 1
    lost = report.figures["setups"]["holders whose claim was lost while their worker worked"]
    assert lost == {"deleted by a foreign push": {
        "count": 1, "worker stopped after the loss, max s (not frozen)": 0.55}}


def test_a_holder_that_beats_an_interval_late_after_a_foreign_deletion_is_a_double_hold():
    # the loss at 12.0: a beat was due by 12.0 + 2 + 0.5 = 14.5 and the worker gone by
    # 14.5 + 1 + 0.5 = 16.0; the beat came at 16.0, the worker stopped at 16.35
    found = check(foreign_delete(refused_beat=(16.0, 16.2), a_last=16.35)).violations
    assert "double-hold" in [v.kind for v in found], found
    hold = next(v for v in found if v.kind == "double-hold")
    assert "had to know by 14.500 (a heartbeat was due)" in hold.message


def test_a_beat_that_started_after_its_claim_left_the_ref_must_not_land():
    history = foreign_delete(refused_beat=(12.2, 12.4), a_last=12.55)
    history.ops[3] = beat("a4", "A", X, 12.2, 12.4, "c9")  # accepted: the guard failed to act
    history.notes["t1"].insert(1, Note("c9", X, "heartbeat"))
    history.changes.insert(3, RefChange(12.3, "c1", "c9", NOTES))
    assert "double-claim" in kinds(history)


def test_a_live_claim_overwritten_by_a_stale_push_is_no_violation():
    # tags mode. A's X (t1) is reaped at 21.2; B claims Y as t1@2 at 22.0 and beats at
    # 23.0; a stale clone has fetched the tags by then. A foreign push deletes t1@2 at 24.0:
    # B's next beat is refused and its run stops. C claims Z as t1@2 afresh at 26.0; the
    # stale clone's `git push --tags --force` puts Y back over C's live Z at 30.0 (the
    # newest claim again, held by B's last beat): C's next beat is refused and it stops.
    # Y, silent since 23.0, is reaped at 40.
    tags = "refs/tags/claim/t1"
    tags2 = tags + "@2"
    Z = "z" * 40
    history = a_reaped_then_b(a_end=15.0)
    history.claim_prefix = "refs/tags/claim/"
    history.ops[5:] = [  # B's run, and then C's claim, run and beats, and the second reap
        op("b2", "run", "B", 22.1, 25.0, "failed", tag=Y,
           tries=[{"t": 24.6, "fence": "t1 is no longer yours"}]),
        beat("b3", "B", Y, 23.0, 23.2, "c5"),
        beat("b4", "B", Y, 24.3, 24.5, "c9", outcome="failed"),
        op("c1", "claim", "C", 25.9, 26.0, pid=400, tag=Z, at=25.9, epoch=2),
        op("c2", "run", "C", 26.1, 31.5, "failed", pid=400, tag=Z,
           tries=[{"t": 31.4, "fence": "t1 is no longer yours"}]),
        beat("c3", "C", Z, 28.0, 28.2, "c6"),
        op("c4", "heartbeat", "C", 31.0, 31.3, "failed", pid=400, tag=Z,
           tries=[{"t": 31.0, "commit": "c10", "at": 31.0}]),
        op("r2", "reap", "R", 40.0, 40.3, pid=300, tag=Y, judged=40.0,
           tries=[{"t": 40.0, "commit": "c7"}]),
    ]
    history.changes = [RefChange(1.0, None, X, tags), RefChange(10.1, None, "c1", NOTES),
                       RefChange(21.2, "c1", "c2", NOTES), RefChange(22.0, None, Y, tags2),
                       RefChange(23.1, "c2", "c5", NOTES), RefChange(24.0, Y, None, tags2),
                       RefChange(26.0, None, Z, tags2), RefChange(28.1, "c5", "c6", NOTES),
                       RefChange(30.0, Z, Y, tags2), RefChange(40.2, "c6", "c7", NOTES)]
    history.notes["t1"] = [Note("c1", X, "heartbeat"), Note("c2", X, "reaped"),
                           Note("c5", Y, "heartbeat"), Note("c6", Z, "heartbeat"),
                           Note("c7", Y, "reaped")]
    history.final = {"t1": (Y, "free")}
    history.faults = [Fault("foreign-delete", 23.95, None, until=24.05,
                            detail={"ref": tags2, "ticket": "t1"}),
                      Fault("stale-push", 29.9, None, until=30.1,
                            detail={"force": True, "refs": {tags: X, tags2: Y}})]
    report = check(history)
    assert report.ok, report.violations
    assert report.figures["setups"]["stale"]["forced pushes"] == 1
    # B's Y, deleted while held, and C's Z, overwritten while held
    assert report.figures["setups"]["live claims taken by a foreign or stale push"] == 2
    history.faults = []  # the same history without the injections: violations
    assert {"double-claim", "lost-claim"} <= set(kinds(history))


def test_the_worker_log_reader_keeps_each_worker_s_first_and_last_line():
    lines = [json.dumps({"t": t, "ev": ev, "pid": 7, "ticket": "t1", "agent": "A", "loop": "A",
                         "run": "A.1", "mode": "sh-fg", "script": 6, **extra})
             for t, ev, extra in [(1.0, "start", {}), (1.2, "working", {}),
                                  (1.3, "signal", {"sig": 15}), (1.31, "signal", {"sig": 15}),
                                  (1.4, "stop", {"why": "SIGTERM"})]] + ['{"t": 2.0, "ev"']
    (only,) = load_workers(lines)
    assert (only.start, only.last, only.stop, only.signals, only.script) == \
        (1.0, 1.4, "SIGTERM", [15, 15], 6)


def test_a_worker_started_after_its_run_got_a_signal_and_working_on_is_a_lost_signal():
    # SIGINT to A's run at 1.05, during its claim push; the run went on, started its
    # command, and the worker worked till 14.9 with no signal: the run never acted on it
    history = with_workers(a_reaped_then_b(a_end=15.0), a_last=14.9)
    history.faults = [Fault("int-run", 1.05, "A", detail={"run": "A.1", "pid": 999})]
    found = check(history).violations
    assert [v.kind for v in found] == ["lost-signal"], found
    assert "got int-run at 1.050, then started worker 1002" in found[0].message
    history.workers[0].last = 1.3 + 1.0 + 0.5  # passed on: gone within grace of its start
    assert check(history).ok


def test_a_worker_working_on_past_the_bound_after_its_claim_was_lost_fails_without_a_rival():
    # the foreign deletion at 12.0, a refused beat at 12.2-12.4: gone by 13.9; B never came.
    # The run waited for its command till 14.6 (a worker that ignored SIGTERM, never killed).
    history = foreign_delete(refused_beat=(12.2, 12.4), a_last=14.5)
    history.ops[1].end, history.runs["A.1"].exit = 14.6, 14.7
    history.workers = history.workers[:1]
    history.ops = [o for o in history.ops if o.agent == "A"]
    history.changes = [c for c in history.changes if Y not in (c.old, c.new) and c.new != "c3"]
    history.notes["t1"] = history.notes["t1"][:1]
    found = check(history).violations
    assert [v.kind for v in found] == ["unheld-work"], found
    assert "had to know by 12.400" in found[0].message
    history.workers[0].last = 13.8
    assert check(history).ok


def test_a_claim_a_stale_push_put_back_before_its_holder_could_know_is_held_again():
    # A holds X and beats at 10; a foreign push deletes X at 12.0; B claims Y (12.2, t1
    # afresh: no claim was left) and works from 12.3; a stale `git push --tags --force`
    # puts X back over Y at 12.5. A's next beat (12.6) lands: A holds X again. B's next
    # beat (13.3) is refused: it stops.
    ops = [
        op("a1", "claim", "A", 0.9, 1.0, tag=X, at=0.9, epoch=1),
        op("a2", "run", "A", 1.1, 20.0, tag=X, child=1001),
        beat("a3", "A", X, 10.0, 10.2, "c1"),
        beat("a4", "A", X, 12.6, 12.8, "c2"),
        op("a5", "release", "A", 20.1, 20.4, tag=X, tries=[{"t": 20.2, "tag": X, "commit": "c3"}]),
        op("b1", "claim", "B", 12.1, 12.2, tag=Y, at=12.1, epoch=1),
        op("b2", "run", "B", 12.25, 13.6, "failed", tag=Y, child=2001,
           tries=[{"t": 13.45, "fence": "t1 is no longer yours"}]),
        beat("b3", "B", Y, 13.3, 13.4, "c9", outcome="failed"),
    ]
    changes = [RefChange(1.0, None, X, REF), RefChange(10.1, None, "c1", NOTES),
               RefChange(12.0, X, None, REF), RefChange(12.2, None, Y, REF),
               RefChange(12.5, Y, X, REF), RefChange(12.7, "c1", "c2", NOTES),
               RefChange(20.3, "c2", "c3", NOTES)]
    notes = [Note("c1", X, "heartbeat"), Note("c2", X, "heartbeat"),
             Note("c3", X, "released", "free")]
    faults = [Fault("foreign-delete", 11.95, None, until=12.05, detail={"ref": REF}),
              Fault("stale-push", 12.45, None, until=12.55, detail={"force": True,
                                                                    "refs": {REF: X}})]
    history = History(ops, faults, changes, {"t1": notes}, {}, TTL, end=50.0,
                      workers=[worker(1002, "A.1", "A", 1.3, 19.9),
                               worker(2002, "B.1", "B", 12.3, 13.5, "SIGTERM")])
    report = check(history)
    assert report.ok, report.violations
    assert report.figures["setups"]["overlaps within bounds"] == {"count": 1, "longest s": 1.2}
    history.workers[1].last = 16.0  # B worked on past 13.4 + 1 + 0.5, beside A
    history.ops[6].end = 16.1  # (and its run waited for it)
    found = check(history).violations
    assert [v.kind for v in found] == ["double-hold"], found
    assert "B's claim yyyyyyyyyyyy was overwritten by a stale push at 12.500" in found[0].message
