"""SIGKILL at every step of claim, heartbeat, release and reap.

Whatever step a process dies at, every ticket is afterwards either held by
a live agent or freed within TTL plus one reap interval. Time is not waited
for: the reaper runs with its clock shifted by TTL plus the interval.

A release or a reap is one note on the ticket's notes ref: killed before it,
the ticket stays held (the reaper frees it in time); killed once the server
has applied it (the server held in a hook, the client's whole process tree
killed), the ticket is already free, with nothing left for anyone to finish.
"""

from __future__ import annotations

import os
import signal

import pytest

from agents import PausePoint, tag_message, ticket_state, with_env
from faultkit import ServerGate, claim_refs, process_tree

TTL = 10  # seconds
INTERVAL = 1  # how often the reaper is meant to run
REAP = ["--ttl", f"{TTL}s", "--max-skew", "0"]
LATER = str(TTL + INTERVAL)  # the clock of a reaper run TTL plus one interval from now
OLD = str(-10 * TTL)  # a claim made by this clock looks long dead
LANDED = "note-landed"  # not a pause point of the tool: the server holds the landed note

# (step, world, the state of ticket 640 right after the kill)
STEPS = [
    ("claim:before-push", ("path", "libgit2"), "free"),
    ("claim:after-push", ("git", "git"), "held"),
    ("heartbeat:before-push", ("http", "libgit2"), "held"),
    ("release:before-decide", ("file", "git"), "held"),
    (f"release:{LANDED}", ("git", "libgit2"), "free"),
    ("reap:before-decide", ("http", "git"), "held"),
    (f"reap:{LANDED}", ("path", "git"), "free"),
]


def state(world, ticket: str) -> str:
    """free or held (done and blocked do not arise here), read on the server."""
    return ticket_state(world.repo, ticket).state


def kill_tree(process) -> None:
    """SIGKILL the client and everything it started, at once: a machine that died."""
    pids = process_tree(process.pid)
    for signum in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: none reacts to the others
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    process.wait(timeout=30)


@pytest.mark.parametrize("point,where,after_kill", STEPS,
                         ids=[f"{p}-{s}-{t}" for p, (s, t), _ in STEPS])
def test_a_sigkill_at_any_step_leaves_every_ticket_held_or_freed_in_time(
        make_world, point, where, after_kill):
    world = make_world(*where)
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    carol.git("config", "claim.heartbeat", f"{INTERVAL}s")
    assert bob.claim("641").code == 0  # a live agent, beating throughout

    victim, args, env = alice, ["claim", "640"], alice.env
    if point.startswith("heartbeat"):
        assert alice.claim("640").code == 0
        args = ["claim", "heartbeat", "640"]
    elif point.startswith("release"):
        assert alice.claim("640").code == 0
        args = ["release", "640"]
    elif point.startswith("reap"):  # alice died long ago; the reaper dies while reaping
        assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET=OLD)).code == 0
        victim, args = world.agent("dave"), ["reap", *REAP]
        victim.git("config", "claim.heartbeat", f"{INTERVAL}s")
        env = victim.env

    if point.endswith(LANDED):
        gate = ServerGate(world.repo, world.root / "gate", "refs/notes/claims/640")
        gate.arm()
        process = victim.popen(*args, env=env)
        gate.wait_reached(process)  # the note is applied; the client has heard nothing
        kill_tree(process)
        gate.remove()
        assert ticket_state(world.repo, "640").event == point.split(":")[0].replace(
            "release", "released").replace("reap", "reaped")
    else:
        pause = PausePoint(world.root / "pauses", point)
        process = victim.popen(*args, env=pause.env(env))
        pause.wait_reached(process)
        pause.kill(process)
    assert state(world, "640") == after_kill
    first = claim_refs(world.repo).get("refs/claims/640")

    # A reaper running now: never frees a live claim, nor one whose holder may still live.
    now = carol.cmd("reap", *REAP, "--json")
    assert now.code == 0, now
    report = now.json()
    live = [e["ticket"] for e in report["live"]]
    assert "641" in live, report
    reaped = [e["ticket"] for e in report["reaped"]]
    if after_kill == "free":  # nothing to reap, nothing left to finish
        assert "640" not in live + reaped and state(world, "640") == "free", report
    elif point.startswith("reap"):  # alice's claim was long stale
        assert reaped == ["640"] and state(world, "640") == "free", report
    else:  # the dead agent's claim is not stale yet
        assert "640" in live and state(world, "640") == "held", report

    # TTL plus one interval later: the live agent has kept beating; the dead one has not.
    beat = bob.cmd("claim", "heartbeat", "641", env=with_env(bob, GIT_CLAIM_CLOCK_OFFSET=LATER))
    assert beat.code == 0, beat
    later = carol.cmd("reap", *REAP, "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET=LATER))
    assert later.code == 0, later
    assert "641" not in [e["ticket"] for e in later.json()["reaped"]], later
    freed = ticket_state(world.repo, "640")
    assert freed.state == "free", (later, freed, freed.tag and tag_message(world.repo, freed.tag))
    assert freed.tag == claim_refs(world.repo).get("refs/claims/640") == first  # never rewritten
    assert ticket_state(world.repo, "641").state == "held"

    taken = bob.claim("640", "--json")  # the ticket is free for anyone
    assert taken.code == 0, taken
    expected = 1 if first is None else 2  # the next epoch; a claim never pushed left none
    assert ticket_state(world.repo, "640").epoch == expected
    assert ticket_state(world.repo, "640").in_force == taken.json()["tag"]
