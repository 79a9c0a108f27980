"""The reaper's "seen unchanged for the TTL" counts real time, not wall-clock steps.

Rule 2 of the staleness rule (docs/protocol.md, "Clock skew") frees a claim
that reapers in one clone have seen unchanged for the TTL. It was measured on
the reaper's wall clock, so a clock stepped between two runs counted as time
passed: a reaper run once 15 minutes behind and again 2 s later with the right
clock reaped a live claim ("silent 3s"). A stepped clock is emulated here with
GIT_CLAIM_CLOCK_OFFSET (it shifts the tool's wall clock for one process and
nothing else), so each reaper run below may see a different wall time while
real time passes as it does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import notes_log, remote_refs, ticket_state, with_env
from git_claim.claims import ClaimView
from git_claim.clock import boot_id
from git_claim.reaper_memory import ReaperMemory
from git_claim.record import STATE_HELD, ClaimRecord

MEMORY = ("git-claim", "reaper-seen.json")  # under the clone's common git dir
DEAD_RULE_2_ONLY = ["--ttl", "2s", "--max-skew", "1h", "--force"]  # rule 1 cannot fire


def reap(agent, *args, offset="0"):
    """One `git reap --json` run with the reaper's clock shifted by `offset` seconds."""
    run = agent.cmd("reap", *args, "--json", env=with_env(agent, GIT_CLAIM_CLOCK_OFFSET=offset))
    assert run.code == 0, run
    return run.json()


def tickets(report, kind="reaped"):
    return [entry["ticket"] for entry in report[kind]]


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not seen within {timeout}s"
        time.sleep(0.02)


def test_a_clock_stepped_back_then_corrected_reaps_no_live_claim(make_world):
    """Defaults (TTL 15m, max-skew 5m): 15 minutes behind, then right 2 s later."""
    world = make_world("git")
    alice, carol = world.agent("alice"), world.agent("carol")
    assert alice.claim("640").code == 0
    assert alice.claim("heartbeat", "640").code == 0
    behind = reap(carol, "--ticket", "640", offset="-900")
    assert tickets(behind, "live") == ["640"], behind
    time.sleep(2)  # real time passes: two seconds, not fifteen minutes
    corrected = reap(carol, "--ticket", "640")
    assert tickets(corrected) == [] and tickets(corrected, "live") == ["640"], corrected
    assert alice.claim("verify", "640").code == 0


def test_a_reaper_whose_clock_keeps_stepping_never_reaps_a_running_holder(make_world):
    """`git claim run` beats every second; TTL 15 s; the reaper's clock flips -60/+0."""
    world = make_world("git")
    alice, carol = world.agent("alice"), world.agent("carol")
    refused = carol.cmd("reap", "--ttl", "15s")
    assert refused.code == 2 and "heartbeat interval" in refused.stderr, refused
    tool = str(Path(sys.executable).parent / "git-claim")  # signals reach it directly
    log = (world.root / "holder.log").open("w")
    holder = subprocess.Popen([tool, "run", "640", "--interval", "1s", "--", "sleep", "300"],
                              cwd=alice.workdir, env=alice.env, stdout=log, stderr=log)
    try:
        wait_for(lambda: "heartbeat 640 #1" in notes_log(world.repo, "640"), "the first beat")
        runs, started = 0, time.monotonic()
        while time.monotonic() - started < 6:
            offset = "-60" if runs % 2 == 0 else "0"
            report = reap(carol, "--ttl", "15s", "--force", "--ticket", "640", offset=offset)
            assert tickets(report) == [], (offset, report)
            assert holder.poll() is None, (world.root / "holder.log").read_text()
            runs += 1
        assert runs >= 6  # several steps back and forth, each pair within a beat or two
        assert ticket_state(world.repo, "640").state == "held"
        assert alice.claim("verify", "640").code == 0
        assert holder.poll() is None, (world.root / "holder.log").read_text()
    finally:
        holder.terminate()
        holder.wait(timeout=60)
        log.close()


def common_git_dir(agent) -> Path:
    text = agent.git("rev-parse", "--git-common-dir").stdout.strip()
    return (agent.workdir / text).resolve()


