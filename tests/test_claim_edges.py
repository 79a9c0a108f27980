"""Edges of the claim found by adversarial review, each judged by the remote and
by what the agents' commands did."""

from __future__ import annotations

import time

from agents import PausePoint, ticket_state


def _landed_then_killed(world, agent, ticket: str) -> None:
    """`git claim` pushes its claim and is SIGKILLed before it records the win."""
    pause = PausePoint(world.root / f"pauses-{ticket}", "claim:after-push")
    process = agent.popen("claim", ticket, env=pause.env(agent.env))
    pause.wait_reached(process)
    pause.kill(process)
    assert ticket_state(world.repo, ticket).agent == agent.name


def test_a_retry_never_wins_a_claim_that_was_ended_as_blocked(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice, admin = world.agent("alice"), world.agent("admin")
    _landed_then_killed(world, alice, "31")
    forced = admin.release("31", "--force", "--blocked", "--reason", "hold")
    assert forced.code == 0, forced
    marker = tmp_path / "ran"
    run = alice.claim("run", "31", "--", "sh", "-c", f"touch {marker}")
    assert run.code == 1 and "31 is blocked" in run.stderr, run
    assert not marker.exists()  # the command never ran
    assert alice.claim("31").code == 1
    assert ticket_state(world.repo, "31").state == "blocked"


def test_the_holder_hears_that_its_claim_was_ended_by_force(make_world):
    world = make_world("path", "libgit2")
    alice, admin = world.agent("alice"), world.agent("admin")
    assert alice.claim("33").code == 0
    assert admin.release("33", "--force", "--blocked").code == 0
    released = alice.release("33")
    assert released.code == 1 and "no longer yours" in released.stderr, released
    assert ticket_state(world.repo, "33").state == "blocked"


def test_a_stale_first_claim_never_comes_back_after_compaction(make_world):
    """carol read 700 before it was ever claimed; alice claims and releases, dave holds
    700@2, a maintainer compacts: carol's create of the bare ref must lose."""
    world = make_world("git", "libgit2")
    carol, alice, dave, admin = (world.agent(n) for n in ("carol", "alice", "dave", "admin"))
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    stale = carol.popen("claim", "700", env=pause.env(carol.env))
    pause.wait_reached(stale)
    assert alice.claim("700").code == 0 and alice.release("700").code == 0
    assert dave.claim("700").code == 0
    assert admin.claim("compact").code == 0
    pause.go()
    out, err = stale.communicate(timeout=60)
    assert stale.returncode == 1 and "held by dave" in err, (out, err)
    state = ticket_state(world.repo, "700")
    assert state.state == "held" and state.agent == "dave" and state.epoch == 2


def test_a_late_win_is_renewed_at_once(make_world):
    """A claim pushed long after it was made carries its old time: a beat renews it."""
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    alice.git("config", "claim.heartbeat", "1s")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    dying = alice.popen("claim", "12", env=pause.env(alice.env))
    pause.wait_reached(dying)
    pause.kill(dying)
    time.sleep(1.5)  # the attempt's claim time is now older than the heartbeat interval
    again = alice.claim("12")
    assert again.code == 0, again
    events = [e["event"] for e in alice.claim("log", "12", "--json").json()]
    assert events == ["claimed", "heartbeat"], events


def test_run_never_starts_its_command_on_a_lease_that_ran_out(make_world, tmp_path):
    """`run` frozen after taking its lease and before starting the command: the
    watchdog finds the lease out and never starts it; the claim is not released."""
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    for key, value in (("claim.ttl", "3s"), ("claim.maxSkew", "0"), ("claim.heartbeat", "1s")):
        alice.git("config", key, value)
    pause = PausePoint(world.root / "pauses", "run:before-start")
    marker = tmp_path / "started"
    run = alice.popen("claim", "run", "44", "--grace", "0.2s", "--", "touch", str(marker),
                      env=pause.env(alice.env))
    pause.wait_reached(run)
    time.sleep(3.5)  # longer than the lease (under the TTL of 3 s)
    pause.go()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4, (out, err)
    assert "not started" in err, err
    assert not marker.exists()
    assert ticket_state(world.repo, "44").state == "held"  # never released: it may be reaped
