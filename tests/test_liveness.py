"""Liveness: heartbeats as notes, a reaper that never frees a live claim, the fence.

Clocks are shifted per process with GIT_CLAIM_CLOCK_OFFSET (seconds), and the
tool's pause points (GIT_CLAIM_TEST_PAUSE) force the interleavings.

The leases run on every server with both transports (`world`): a heartbeat's
note and a reap's note, each accepted when its expected notes tip holds and
refused when it moved. The scenarios built on them, whose own logic is the
same on every transport, run on `sampled_world` (each server and each
transport at least once).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import PausePoint, notes_log, remote_refs, remote_refs_bytes, ticket_state, with_env

OLD = "-100"  # an agent whose clock is 100 s behind makes claims that look old
TTL = ["--ttl", "10s", "--max-skew", "0"]


def reaper(world, name="reaper"):
    agent = world.agent(name)
    agent.git("config", "claim.heartbeat", "1s")
    return agent


def test_heartbeats_are_notes_on_the_claim(world):
    alice = world.agent("alice")
    assert alice.claim("640").code == 0
    assert alice.claim("heartbeat", "640").stdout.strip() == "heartbeat 640 #1"
    beat = alice.claim("heartbeat", "640", "--json")
    assert beat.code == 0 and beat.json()["seq"] == 2
    assert notes_log(world.repo, "640") == ["heartbeat 640 #2", "heartbeat 640 #1"]
    claim_tag = remote_refs(world.repo)["refs/claims/640"]
    note = subprocess.run(["git", "--git-dir", str(world.repo.path), "notes", "--ref",
                           "refs/notes/claims/640", "show", claim_tag],
                          capture_output=True, text=True).stdout
    assert "Claim-Event: heartbeat" in note and "Claim-Seq: 2" in note
    events = [e["event"] for e in alice.claim("log", "640", "--json").json()]
    assert events == ["claimed", "heartbeat", "heartbeat"]
    assert alice.claim("verify", "640").code == 0


def test_reap_frees_stale_and_keeps_live(sampled_world):
    """Which claims are stale, and what the owner and the log see after a reap.

    The reap's writes on every server and transport, accepted and refused, are
    test_reaper_against_heartbeat_forced_interleavings's (full matrix).
    """
    world = sampled_world
    alice, carol = world.agent("alice"), reaper(world, "carol")
    assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET=OLD)).code == 0
    assert alice.claim("641").code == 0
    assert alice.claim("heartbeat", "641").code == 0
    dry = carol.cmd("reap", *TTL, "--dry-run", "--json")
    assert dry.code == 0, dry
    document = dry.json()
    assert [e["ticket"] for e in document["reaped"]] == ["640"]
    assert [e["ticket"] for e in document["live"]] == ["641"]
    stale = ticket_state(world.repo, "640")
    assert stale.state == "held"  # a dry run changes nothing
    done = carol.cmd("reap", *TTL)
    assert done.code == 0, done
    assert done.stdout.splitlines()[-1] == "reaped 1, live 1, skipped 0"
    reaped_state = ticket_state(world.repo, "640")
    assert (reaped_state.state, reaped_state.event, reaped_state.tag) == ("free", "reaped",
                                                                          stale.tag)
    assert ticket_state(world.repo, "641").state == "held"
    events = alice.claim("log", "640", "--json").json()
    reaped = [e for e in events if e["event"] == "reaped"]
    assert len(reaped) == 1 and reaped[0]["agent"] == "carol" and reaped[0]["ttl"] == 10
    lost = alice.claim("heartbeat", "640")
    assert lost.code == 1 and "640 is no longer yours (reaped by carol at" in lost.stderr
    assert world.agent("bob").claim("640").code == 0
    after = ticket_state(world.repo, "640")
    assert (after.state, after.agent, after.epoch) == ("held", "bob", 2), after


def test_reap_refuses_a_ttl_below_the_heartbeat_interval(sampled_world):
    world = sampled_world
    carol = world.agent("carol")
    refused = carol.cmd("reap", "--ttl", "1m")
    assert refused.code == 2 and "heartbeat interval" in refused.stderr
    assert carol.cmd("reap", "--ttl", "1m", "--force").code == 0


def _beat_then_reap(world, alice, carol, ticket):
    """The reaper reads, a heartbeat lands, the reaper writes: the beat wins."""
    held = ticket_state(world.repo, ticket).in_force
    pause = PausePoint(world.root / "pauses", "reap:before-decide")
    process = carol.popen("reap", *TTL, "--ticket", ticket, "--json",
                          env=pause.env(with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100")))
    pause.wait_reached(process)
    beat = alice.claim("heartbeat", ticket)
    pause.go()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    assert beat.code == 0, beat
    report = json.loads(out)
    assert report["reaped"] == [] and [e["ticket"] for e in report["revived"]] == [ticket]
    state = ticket_state(world.repo, ticket)
    assert (state.state, state.in_force, state.event) == ("held", held, "heartbeat"), state


def _reap_then_beat(world, alice, carol, ticket):
    """The owner reads, the reaper reaps, the owner's beat is refused."""
    pause = PausePoint(world.root / "pauses", "heartbeat:before-push")
    process = alice.popen("claim", "heartbeat", ticket, env=pause.env(alice.env))
    pause.wait_reached(process)
    reaped = carol.cmd("reap", *TTL, "--ticket", ticket, "--json",
                       env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
    pause.go()
    out, err = process.communicate(timeout=60)
    assert reaped.code == 0 and [e["ticket"] for e in reaped.json()["reaped"]] == [ticket], reaped
    assert process.returncode == 1, (out, err)
    assert f"{ticket} is no longer yours (reaped by carol" in err
    state = ticket_state(world.repo, ticket)
    assert (state.state, state.event) == ("free", "reaped"), state


# The pause points force each order, so a trial repeats the same interleavings:
# one per server and transport by default, 100 on git:// with `pytest -m slow`.
REAP_TRIALS = 1


def test_reaper_against_heartbeat_forced_interleavings(world):
    """Both orders of a heartbeat and a reap: each note leased on the notes tip it read."""
    alice, carol = world.agent("alice"), reaper(world, "carol")
    for trial in range(REAP_TRIALS):
        ticket = f"R{trial}"
        assert alice.claim(ticket).code == 0
        _beat_then_reap(world, alice, carol, ticket)
        _reap_then_beat(world, alice, carol, ticket)
        heads = notes_log(world.repo, ticket)
        assert heads.count(f"reaped {ticket}") == 1


@pytest.mark.slow
@pytest.mark.parametrize("tool_transport", ["libgit2", "git"])
def test_reaper_against_heartbeat_hundred_trials(make_world, tool_transport):
    world = make_world("git", tool_transport)
    alice, carol = world.agent("alice"), reaper(world, "carol")
    for trial in range(100):  # each trial forces both orders: 200 interleavings
        ticket = f"H{trial}"
        assert alice.claim(ticket).code == 0
        _beat_then_reap(world, alice, carol, ticket)
        _reap_then_beat(world, alice, carol, ticket)


def test_server_side_lease_when_the_reapers_push_is_held(make_world, transport):
    """The reaper's push passes negotiation, waits in pre-receive; a beat lands first."""
    world = make_world("git", transport)
    alice, carol = world.agent("alice"), reaper(world, "carol")
    gate = world.root / "gate"
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        "  case \"$(git log -1 --format=%s $new 2>/dev/null)\" in reaped*)\n"
        f"    touch '{gate}.reached'; while [ ! -e '{gate}.go' ]; do sleep 0.01; done;;\n"
        "  esac\ndone\nexit 0\n")
    hook.chmod(0o755)
    assert alice.claim("640").code == 0
    assert alice.claim("heartbeat", "640").code == 0
    process = carol.popen("reap", *TTL, "--ticket", "640", "--json",
                          env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
    deadline = time.monotonic() + 60
    while not gate.with_suffix(".reached").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    assert alice.claim("heartbeat", "640").code == 0
    gate.with_suffix(".go").write_text("")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    assert json.loads(out)["reaped"] == []
    state = ticket_state(world.repo, "640")
    assert (state.state, state.event, state.epoch) == ("held", "heartbeat", 1), state
    assert alice.claim("verify", "640").code == 0


def test_two_reapers_and_a_new_claim(sampled_world):
    """A reaper that judged the old claim stale must not reap the claim made after it.

    The first reaper has read the ticket and decided; the second reaps it and
    bob claims the next epoch before the first one writes. Its note, leased on
    the notes tip it read, is refused: bob's claim stands.
    """
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    first, second = reaper(world, "reaper1"), reaper(world, "reaper2")
    assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET=OLD)).code == 0
    pause = PausePoint(world.root / "pauses", "reap:before-decide")
    process = first.popen("reap", *TTL, "--json", env=pause.env(first.env))
    pause.wait_reached(process)
    reaping = second.cmd("reap", *TTL, "--json")
    assert reaping.code == 0, reaping
    assert [e["ticket"] for e in reaping.json()["reaped"]] == ["640"]
    taken = bob.claim("640", "--json")
    assert taken.code == 0, taken
    pause.go()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    assert json.loads(out)["reaped"] == [], out
    state = ticket_state(world.repo, "640")
    assert (state.state, state.agent, state.epoch) == ("held", "bob", 2), state
    assert state.in_force == taken.json()["tag"] and state.ref == "refs/claims/640@2"
    assert "Claim-Agent: bob" in subprocess.run(
        ["git", "--git-dir", str(world.repo.path), "cat-file", "-p", "refs/claims/640@2"],
        capture_output=True, text=True).stdout
    assert notes_log(world.repo, "640").count("reaped 640") == 1
    assert bob.claim("verify", "640").code == 0


