"""The zombie owner: an agent paused past the TTL comes back to a claim it lost.

`git claim run 640 -- sleep` is frozen with SIGSTOP (the tool, the `git`
wrapper and the command: the whole process group), reaped, and the ticket
taken by another agent. On SIGCONT its heartbeat, release and pre-push fence
are all refused, and none of its commits reach the claim's branch.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from agents import notes_log, remote_refs, remote_refs_bytes, with_env
from faultkit import finish, process_tree

TTL = ["--ttl", "10s", "--max-skew", "0"]
LATER = "100"  # the reaper's clock: far past the TTL, without waiting for it


def commit(agent, name: str) -> str:
    (agent.workdir / name).write_text(f"{agent.name}: {name}\n")
    agent.git("add", name)
    agent.git("commit", "-qm", f"{agent.name}: {name}")
    return agent.git("rev-parse", "HEAD").stdout.strip()


@pytest.mark.parametrize("where", [("git", "libgit2"), ("http", "git")],
                         ids=["git-libgit2", "http-git"])
def test_a_paused_owner_is_reaped_and_fenced_when_it_resumes(make_world, where):
    world = make_world(*where)
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    assert alice.claim("hook", "install").code == 0
    alice.git("checkout", "-q", "-b", "claim/640")
    commit(alice, "first.txt")

    run = alice.popen("claim", "run", "640", "--interval", "0.5s", "--", "sleep", "60",
                      start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("heartbeat 640") for line in notes_log(world.repo, "640")):
            assert run.poll() is None, finish(run)
            assert time.monotonic() < deadline, "no heartbeat from git claim run"
            time.sleep(0.05)
        frozen = process_tree(run.pid)
        assert len(frozen) >= 3  # git, the tool, sleep
        os.killpg(run.pid, signal.SIGSTOP)

        reaped = carol.cmd("reap", *TTL, "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET=LATER))
        assert reaped.code == 0, reaped
        assert [e["ticket"] for e in reaped.json()["reaped"]] == ["640"], reaped
        assert bob.claim("640").code == 0
        bob.git("checkout", "-q", "-b", "claim/640")
        bobs = commit(bob, "bob.txt")
        bob.git("push", "-q", "origin", "claim/640")
        before = remote_refs_bytes(world.repo)
    finally:
        os.killpg(run.pid, signal.SIGCONT)

    # The resumed runner's next beat is refused: it stops its command and exits 4.
    resumed = finish(run)
    assert resumed.code == 4, resumed
    assert "640 is no longer yours (reaped by carol" in resumed.stderr, resumed
    assert not [pid for pid in frozen if os.path.exists(f"/proc/{pid}")
                and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]

    for command in (("claim", "heartbeat", "640"), ("claim", "verify", "640"),
                    ("release", "640"), ("release", "640", "--done")):
        refused = alice.cmd(*command)
        assert refused.code == 1, (command, refused)
        assert "640 is no longer yours (reaped by carol" in refused.stderr, refused
    commit(alice, "second.txt")
    for push in (["push", "origin", "claim/640"], ["push", "--force", "origin", "claim/640"]):
        fenced = alice.git(*push, check=False)
        assert fenced.code != 0, fenced
        assert "refusing to push refs/heads/claim/640: 640 is no longer yours" in fenced.stderr
    assert remote_refs_bytes(world.repo) == before
    assert remote_refs(world.repo)["refs/heads/claim/640"] == bobs
    assert bob.claim("verify", "640").code == 0
