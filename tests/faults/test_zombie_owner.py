"""The zombie owner: an agent paused past the TTL comes back to a claim it lost.

`git claim run 640 -- sleep` is frozen with SIGSTOP (the tool, the `git`
wrapper, its watchdog and the command: the whole process group), reaped, and
the ticket taken by another agent. On SIGCONT its heartbeat, release and pre-push fence
are all refused, and none of its commits reach the claim's branch.
"""

from __future__ import annotations

import os
import signal
import time

from agents import notes_log, remote_refs, remote_refs_bytes, with_env
from faultkit import finish, process_tree

TTL = ["--ttl", "10s", "--max-skew", "0"]
LATER = "100"  # the reaper's clock: far past the TTL, without waiting for it


def commit(agent, name: str) -> str:
    (agent.workdir / name).write_text(f"{agent.name}: {name}\n")
    agent.git("add", name)
    agent.git("commit", "-qm", f"{agent.name}: {name}")
    return agent.git("rev-parse", "HEAD").stdout.strip()


def test_a_paused_owner_is_reaped_and_fenced_when_it_resumes(make_world):
    world = make_world("http", "git")
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "1s")
    assert alice.claim("hook", "install").code == 0
    alice.git("checkout", "-q", "-b", "claim/640")
    commit(alice, "first.txt")

    run = alice.popen("claim", "run", "640", "--interval", "0.5s", "--", "sleep", "60",
                      start_new_session=True)
    try:
        zombie_scenario(world, alice, bob, carol, run)
    finally:
        if run.poll() is None:  # a failed test must not leave the frozen group behind
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


def stat(pid: int) -> list[str]:
    """A process's /proc/PID/stat after its name: state, parent, process group...; [] if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def states(pids: list[int]) -> list[str]:
    """Each live process's state letter (R, S, T for stopped, Z...)."""
    return [fields[0] for fields in map(stat, pids) if fields]


def command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def zombie_scenario(world, alice, bob, carol, run) -> None:
    deadline = time.monotonic() + 60
    while not any(line.startswith("heartbeat 640") for line in notes_log(world.repo, "640")):
        assert run.poll() is None, finish(run)
        assert time.monotonic() < deadline, "no heartbeat from git claim run"
        time.sleep(0.05)
    everything = process_tree(run.pid)
    # All but the watchdog's guardian, which stays out of the group (a SIGKILL
    # of the group must leave it alive) and does nothing while the watchdog lives.
    frozen = [pid for pid in everything if stat(pid)[2:3] == [str(run.pid)]]
    assert len(frozen) >= 4  # git, the tool, the watchdog, sleep
    assert "sleep" in map(command_name, frozen), [command_name(pid) for pid in everything]
    os.killpg(run.pid, signal.SIGSTOP)
    try:
        while not set(states(frozen)) <= {"T", "Z"}:  # stopped (or exited, e.g. a git push)
            assert time.monotonic() < deadline, states(frozen)
            time.sleep(0.01)
        reaped = carol.cmd("reap", *TTL, "--json",
                           env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET=LATER))
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
    assert set(states(everything)) <= {"Z"}, states(everything)  # the command was stopped too

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
