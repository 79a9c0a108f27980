"""A clone whose objects were pruned (`git gc --prune=now`) reads the remote again.

Claim tags and the notes commits an agent pushes are reachable from no local
ref, so a `git gc --prune=now` in the agent's clone deletes them. The remote
still has them, and the remote is the truth: every command must bring back
what it needs from there, never fail on (or trust) the local leftovers.
"""

from __future__ import annotations

from agents import notes_log, remote_refs


def prune(agent) -> None:
    """Expire every reflog and prune every unreachable object, as a strict `gc` would."""
    agent.git("reflog", "expire", "--expire=now", "--all")
    agent.git("gc", "--quiet", "--prune=now")


def local_has(agent, oid: str) -> bool:
    return agent.git("cat-file", "-e", oid, check=False).code == 0


def test_heartbeat_after_gc_prune_now(world):
    alice = world.agent("alice")
    assert alice.claim("640").code == 0
    assert alice.claim("heartbeat", "640").code == 0
    tip = remote_refs(world.repo)["refs/notes/claims/640"]
    claim_tag = remote_refs(world.repo)["refs/claims/640"]
    prune(alice)
    assert not local_has(alice, tip) and not local_has(alice, claim_tag)  # the setup took

    beat = alice.claim("heartbeat", "640")
    assert beat.code == 0, beat
    assert beat.stdout.strip() == "heartbeat 640 #2"
    assert notes_log(world.repo, "640") == ["heartbeat 640 #2", "heartbeat 640 #1"]
    # and the fast path works again from the beat it just wrote
    prune(alice)
    again = alice.claim("heartbeat", "640")
    assert again.code == 0, again
    assert notes_log(world.repo, "640")[0] == "heartbeat 640 #3"


def test_every_reader_after_gc_prune_now(sampled_world):
    world = sampled_world
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("640").code == 0
    assert alice.claim("heartbeat", "640").code == 0
    assert bob.claim("641").code == 0
    prune(alice)
    for args in (("claim", "verify", "640"), ("claim", "list"), ("claim", "log", "640")):
        outcome = alice.cmd(*args)
        assert outcome.code == 0, (args, outcome)
    held = alice.claim("641")
    assert held.code == 1 and "641 is held by bob" in held.stderr, held
    prune(alice)
    done = alice.release("640", "--done")
    assert done.code == 0, done
    assert notes_log(world.repo, "640")[0] == "released 640"
    assert "refs/claims/640" in remote_refs(world.repo)  # the outcome tag
