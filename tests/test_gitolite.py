"""Agents on a real gitolite3 host, with only the rights docs/hosting.md gives them.

The host (tests/gitolite.py) serves each repository over ssh:// with
gitolite's own access rules: agents may create claim refs and create and
fast-forward notes refs, nothing more in those namespaces; the maintainer
may also delete claims. The whole agent loop must work with the agent key
on both transports; gitolite itself must refuse what the rules forbid (in
its own words) and the remote must not change; compaction works with the
maintainer key. Judged with the oracle (`ticket_state`) and exit codes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agents import Agent, remote_refs, remote_refs_bytes, ticket_state, with_env
from gitolite import GitoliteServer, gitolite_server, install_gitolite_client_home  # noqa: F401

# `conftest` is not imported by name: under pytest-xdist that name may resolve to
# tests/faults/conftest.py. The World class comes through the `world_on` fixture.


def gitolite_world(world_on: Any, server: GitoliteServer, root: Path, transport: str) -> Any:
    return world_on("ssh", transport, server, root)  # the agent key: ssh to gitolite


def maintainer(world: Any, server: GitoliteServer, transport: str) -> Agent:
    """A clone that logs in with the maintainer key (its own HOME and ssh command)."""
    home = world.root / "maintainer-home"
    home.mkdir()
    install_gitolite_client_home(home, server, "maintainer")
    env = {**world.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "GIT_SSH_COMMAND": server.ssh_command(home, "maintainer"),
           "GIT_CLAIM_AGENT": "maintainer"}
    workdir = world.root / "maintainer"
    subprocess.run(["git", "clone", "-q", world.repo.url, str(workdir)], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "-C", str(workdir), "config", "claim.transport", transport],
                   env=env, check=True)
    return Agent("maintainer", workdir, env, world.repo)


@pytest.mark.parametrize("transport", ["libgit2", pytest.param("git", marks=pytest.mark.slow)])
def test_the_whole_loop_with_the_agent_key(
        gitolite_server, world_on, tmp_path, transport):  # noqa: F811 (the imported fixture)
    world = gitolite_world(world_on, gitolite_server, tmp_path / "world", transport)
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    reaper.git("config", "claim.heartbeat", "1s")

    first = alice.claim("T")
    assert first.code == 0, first
    assert ticket_state(world.repo, "T").state == "held"
    assert ticket_state(world.repo, "T").agent == "alice"
    refused = bob.claim("T")
    assert refused.code == 1, refused
    assert alice.claim("heartbeat", "T").code == 0
    assert ticket_state(world.repo, "T").event == "heartbeat"
    released = alice.release("T")  # free: the next claim is epoch 2
    assert released.code == 0, released
    assert ticket_state(world.repo, "T").state == "free"

    second = bob.claim("T")
    assert second.code == 0 and "refs/claims/T@2" in second.stdout, second
    state = ticket_state(world.repo, "T")
    assert (state.state, state.epoch, state.ref, state.agent) == ("held", 2, "refs/claims/T@2",
                                                                  "bob")
    done = bob.release("T", "--done")
    assert done.code == 0, done
    assert ticket_state(world.repo, "T").state == "done"
    on_done = alice.claim("T")
    assert on_done.code == 1 and "done" in on_done.stderr, on_done
    reopened = alice.claim("reopen", "T")
    assert reopened.code == 0, reopened
    assert ticket_state(world.repo, "T").state == "free"

    third = alice.claim("T")
    assert third.code == 0 and "refs/claims/T@3" in third.stdout, third
    blocked = alice.release("T", "--blocked", "--reason", "needs a key")
    assert blocked.code == 0, blocked
    state = ticket_state(world.repo, "T")
    assert (state.state, state.epoch, state.reason) == ("blocked", 3, "needs a key")

    assert bob.claim("D").code == 0  # bob dies holding D: the reaper frees it
    reaped = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--json",
                        env=with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reaped.code == 0, reaped
    assert [entry["ticket"] for entry in reaped.json()["reaped"]] == ["D"]
    assert ticket_state(world.repo, "D").state == "free"
    assert ticket_state(world.repo, "D").event == "reaped"
    assert ticket_state(world.repo, "T").state == "blocked"  # an outcome is not reaped
    assert bob.claim("heartbeat", "D").code == 1  # no longer bob's
    again = alice.claim("D")
    assert again.code == 0 and "refs/claims/D@2" in again.stdout, again

    backlog = tmp_path / "backlog.txt"
    backlog.write_text("D\nN\n")  # D is alice's: run takes N
    run = bob.claim("run", "--next", "--from", str(backlog), "--", "true")
    assert run.code == 0, run
    assert ticket_state(world.repo, "N").state == "done"  # `true` succeeded
    assert ticket_state(world.repo, "N").epoch == 1
    assert ticket_state(world.repo, "D").agent == "alice"

    # append-only: every epoch is still there
    assert {"refs/claims/T", "refs/claims/T@2", "refs/claims/T@3", "refs/claims/D",
            "refs/claims/D@2", "refs/claims/N"} <= set(remote_refs(world.repo))


def test_gitolite_refuses_deletes_and_rewinds_and_the_maintainer_compacts(
        gitolite_server, world_on, tmp_path):  # noqa: F811 (the imported fixture)
    world = gitolite_world(world_on, gitolite_server, tmp_path / "world", "git")
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("T").code == 0
    assert alice.claim("U").code == 0
    assert alice.claim("heartbeat", "U").code == 0
    stale = tmp_path / "stale.git"
    subprocess.run(["git", "clone", "-q", "--mirror", world.repo.url, str(stale)], check=True,
                   capture_output=True, env=world.env)
    assert alice.release("T").code == 0
    assert bob.claim("T").code == 0  # T@2, which the stale clone lacks
    assert alice.claim("heartbeat", "U").code == 0  # U's notes move past the stale copy
    before = remote_refs_bytes(world.repo)
    held = ticket_state(world.repo, "T")
    assert (held.state, held.epoch, held.agent) == ("held", 2, "bob")

    # the agent key: a mirror push would delete T@2 and rewind U's notes
    mirrored = subprocess.run(["git", "--git-dir", str(stale), "push", "--mirror",
                               world.repo.url], capture_output=True, text=True, env=world.env)
    assert mirrored.returncode != 0, mirrored
    assert "D refs/claims/T@2" in mirrored.stderr and "DENIED by fallthru" in mirrored.stderr, \
        mirrored.stderr
    assert "+ refs/notes/claims/U" in mirrored.stderr, mirrored.stderr
    assert remote_refs_bytes(world.repo) == before
    # and a plain delete of a superseded claim (T is ended: T@2 is the newest)
    deleted = alice.git("push", "origin", ":refs/claims/T", check=False)
    assert deleted.code != 0, deleted
    assert "D refs/claims/T " in deleted.stderr and "DENIED by fallthru" in deleted.stderr, deleted
    assert remote_refs_bytes(world.repo) == before
    # nor a rewrite of a claim, nor a rewind of a notes ref
    forced = subprocess.run(["git", "--git-dir", str(stale), "push", "--force", world.repo.url,
                             "refs/claims/U:refs/claims/T@2",
                             "refs/notes/claims/U:refs/notes/claims/U"],
                            capture_output=True, text=True, env=world.env)
    assert forced.returncode != 0, forced
    assert "+ refs/claims/T@2" in forced.stderr and "DENIED" in forced.stderr, forced.stderr
    assert remote_refs_bytes(world.repo) == before
    # nor compaction: it needs the delete right, which agents lack (exit 5); T@2 is
    # superseded once T@3 exists (the first claim, the bare T, is always kept)
    assert bob.release("T").code == 0
    assert alice.claim("T").code == 0  # T@3
    held = ticket_state(world.repo, "T")
    before = remote_refs_bytes(world.repo)
    not_allowed = alice.claim("compact")
    assert not_allowed.code == 5, not_allowed
    assert "refs/claims/T@2" in not_allowed.stderr, not_allowed
    assert remote_refs_bytes(world.repo) == before
    assert alice.claim("heartbeat", "T").code == 0 and alice.claim("heartbeat", "U").code == 0

    # the maintainer key deletes superseded claims, on both transports
    admin = maintainer(world, gitolite_server, "libgit2")
    compacted = admin.claim("compact")
    assert compacted.code == 0, compacted
    assert compacted.stdout.strip() == "deleted 1 superseded claim of 2 tickets", compacted
    claims = sorted(ref for ref in remote_refs(world.repo) if ref.startswith("refs/claims/"))
    assert claims == ["refs/claims/T", "refs/claims/T@3", "refs/claims/U"]
    after = ticket_state(world.repo, "T")
    assert (after.state, after.epoch, after.tag) == ("held", 3, held.tag)
    assert alice.claim("heartbeat", "T").code == 0
    assert bob.claim("T").code == 1  # still alice's

    assert alice.release("T").code == 0
    assert bob.claim("T").code == 0  # T@4
    admin.git("config", "claim.transport", "git")
    compacted = admin.claim("compact")
    assert compacted.code == 0, compacted
    assert compacted.stdout.strip() == "deleted 1 superseded claim of 2 tickets", compacted
    claims = sorted(ref for ref in remote_refs(world.repo) if ref.startswith("refs/claims/"))
    assert claims == ["refs/claims/T", "refs/claims/T@4", "refs/claims/U"]
    assert ticket_state(world.repo, "T").agent == "bob"