def this_clock() -> dict[str, str | None]:
    """How the tool names this machine's never-stepping clock: the boot and time namespace."""
    try:
        namespace: str | None = os.readlink("/proc/self/ns/time")
    except OSError:
        namespace = None
    return {"boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "timens": namespace}


def _old_format(oid, tip):
    """The first format: wall-clock first-seen times, here the start of the epoch."""
    return {"640": [oid, tip, 0.0]}


def _other_boot(oid, tip):
    """Today's format, written during another boot: its times mean nothing now."""
    return {"format": 2, "boot": "00000000-0000-4000-8000-000000000000",
            "seen": {"640": [oid, tip, 0.0, 0.0]}}


def _no_boot(oid, tip):
    """Today's format without a boot id: nothing says which clock its times are on."""
    return {"format": 2, "seen": {"640": [oid, tip, 0.0, 0.0]}}


def _this_boot_impossible(oid, tip):
    """This boot, but times no clock of it can show (before boot, in the future): forged."""
    return {"format": 2, **this_clock(), "seen": {"640": [oid, tip, -1.0, 1e12]}}


@pytest.mark.parametrize("memory", [_old_format, _other_boot, _no_boot, _this_boot_impossible])
def test_a_memory_the_reaper_cannot_trust_never_shortens_the_wait(make_world, memory):
    """A claim seen first after an untrusted memory was left is reaped after TTL, not before."""
    if memory is _this_boot_impossible and not Path("/proc/sys/kernel/random/boot_id").exists():
        pytest.skip("no boot id on this system")
    world = make_world("git")
    alice, carol = world.agent("alice"), world.agent("carol")
    assert alice.claim("640").code == 0  # and never beats
    refs = remote_refs(world.repo)
    path = common_git_dir(carol).joinpath(*MEMORY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(memory(refs["refs/claims/640"], refs.get("refs/notes/claims/640"))))
    first_seen = time.monotonic()
    first = reap(carol, *DEAD_RULE_2_ONLY, "--ticket", "640")
    assert tickets(first) == [] and tickets(first, "live") == ["640"], first
    reaped_after = None
    deadline = first_seen + 20
    while reaped_after is None:
        time.sleep(0.25)
        report = reap(carol, *DEAD_RULE_2_ONLY, "--ticket", "640")
        if tickets(report) == ["640"]:
            reaped_after = time.monotonic() - first_seen
        assert time.monotonic() < deadline, report
    assert reaped_after >= 2.0  # TTL of real time since the reaper first saw it


def test_rule_2_still_frees_a_dead_claim(make_world):
    """A holder that stopped beating; max-skew 1h keeps rule 1 out of it for the test."""
    world = make_world("git")
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    assert alice.claim("640").code == 0  # and then nothing: no `run`, no heartbeat
    first = reap(carol, *DEAD_RULE_2_ONLY)
    assert tickets(first) == [] and tickets(first, "live") == ["640"], first
    time.sleep(2.2)  # real time, more than the TTL
    second = reap(carol, *DEAD_RULE_2_ONLY)
    assert tickets(second) == ["640"], second
    state = ticket_state(world.repo, "640")
    assert (state.state, state.event) == ("free", "reaped"), state
    assert bob.claim("640").code == 0
    assert ticket_state(world.repo, "640").epoch == 2


# Two reapers at once in one clone: the memory itself, in-process (no remote involved).

def view(ticket: str, tip: str | None = None) -> ClaimView:
    record = ClaimRecord(ticket=ticket, state=STATE_HELD, agent="alice", time=0.0)
    return ClaimView(ticket, f"refs/claims/{ticket}", "a" * 40, record, tip, None)


def on_disk(path: Path) -> dict:
    """What a reaper starting now reads back (the memory's own reader, not its file format)."""
    return ReaperMemory(path).seen


@pytest.fixture
def memory_file(tmp_path: Path) -> Path:
    if boot_id() is None:
        pytest.skip("no boot id on this system: rule 2 is off, nothing is remembered")
    return tmp_path / "git-claim" / "reaper-seen.json"


def test_two_reapers_at_once_keep_the_earlier_sight_of_one_state(memory_file):
    early, late = ReaperMemory(memory_file), ReaperMemory(memory_file)
    early.unchanged_for(view("640", "b" * 40))
    late.unchanged_for(view("640", "b" * 40))
    first = early.updated["640"][2]
    late.save()
    early.save()  # neither order moves the first sight later
    assert on_disk(memory_file)["640"][2] == first
    early.save()
    late.save()
    assert on_disk(memory_file)["640"][2] == first
    assert ReaperMemory(memory_file).unchanged_for(view("640", "b" * 40)) >= 0


def test_a_reaper_does_not_roll_back_what_another_wrote_meanwhile(memory_file):
    ours, theirs = ReaperMemory(memory_file), ReaperMemory(memory_file)
    ours.unchanged_for(view("640", "b" * 40))  # a full run: 640 as it was then, no 641
    theirs.unchanged_for(view("641"))
    theirs.unchanged_for(view("640", "c" * 40))  # 640 has beaten since
    theirs.save()
    ours.save()  # written last, from what was read first
    seen = on_disk(memory_file)
    assert seen["641"] == theirs.updated["641"]  # their news survives
    assert seen["640"] == theirs.updated["640"]  # the state seen last wins


def test_a_full_run_forgets_only_claims_it_read_and_found_gone(memory_file):
    before = ReaperMemory(memory_file)
    for ticket in ("640", "641"):
        before.unchanged_for(view(ticket))
    before.save()
    run = ReaperMemory(memory_file)
    run.unchanged_for(view("640"))  # 641 is no longer held
    run.save()
    assert set(on_disk(memory_file)) == {"640"}
    assert on_disk(memory_file)["640"][2] == before.updated["640"][2]
