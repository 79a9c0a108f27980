"""SIGKILL at every step of claim, heartbeat, release and reap.

Whatever step a process dies at, every ticket is afterwards either held by
a live agent or freed within TTL plus one reap interval. Time is not waited
for: the reaper runs with its clock shifted by TTL plus the interval.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from agents import PausePoint, tag_message, with_env
from faultkit import claim_refs

TTL = 10  # seconds
INTERVAL = 1  # how often the reaper is meant to run
REAP = ["--ttl", f"{TTL}s", "--max-skew", "0"]
LATER = str(TTL + INTERVAL)  # the clock of a reaper run TTL plus one interval from now
OLD = str(-10 * TTL)  # a claim made by this clock looks long dead

# (pause point, world, the state of ticket 640 right after the kill)
STEPS = [
    ("claim:before-push", ("path", "libgit2"), "free"),
    ("claim:after-push", ("git", "git"), "held"),
    ("heartbeat:before-push", ("http", "libgit2"), "held"),
    ("release:before-decide", ("file", "git"), "held"),
    ("release:before-complete", ("git", "libgit2"), "ending"),
    ("reap:before-decide", ("http", "git"), "held"),
    ("reap:before-complete", ("path", "git"), "ending"),
]


def state(world, ticket: str) -> str:
    """free, held or ending (a release or reap is recorded, the ref not yet deleted)."""
    claim = claim_refs(world.repo).get(f"refs/claims/{ticket}")
    if claim is None:
        return "free"
    note = subprocess.run(["git", "--git-dir", str(world.repo.path), "notes", "--ref",
                           f"refs/notes/claims/{ticket}", "show", claim],
                          capture_output=True, text=True).stdout
    return "ending" if re.search(r"^Claim-Event: (released|reaped)$", note, re.M) else "held"


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

    pause = PausePoint(world.root / "pauses", point)
    process = victim.popen(*args, env=pause.env(env))
    pause.wait_reached(process)
    pause.kill(process)
    assert state(world, "640") == after_kill

    # A reaper running now: never frees a live claim, finishes a decided change.
    if after_kill != "free":
        now = carol.cmd("reap", *REAP, "--json")
        assert now.code == 0, now
        report = now.json()
        live = [e["ticket"] for e in report["live"]]
        assert "641" in live, report
        if after_kill == "ending" or point.startswith("reap"):
            assert state(world, "640") == "free", report
        else:  # the dead agent's claim is not stale yet
            assert "640" in live and state(world, "640") == "held", report

    # TTL plus one interval later: the live agent has kept beating; the dead one has not.
    beat = bob.cmd("claim", "heartbeat", "641", env=with_env(bob, GIT_CLAIM_CLOCK_OFFSET=LATER))
    assert beat.code == 0, beat
    later = carol.cmd("reap", *REAP, "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET=LATER))
    assert later.code == 0, later
    assert "641" not in [e["ticket"] for e in later.json()["reaped"]], later
    refs = claim_refs(world.repo)
    assert "refs/claims/640" not in refs, (later, tag_message(world.repo, refs["refs/claims/640"]))
    assert "refs/claims/641" in refs

    assert bob.claim("640").code == 0  # the ticket is free for anyone
