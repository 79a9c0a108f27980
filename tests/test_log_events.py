"""Every state change is in `git claim log`, messages agree with results, and the board
agrees with the reaper, through the installed commands against a real remote."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agents import with_env

FAKE_GH = Path(__file__).parent / "fake_gh"


def test_every_state_change_appears_in_the_log(make_world):
    """claim, heartbeat, release free, done and blocked, reopen (twice) and reap."""
    world = make_world("path", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    steps = [
        alice.claim("900"), alice.claim("heartbeat", "900"), alice.release("900"),
        alice.claim("900"), alice.release("900", "--done"), carol.claim("reopen", "900"),
        alice.claim("900"), alice.release("900", "--blocked", "--reason", "no key"),
        carol.claim("reopen", "900"),
        alice.claim("900"),  # then dies: a reaper whose clock is ahead sees it silent
        carol.cmd("reap", "--ttl", "10s", "--max-skew", "0",
                  env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100")),
    ]
    assert all(step.code == 0 for step in steps), [str(s) for s in steps if s.code]
    events = alice.claim("log", "900", "--json").json()
    changes = [(e["epoch"], e["event"], e["outcome"]) for e in events]
    assert changes == [
        (1, "claimed", None), (1, "heartbeat", None), (1, "released", "free"),
        (2, "claimed", None), (2, "released", "done"), (2, "reopened", "done"),
        (3, "claimed", None), (3, "released", "blocked"), (3, "reopened", "blocked"),
        (4, "claimed", None), (4, "reaped", None),
    ], changes
    reopenings = [e for e in events if e["event"] == "reopened"]
    assert all(e["agent"] == "carol" and e["holder"] == "alice" for e in reopenings)
    text = alice.claim("log", "900").stdout.splitlines()
    assert [line.split()[3] for line in text] == [e["event"] for e in events]
    reopened = [line for line in text if " reopened " in line]
    assert reopened[0].endswith("carol (was done)") and reopened[1].endswith(
        "carol (was blocked)"), reopened


def test_a_clone_that_never_held_the_claims_reads_the_whole_history(make_world):
    """It fetches the tags of the earlier epochs it lacks (a clone over the network
    has none of them: a listing fetches only each ticket's newest claim)."""
    world = make_world("git", "libgit2")
    alice, dave = world.agent("alice"), world.agent("dave")
    steps = [alice.claim("901"), alice.release("901"), alice.claim("901"),
             alice.release("901", "--to", "dave"), dave.claim("901")]
    assert all(step.code == 0 for step in steps), [str(s) for s in steps if s.code]
    mine = alice.claim("log", "901", "--json").json()
    elsewhere = world.agent("erin").claim("log", "901", "--json").json()
    assert [(e["epoch"], e["event"], e["agent"]) for e in elsewhere] == [
        (1, "claimed", "alice"), (1, "released", "alice"), (2, "claimed", "alice"),
        (2, "handed", "alice"), (3, "claimed", "dave")], elsewhere
    assert elsewhere == mine


def test_the_board_never_calls_a_claim_stale_before_the_reaper_does(make_world):
    """`list` then `reap --dry-run` then `list`, while a claim's age crosses the TTL.

    Time only moves forward, so a row stale in the first listing must be
    reaped by the reaper that runs after it, and a claim the reaper would
    reap must be stale in the listing after that; "reap in 0s" is stale.
    """
    world = make_world("path", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    for key, value in (("claim.heartbeat", "1s"), ("claim.ttl", "3s"), ("claim.maxSkew", "0")):
        carol.git("config", key, value)
    assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-2")).code == 0
    seen: list[tuple[str, bool, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = _row(carol)
        dry = carol.cmd("reap", "--dry-run", "--json")
        assert dry.code == 0, dry
        reaps = [e["ticket"] for e in dry.json()["reaped"]] == ["640"]
        after = _row(carol)
        seen.append((before["state"], reaps, after["state"]))
        for row in (before, after):
            assert (row["reap_in_seconds"] == 0) == (row["state"] == "stale"), row
        if before["state"] == "stale":
            assert reaps, seen
        if reaps:
            assert after["state"] == "stale", seen
        if before["state"] == "stale":
            break
    assert seen[0][0] == "live" and seen[-1][0] == "stale", seen


def _row(agent):
    listed = agent.claim("list", "--json")
    assert listed.code == 0, listed
    (row,) = listed.json()
    return row


def test_a_warning_never_contradicts_the_result_line(make_world, tmp_path):
    """The tracker fails after a release and after a reap: each landed, and says so."""
    world = make_world("path", "libgit2")
    state = tmp_path / "gh-state.json"
    state.write_text(json.dumps({"issues": [
        {"number": n, "title": f"issue {n}", "labels": [], "state": "open"} for n in (900, 901)],
        "prs": [], "labels": ["in-progress", "blocked"]}))
    alice, carol = world.agent("alice"), world.agent("carol")
    for agent in (alice, carol):
        agent.git("config", "claim.source", "gh")
        agent.env = with_env(agent, PATH=f"{FAKE_GH}:{agent.env['PATH']}",
                             FAKE_GH_STATE=str(state), FAKE_GH_LOG=str(tmp_path / "gh.log"))
    carol.git("config", "claim.heartbeat", "1s")
    assert alice.claim("900").code == 0
    failing = with_env(alice, FAKE_GH_FAIL="edit")
    released = alice.cmd("release", "900", env=failing)
    assert released.code == 0, released
    assert released.stdout.strip() == "released 900"
    assert "the claim stands" not in released.stderr, released
    assert "900 is released all the same; `git reap` repairs the labels" in released.stderr
    assert alice.claim("901").code == 0
    done = alice.cmd("release", "901", "--done", env=failing)
    assert done.code == 0 and done.stdout.strip() == "done: 901", done
    assert "901 is recorded as done all the same" in done.stderr, done
    assert alice.cmd("claim", "900", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET="-100")).code == 0
    reaped = carol.cmd("reap", "--ttl", "10s", "--max-skew", "0",
                       env=with_env(carol, FAKE_GH_FAIL="edit"))
    assert reaped.code == 0 and "reaped 900" in reaped.stdout, reaped
    assert "the claim stands" not in reaped.stderr, reaped
    assert "could not mark the reap on 900 (reaped all the same" in reaped.stderr, reaped