def test_an_agent_killed_after_claiming_is_reaped_after_the_ttl(sampled_world):
    world = sampled_world
    alice, bob, carol = world.agent("alice"), world.agent("bob"), reaper(world, "carol")
    pause = PausePoint(world.root / "pauses", "claim:after-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    assert ticket_state(world.repo, "640").state == "held"
    assert bob.claim("640").code == 1
    early = carol.cmd("reap", "--ttl", "60s", "--max-skew", "0", "--json")
    assert early.json()["reaped"] == []
    later = carol.cmd("reap", "--ttl", "60s", "--max-skew", "0", "--json",
                      env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="61"))
    assert [e["ticket"] for e in later.json()["reaped"]] == ["640"], later
    assert bob.claim("640").code == 0


def test_a_reaper_killed_before_its_note_leaves_the_claim_for_the_next(sampled_world):
    """A reap is one note: a reaper killed right before it has changed nothing.

    The claim stays held and stale (no half-ended state), and the next reaper
    frees it with one note.
    """
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    first, second = reaper(world, "reaper1"), reaper(world, "reaper2")
    assert alice.cmd("claim", "640", env=with_env(alice, GIT_CLAIM_CLOCK_OFFSET=OLD)).code == 0
    held = ticket_state(world.repo, "640").in_force
    before = remote_refs_bytes(world.repo)
    pause = PausePoint(world.root / "pauses", "reap:before-decide")
    process = first.popen("reap", *TTL, env=pause.env(first.env))
    pause.wait_reached(process)
    pause.kill(process)
    assert remote_refs_bytes(world.repo) == before
    assert ticket_state(world.repo, "640").state == "held"
    bob.git("config", "claim.ttl", "10s")
    bob.git("config", "claim.maxSkew", "0")
    rows = {r["ticket"]: r for r in bob.claim("list", "--json").json()}
    assert rows["640"]["state"] == "stale" and rows["640"]["tag"] == held, rows
    assert bob.claim("640").code == 1
    finish = second.cmd("reap", *TTL)
    assert finish.code == 0, finish
    state = ticket_state(world.repo, "640")
    assert (state.state, state.event, state.tag) == ("free", "reaped", held), state
    assert notes_log(world.repo, "640").count("reaped 640") == 1
    assert bob.claim("640").code == 0
    assert ticket_state(world.repo, "640").epoch == 2


