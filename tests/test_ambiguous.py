"""Outcomes that are not known at once are settled by re-reading the remote."""

from __future__ import annotations

from agents import PausePoint, board, claim_tags_in, remote_refs


def test_a_claim_interrupted_after_its_push_is_recovered_with_the_same_nonce(sampled_world):
    """The push landed but the client never heard: the retry finds its own tag."""
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    pause = PausePoint(world.root / "pauses", "claim:after-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    landed = remote_refs(world.repo)["refs/claims/640"]
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [landed]
    assert board(alice)["640"]["ours"] is True  # alice's checkout knows the claim it made
    assert bob.claim("640").code == 1
    retry = alice.claim("640")
    assert retry.code == 0, retry
    assert remote_refs(world.repo)["refs/claims/640"] == landed  # no second nonce
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [landed]
    assert alice.claim("verify", "640").code == 0  # settled: the claim is hers


def test_a_claim_interrupted_before_its_push_retries_cleanly(sampled_world):
    world = sampled_world
    alice = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    assert "refs/claims/640" not in remote_refs(world.repo)
    (pending,) = claim_tags_in(alice.workdir / ".git", "640", "alice")  # minted before the push
    retry = alice.claim("640")
    assert retry.code == 0, retry
    assert remote_refs(world.repo)["refs/claims/640"] == pending  # the same tag: the same nonce
    assert claim_tags_in(alice.workdir / ".git", "640", "alice") == [pending]
