"""The agent loop: `git claim run`, worktrees, and the release that follows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import notes_log, remote_refs, ticket_state, with_env

FAST = ["--interval", "0.3s"]


def state_of(world, ticket):
    """free, held, done, blocked or unknown: the ticket as the remote shows it."""
    return ticket_state(world.repo, ticket).state


def test_run_releases_done_on_success_and_beats_meanwhile(sampled_world):
    world = sampled_world
    alice = world.agent("alice")
    run = alice.cmd("claim", "run", "640", *FAST, "--json", "--",
                    sys.executable, "-c", "import os,time; time.sleep(1.2);"
                    " print(os.environ['GIT_CLAIM_TICKET'])")
    assert run.code == 0, run
    assert run.stdout.splitlines()[0] == "640"
    document = __import__("json").loads(run.stdout.splitlines()[-1])
    assert document["released"] == "done" and document["beats"] >= 1
    assert state_of(world, "640") == "done"
    beats = [line for line in notes_log(world.repo, "640") if line.startswith("heartbeat")]
    assert len(beats) >= 1
    time.sleep(0.8)  # no heartbeat may follow the end of run
    assert [line for line in notes_log(world.repo, "640")
            if line.startswith("heartbeat")] == beats


@pytest.mark.parametrize("on_failure,expected", [(None, "blocked"), ("release", "free"),
                                                 ("keep", "held")])
def test_a_failing_command_and_on_failure(make_world, on_failure, expected):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    extra = ["--on-failure", on_failure] if on_failure else []
    run = alice.cmd("claim", "run", "641", *extra, "--", "sh", "-c", "exit 3")
    assert run.code == 3, run
    assert state_of(world, "641") == expected
    if expected == "blocked":
        assert ticket_state(world.repo, "641").reason == "exit status 3"


def test_nothing_eligible_runs_nothing(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("")
    marker = tmp_path / "ran"
    run = alice.cmd("claim", "run", "--next", "--from", str(backlog), "--", "touch", str(marker))
    assert run.code == 6 and "nothing eligible" in run.stderr  # EMPTY, not a refusal
    assert not marker.exists()


def test_a_lost_claim_stops_a_command_that_ignores_sigterm(make_world):
    world = make_world("git", "git")
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "0.3s")
    process = alice.popen("claim", "run", "642", "--interval", "1s", "--grace", "1s", "--",
                          "sh", "-c", "trap '' TERM; echo started; sleep 60")
    assert process.stdout.readline().strip() == "started"
    for _ in range(20):  # a beat may land between the reaper's read and write: try again
        reaped = carol.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--ticket", "642",
                           "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
        assert reaped.code == 0, reaped
        if reaped.json()["reaped"]:
            break
    else:
        raise AssertionError("the reaper never won against the beats")
    started = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 4, (out, err)
    assert "642 is no longer yours (reaped by carol" in err
    assert time.monotonic() - started < 30


def test_sigterm_to_run_is_forwarded_then_the_claim_is_released(make_world):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    tool = Path(sys.executable).parent / "git-claim"
    process = subprocess.Popen([str(tool), "run", "643", *FAST, "--", "sh", "-c",
                                "trap 'echo got-term; exit 7' TERM; echo started;"
                                " while :; do sleep 0.1; done"],
                               cwd=alice.workdir, env=alice.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert "got-term" in out
    assert process.returncode == 7, (out, err)
    assert state_of(world, "643") == "blocked"


def test_worktree_claim_release_keeps_unsaved_work(make_world):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    made = alice.claim("644", "--worktree", "--json")
    assert made.code == 0, made
    tree = Path(made.json()["worktree"])
    assert tree.is_dir() and made.json()["branch"] == "claim/644"
    assert tree.parent.name == f"{alice.workdir.name}.claims"
    again = alice.claim("644", "--worktree", "--json")
    assert again.code == 0 and again.json()["worktree"] == str(tree)
    (tree / "draft.txt").write_text("unsaved\n")
    done = alice.release("644", "--done")
    assert done.code == 0, done
    assert f"kept {tree}" in done.stdout and tree.is_dir()
    assert state_of(world, "644") == "done"
    dry = alice.claim("gc", "--dry-run")
    assert "would keep" in dry.stdout and tree.is_dir()
    (tree / "draft.txt").unlink()
    gc = alice.claim("gc")
    assert gc.code == 0 and f"removed {tree}" in gc.stdout
    assert not tree.exists()


AGENT_SCRIPT = """#!/bin/sh
set -e
echo "$GIT_CLAIM_TICKET by $GIT_CLAIM_AGENT" > "done-$GIT_CLAIM_TICKET.txt"
sleep "${AGENT_SLEEP:-0.2}"
git add "done-$GIT_CLAIM_TICKET.txt"
git commit -qm "work on $GIT_CLAIM_TICKET"
git push -q origin "HEAD:refs/heads/$GIT_CLAIM_BRANCH"
"""


def test_four_agent_loops_complete_ten_tickets_once(make_world, tmp_path):
    world = make_world("git", "libgit2")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"T{i}\n" for i in range(10)))
    script = tmp_path / "agent.sh"
    script.write_text(AGENT_SCRIPT)
    script.chmod(0o755)
    loops = []
    for index in range(4):
        agent = world.agent(f"loop{index}")
        env = with_env(agent, AGENT_SLEEP="3" if index == 0 else "0.2")
        loop = (f"while git claim run --next --from '{backlog}' --worktree --interval 0.5s"
                f" -- '{script}'; do :; done")
        loops.append(subprocess.Popen(["sh", "-c", loop], cwd=agent.workdir, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True))
    # loop0 works slowly: kill its whole session mid-ticket
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        for path in (world.root / "loop0.claims").glob("*/done-*.txt") \
                if (world.root / "loop0.claims").is_dir() else []:
            victim = path.parent.name
        time.sleep(0.05)
    assert victim is not None, "loop0 never started a ticket"
    os.killpg(loops[0].pid, signal.SIGKILL)
    loops[0].wait()
    reaper = world.agent("reaper")
    reaper.git("config", "claim.heartbeat", "0.5s")
    # the reaper runs (as from cron) until the dead agent's claim is freed
    while state_of(world, victim) == "held" and time.monotonic() < deadline + 60:
        reaper.cmd("reap", "--ttl", "2s", "--max-skew", "0")
        time.sleep(0.5)
    assert state_of(world, victim) != "held", "the reaper never freed the dead agent's ticket"
    outputs = []
    for loop in loops[1:]:
        out, err = loop.communicate(timeout=60)
        outputs.append(err)
        assert loop.returncode == 0, err
    # the loops may have run out of eligible tickets before the reap: the next loop takes it
    if state_of(world, victim) == "free":
        late = world.agent("late").cmd("claim", "run", "--next", "--until-empty", "--from",
                                       str(backlog), "--worktree", "--interval", "0.5s", "--",
                                       str(script))
        assert late.code == 0 and f"claimed {victim}" in late.stderr, late
        outputs.append(late.stderr)
    states = {f"T{i}": state_of(world, f"T{i}") for i in range(10)}
    assert states == {f"T{i}": "done" for i in range(10)}, (states, outputs)
    refs = remote_refs(world.repo)
    for i in range(10):
        log = subprocess.run(["git", "--git-dir", str(world.repo.path), "log", "--format=%s",
                              f"refs/heads/claim/T{i}", "^refs/heads/main"],
                             capture_output=True, text=True).stdout.split("\n")[:-1]
        assert log == [f"work on T{i}"], (i, log)
    assert f"refs/heads/claim/{victim}" in refs


def test_run_assumes_the_claim_lost_when_the_remote_stays_unreachable(tmp_path, make_world):
    """Beats fail, are retried with backoff, and past TTL minus a margin run stops itself."""
    from servers import start_server

    World = make_world.__globals__["World"]  # tests/conftest.py's, whatever else is named conftest
    server = start_server("git", tmp_path / "own-daemon")
    try:
        world = World("git", "libgit2", server, tmp_path / "world")
        alice = world.agent("alice")
        alice.git("config", "claim.ttl", "4s")
        alice.git("config", "claim.maxSkew", "0")
        process = alice.popen("claim", "run", "650", "--interval", "0.5s", "--grace", "1s",
                              "--", "sh", "-c", "echo started; sleep 60")
        assert process.stdout.readline().strip() == "started"
        server.stop()  # the remote goes away while the command works
        out, err = process.communicate(timeout=60)
    finally:
        server.stop()
    assert process.returncode == 4, (out, err)
    assert "heartbeat failed" in err and "retrying in" in err
    assert "assuming the claim is lost" in err


def test_on_lost_warn_lets_the_command_finish(make_world):
    world = make_world("git", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    carol.git("config", "claim.heartbeat", "0.3s")
    marker = world.root / "finished"
    process = alice.popen("claim", "run", "651", "--interval", "1s", "--on-lost", "warn", "--",
                          "sh", "-c", f"echo started; sleep 4; touch '{marker}'")
    assert process.stdout.readline().strip() == "started"
    for _ in range(20):
        reaped = carol.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--ticket", "651",
                           "--json", env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
        if reaped.json()["reaped"]:
            break
    out, err = process.communicate(timeout=60)
    assert process.returncode == 4, (out, err)
    assert marker.exists() and "--on-lost warn" in err
