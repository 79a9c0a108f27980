"""Outcomes that are not known at once are settled by re-reading the remote."""

from __future__ import annotations

import re

from agents import PausePoint, owned_record, remote_refs, tag_message


def test_a_claim_interrupted_after_its_push_is_recovered_with_the_same_nonce(sampled_world):
    """The push landed but the client never heard: the retry finds its own tag."""
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    pause = PausePoint(world.root / "pauses", "claim:after-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    record = owned_record(alice.workdir / ".git", "640")
    assert record["pending"] is True
    landed = remote_refs(world.repo)["refs/claims/640"]
    assert landed == record["tag"]
    assert bob.claim("640").code == 1
    retry = alice.claim("640")
    assert retry.code == 0, retry
    assert remote_refs(world.repo)["refs/claims/640"] == landed  # no second nonce
    assert owned_record(alice.workdir / ".git", "640")["pending"] is False
    assert alice.claim("verify", "640").code == 0


def test_a_claim_interrupted_before_its_push_retries_cleanly(sampled_world):
    world = sampled_world
    alice = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    assert "refs/claims/640" not in remote_refs(world.repo)
    pending = owned_record(alice.workdir / ".git", "640")
    retry = alice.claim("640")
    assert retry.code == 0, retry
    body = tag_message(world.repo, remote_refs(world.repo)["refs/claims/640"])
    assert re.search(rf"^Claim-Nonce: {pending['nonce']}$", body, re.M)