SKEWS = [("libgit2", "-300", "0"), ("libgit2", "0", "300"), ("git", "300", "0"),
         ("git", "0", "-300")]


@pytest.mark.parametrize("transport,agent_offset,reaper_offset", SKEWS)
def test_clock_skew_within_the_margin(make_world, transport, agent_offset, reaper_offset):
    """Skew up to max-skew (5m): a beating claim survives; a dead one is still reaped."""
    world = make_world("git", transport)
    alice, dead, carol = world.agent("alice"), world.agent("dead"), reaper(world, "carol")
    alice_env = with_env(alice, GIT_CLAIM_CLOCK_OFFSET=agent_offset)
    dead_env = with_env(dead, GIT_CLAIM_CLOCK_OFFSET=agent_offset)
    carol_env = with_env(carol, GIT_CLAIM_CLOCK_OFFSET=reaper_offset)
    ttl, interval = 6.0, 0.3
    # alice works and beats every 0.5 s from `git claim run`; `dead` claims and stops
    tool = str(Path(sys.executable).parent / "git-claim")  # signals reach it directly
    live = subprocess.Popen([tool, "run", "640", "--interval", "0.5s", "--on-failure", "keep",
                             "--", "sh", "-c", "echo started; exec sleep 120"],
                            cwd=alice.workdir, env=alice_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert live.stdout.readline().strip() == "started"
    assert dead.cmd("claim", "641", env=dead_env).code == 0
    started = time.monotonic()
    reaped_at = None
    try:
        while reaped_at is None:
            run = carol.cmd("reap", "--ttl", f"{ttl:g}s", "--max-skew", "5m", "--json",
                            env=carol_env)
            assert run.code == 0, run
            tickets = [e["ticket"] for e in run.json()["reaped"]]
            assert "640" not in tickets, run
            if "641" in tickets:
                reaped_at = time.monotonic() - started
            assert time.monotonic() - started < ttl + 300 + interval
            time.sleep(interval)
        assert reaped_at >= ttl - 1  # never before the TTL, even with skewed clocks
        assert alice.cmd("claim", "verify", "640", env=alice_env).code == 0
    finally:
        live.terminate()
        live.communicate(timeout=60)


def test_a_reaped_owner_is_fenced(sampled_world):
    world = sampled_world
    alice, bob, carol = world.agent("alice"), world.agent("bob"), reaper(world, "carol")
    assert alice.claim("640").code == 0
    alice.git("checkout", "-q", "-b", "claim/640")
    (alice.workdir / "work.txt").write_text("work\n")
    alice.git("add", "work.txt")
    alice.git("commit", "-qm", "work on 640")
    installed = alice.claim("hook", "install")
    assert installed.code == 0, installed
    pushed = alice.git("push", "-q", "origin", "claim/640", check=False)
    assert pushed.code == 0, pushed  # still ours: the fence lets it through
    assert alice.claim("verify").code == 0  # the ticket of the current branch
    assert carol.cmd("reap", *TTL, env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100")).code == 0
    assert bob.claim("640").code == 0
    before = remote_refs_bytes(world.repo)
    for command in (("claim", "heartbeat", "640"), ("claim", "verify", "640"),
                    ("claim", "verify"), ("release", "640"), ("release", "640", "--done")):
        refused = alice.cmd(*command)
        assert refused.code == 1, (command, refused)
        assert "640 is no longer yours (reaped by carol at" in refused.stderr, refused
    (alice.workdir / "more.txt").write_text("more\n")
    alice.git("add", "more.txt")
    alice.git("commit", "-qm", "more work on 640")
    fenced = alice.git("push", "origin", "claim/640", check=False)
    assert fenced.code != 0
    assert "refusing to push refs/heads/claim/640: 640 is no longer yours" in fenced.stderr
    assert remote_refs_bytes(world.repo) == before
    # the pre-commit framework's way: variables, empty stdin
    framework = alice.cmd("claim", "hook", "pre-push", "origin", world.repo.url, input="",
                          env=with_env(alice, PRE_COMMIT_REMOTE_BRANCH="refs/heads/claim/640",
                                       PRE_COMMIT_LOCAL_BRANCH="refs/heads/claim/640",
                                       PRE_COMMIT_TO_REF="1" * 40,
                                       PRE_COMMIT_FROM_REF="0" * 40))
    assert framework.code == 1 and "no longer yours" in framework.stderr
    # deleting the branch and pushing other branches still work
    assert alice.git("push", "-q", "origin", "HEAD:refs/heads/elsewhere", check=False).code == 0
