"""A win that comes late is checked before anyone works on it (both found by the soak).

- `git claim run` whose claimer froze between its push and the server's
  answer: by the time it hears "won", a reaper may have freed the ticket. It
  beats before starting its command, and a reaped claim stops it there.
- An agent that retries a push it left pending (it crashed after the push
  landed) must not win with a claim that has been reaped since: it drops the
  old claim and claims anew, as the ticket's next epoch.
"""

from __future__ import annotations

import time

from agents import PausePoint, tag_message, ticket_state, with_env
from faultkit import claim_refs, finish

REAP = ["reap", "--ttl", "3s", "--max-skew", "0"]
LATER = "100"  # a reaper's clock long past the TTL


def reap_now(carol) -> None:
    reaped = carol.cmd(*REAP, "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET=LATER))
    assert reaped.code == 0, reaped
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["640"], reaped


def test_run_beats_before_its_command_when_the_win_came_after_the_lease(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    for key, value in (("claim.ttl", "3s"), ("claim.maxSkew", "0"), ("claim.heartbeat", "1s")):
        alice.git("config", key, value)  # run gives up on a lease after 3s - 1s
    carol.git("config", "claim.heartbeat", "1s")
    point = PausePoint(tmp_path / "pause", "claim:after-push")
    run = alice.popen("claim", "run", "640", "--grace", "1s", "--", "sh", "-c", "touch ran",
                      env=point.env(alice.env))
    point.wait_reached(run)
    reached = time.monotonic()
    reap_now(carol)  # the claim landed, and is reaped before alice hears that she won
    while time.monotonic() - reached < 2.5:  # her lease is older than run allows
        time.sleep(0.05)
    point.go()
    outcome = finish(run)
    assert outcome.code == 1, outcome
    assert "640 is no longer yours (reaped by carol" in outcome.stderr, outcome
    assert not (alice.workdir / "ran").exists()


def test_a_retried_push_that_was_reaped_meanwhile_is_no_win(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    point = PausePoint(tmp_path / "pause", "claim:after-push")
    crashed = alice.popen("claim", "640", env=point.env(alice.env))
    point.wait_reached(crashed)
    point.kill(crashed)  # the push landed; alice keeps a pending record of it
    first = claim_refs(world.repo)["refs/claims/640"]
    reap_now(carol)
    reaped = ticket_state(world.repo, "640")
    assert (reaped.state, reaped.event, reaped.tag) == ("free", "reaped", first), reaped

    again = alice.claim("640")
    assert again.code == 0, again
    now = ticket_state(world.repo, "640")
    second = now.in_force
    assert now.state == "held" and second is not None and second != first, now
    assert claim_refs(world.repo) == {"refs/claims/640": first, "refs/claims/640@2": second}
    assert "Claim-Agent: alice" in tag_message(world.repo, second)
    verified = alice.claim("verify", "640")
    assert verified.code == 0, verified
    assert alice.claim("heartbeat", "640").code == 0
