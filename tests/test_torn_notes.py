"""A notes commit the reader's clone has but cannot read whole is never "no note".

Claim tags and notes are reachable from no local ref, so a clone can hold a
notes commit without its tree or note: a `git gc --prune=now` deletes them
one by one, a copy cut short by SIGKILL leaves part of them, a partial clone
never had the blobs. Read as "no note", the holder's last heartbeat vanished
and the claim looked silent since its claim time: `git reap` freed a live
claim. Now such a note is fetched again, and what still cannot be read makes
the claim unknown: reported, never reaped.
"""

from __future__ import annotations

import subprocess

import pytest

from agents import Agent, remote_refs, ticket_state, with_env


def plant_commit_without_note(reader, repo_path, tip: str) -> str:
    """Write the remote's notes commit and its tree into the reader's clone, not its blob."""
    def raw(kind: str, oid: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(repo_path), "cat-file", kind, oid],
                              check=True, capture_output=True).stdout

    tree = raw("commit", tip).split(b"\n", 1)[0].split()[1].decode()
    for kind, oid in (("tree", tree), ("commit", tip)):
        written = subprocess.run(["git", "hash-object", "-w", "-t", kind, "--stdin"],
                                 cwd=reader.workdir, env=reader.env, input=raw(kind, oid),
                                 check=True, capture_output=True).stdout.decode().strip()
        assert written == oid
    note = subprocess.run(["git", "--git-dir", str(repo_path), "ls-tree", tree], check=True,
                          capture_output=True, text=True).stdout.split()[2]
    assert reader.git("cat-file", "-e", note, check=False).code != 0  # the note itself is not
    return note


def test_reaper_with_a_torn_notes_commit_keeps_a_live_claim(world):
    bob, alice = world.agent("bob"), world.agent("alice")
    # bob claimed an hour ago and has beaten just now: live under a 15 m TTL
    assert bob.cmd("claim", "640", env=with_env(bob, GIT_CLAIM_CLOCK_OFFSET="-3600")).code == 0
    assert bob.claim("heartbeat", "640").code == 0
    tip = remote_refs(world.repo)["refs/notes/claims/640"]
    note = plant_commit_without_note(alice, world.repo.path, tip)

    listed = alice.cmd("claim", "list", "--json")
    assert listed.code == 0, listed
    [row] = listed.json()
    assert row["state"] == "live" and row["beats"] == 1, row  # fetched again, read whole
    assert alice.git("cat-file", "-e", note, check=False).code == 0

    reaped = alice.cmd("reap", "--ttl", "15m", "--json")
    assert reaped.code == 0, reaped
    assert not reaped.json()["reaped"], reaped
    assert ticket_state(world.repo, "640").agent == "bob"
    assert bob.claim("verify", "640").code == 0


def test_a_note_that_cannot_be_fetched_reads_as_unknown_and_is_not_reaped(sampled_world):
    world = sampled_world
    bob, alice = world.agent("bob"), world.agent("alice")
    assert bob.cmd("claim", "640", env=with_env(bob, GIT_CLAIM_CLOCK_OFFSET="-3600")).code == 0
    assert bob.claim("heartbeat", "640").code == 0
    tip = remote_refs(world.repo)["refs/notes/claims/640"]
    note = plant_commit_without_note(alice, world.repo.path, tip)
    # the remote cannot send it again either (its copy is gone): the reader must not guess
    loose = world.repo.path / "objects" / note[:2] / note[2:]
    assert loose.exists()  # a push this small is kept as loose objects
    loose.unlink()

    listed = alice.cmd("claim", "list", "--json")
    assert listed.code == 0, listed
    [row] = listed.json()
    assert row["state"] == "unknown" and "cannot be read" in (row["problem"] or ""), row
    reaped = alice.cmd("reap", "--ttl", "15m", "--json")
    assert not reaped.json()["reaped"], reaped
    assert ticket_state(world.repo, "640").agent == "bob"


def partial_clone(world, name: str):
    """A clone made with `--filter=blob:none` and `claim.transport git`: no note blob arrives."""
    subprocess.run(["git", "--git-dir", str(world.repo.path), "config", "uploadpack.allowFilter",
                    "true"], check=True)
    workdir = world.root / name
    subprocess.run(["git", "clone", "-q", "--filter=blob:none", world.repo.url, str(workdir)],
                   env=world.env, check=True, capture_output=True)
    env = {**world.env, "GIT_CLAIM_AGENT": name}
    subprocess.run(["git", "-C", str(workdir), "config", "claim.transport", "git"], env=env,
                   check=True)
    return Agent(name, workdir, env, world.repo)


@pytest.mark.parametrize("scheme", ["file", "git", "http"])
def test_a_partial_clone_reads_notes_and_claims_a_released_ticket(make_world, scheme):
    world = make_world(scheme, "git")
    bob = world.agent("bob")
    assert bob.claim("641").code == 0
    assert bob.release("641").code == 0  # free again: its release is a note
    assert bob.cmd("claim", "642", env=with_env(bob, GIT_CLAIM_CLOCK_OFFSET="-7200")).code == 0
    assert bob.claim("643").code == 0
    assert bob.claim("heartbeat", "643").code == 0
    alice = partial_clone(world, "alice")

    listed = alice.cmd("claim", "list", "--json")
    assert listed.code == 0, listed
    rows = {row["ticket"]: row for row in listed.json()}
    assert set(rows) == {"642", "643"} and rows["643"]["state"] == "live", rows
    taken = alice.claim("641")
    assert taken.code == 0, taken
    reaped = alice.cmd("reap", "--ttl", "15m", "--json")
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["642"], reaped
    assert ticket_state(world.repo, "643").agent == "bob"
