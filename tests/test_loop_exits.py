"""The agent loop's exit statuses: nothing eligible, the drain, and kept worktrees.

`git claim run --next --until-empty` takes ticket after ticket until nothing
is eligible; a failing command is ended as --on-failure says and the drain
goes on. What the agents' commands did is judged from what they logged, not
from what run says about them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agents import ticket_state, with_env

FAST = ["--interval", "0.5s"]

# Logs "<agent> <ticket>" and fails (exit 3) on the tickets listed in FAIL.
AGENT_SCRIPT = """#!/bin/sh
echo "$GIT_CLAIM_AGENT $GIT_CLAIM_TICKET" >> "$WORK_LOG"
case " $FAIL " in *" $GIT_CLAIM_TICKET "*) exit 3;; esac
exit 0
"""


def agent_script(tmp_path: Path) -> Path:
    script = tmp_path / "agent.sh"
    script.write_text(AGENT_SCRIPT)
    script.chmod(0o755)
    return script


def logged(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_two_drains_work_through_a_backlog_where_some_commands_fail(make_world, tmp_path):
    world = make_world("git", "libgit2")
    tickets = [f"D{i}" for i in range(8)]
    failing = {"D1", "D4", "D6"}
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"{t}\n" for t in tickets))
    script, log = agent_script(tmp_path), tmp_path / "work.log"
    drains = []
    for name in ("alice", "bob"):
        agent = world.agent(name)
        env = with_env(agent, WORK_LOG=str(log), FAIL=" ".join(sorted(failing)))
        drains.append(agent.popen("claim", "run", "--next", "--until-empty", "--from",
                                  str(backlog), *FAST, "--json", "--", str(script), env=env))
    results = [(d.wait(timeout=300), *d.communicate()) for d in drains]
    for code, out, err in results:
        assert code == 0, (code, out, err)
    # every ticket was worked on exactly once, by one of the two
    worked = logged(log)
    assert sorted(t for _, t in worked) == sorted(tickets), worked
    for ticket in tickets:
        expected = "blocked" if ticket in failing else "done"
        assert ticket_state(world.repo, ticket).state == expected, ticket
    documents = [last_json(out) for _, out, _ in results]
    runs = [run for document in documents for run in document["runs"]]
    assert all(document["ok"] and document["drained"] and document["exit_code"] == 0
               for document in documents), documents
    assert sorted(run["ticket"] for run in runs) == sorted(tickets)
    by_ticket = {run["ticket"]: run for run in runs}
    for _, ticket in worked:
        run = by_ticket[ticket]
        assert run["status"] == (3 if ticket in failing else 0)
        assert run["released"] == ("blocked" if ticket in failing else "done")


def test_a_failing_command_with_release_is_not_run_again_by_the_drain(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("R1\nR2\n")
    script, log = agent_script(tmp_path), tmp_path / "work.log"
    env = with_env(alice, WORK_LOG=str(log), FAIL="R1")
    drained = alice.cmd("claim", "run", "--next", "--until-empty", "--from", str(backlog),
                        "--on-failure", "release", *FAST, "--", str(script), env=env)
    assert drained.code == 0, drained
    assert sorted(t for _, t in logged(log)) == ["R1", "R2"]
    assert ticket_state(world.repo, "R1").state == "free"
    assert "the backlog is drained (2 runs: 1 done, 1 free)" in drained.stderr, drained
    assert "2 already run by this drain" in drained.stderr, drained


def test_a_drain_that_lost_a_claim_does_not_look_clean(make_world, tmp_path):
    """Carol forces one of alice's claims away while its command runs: the drain goes on
    through the backlog, then exits 5 (INCOMPLETE) and names the lost ticket."""
    world = make_world("git", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("L1\nL2\nL3\n")
    log = tmp_path / "work.log"
    script = tmp_path / "agent.sh"
    script.write_text(f"""#!/bin/sh
echo "$GIT_CLAIM_AGENT $GIT_CLAIM_TICKET" >> "{log}"
if [ "$GIT_CLAIM_TICKET" = L2 ]; then
  cd "{carol.workdir}" && GIT_CLAIM_AGENT=carol git release L2 --force >/dev/null || exit 9
  sleep 2
fi
""")
    script.chmod(0o755)
    drained = alice.cmd("claim", "run", "--next", "--until-empty", "--from", str(backlog),
                        "--interval", "0.3s", "--json", "--", str(script))
    assert drained.code == 5, drained
    assert sorted(t for _, t in logged(log)) == ["L1", "L2", "L3"]
    document = last_json(drained.stdout)
    assert not document["ok"] and document["drained"] and document["exit_code"] == 5
    assert document["error"]["kind"] == "incomplete" and "L2" in document["error"]["message"]
    lost = {run["ticket"]: run for run in document["runs"]}["L2"]
    assert lost["lost"] or lost.get("release_error"), lost
    assert ticket_state(world.repo, "L1").state == "done"
    assert ticket_state(world.repo, "L3").state == "done"


def test_nothing_eligible_has_its_own_exit_status(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("E1\n")
    assert alice.claim("E1").code == 0
    marker = tmp_path / "ran"
    taken = alice.claim("--next", "--from", str(backlog), "--json")
    assert taken.code == 6, taken
    assert taken.json()["error"]["kind"] == "empty" and taken.json()["exit_code"] == 6
    # --no-resume: by default run --next would take E1 back, alice's own and unsupervised
    run = alice.cmd("claim", "run", "--next", "--no-resume", "--from", str(backlog), "--",
                    "touch", str(marker))
    assert run.code == 6 and "nothing eligible (1 claimed, done or blocked)" in run.stderr, run
    # a command that itself exits 6 is passed through: --until-empty tells them apart
    drained = alice.cmd("claim", "run", "--next", "--no-resume", "--until-empty", "--from",
                        str(backlog), "--", "touch", str(marker))
    assert drained.code == 0, drained
    assert "the backlog is drained (0 runs); nothing eligible" in drained.stderr
    assert not marker.exists()
    # a held claim is a refusal, not an empty backlog
    refused = world.agent("bob").claim("E1")
    assert refused.code == 1, refused
    usage = alice.cmd("claim", "run", "E1", "--until-empty", "--", "true")
    assert usage.code == 2 and "--until-empty goes with --next" in usage.stderr, usage


def test_a_failed_run_reports_the_worktree_it_keeps(make_world):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    failed = alice.cmd("claim", "run", "K1", "--worktree", "--json", "--", "sh", "-c", "exit 3")
    assert failed.code == 3, failed
    document = last_json(failed.stdout)
    tree = Path(document["worktree"])
    assert tree.is_dir() and document["kept_worktree"] == str(tree)
    assert f"kept worktree {tree} on claim/K1 (exit status 3, blocked" in failed.stderr, failed
    done = alice.cmd("claim", "run", "K2", "--worktree", "--json", "--", "true")
    assert done.code == 0, done
    document = last_json(done.stdout)
    assert document["kept_worktree"] is None and not Path(document["worktree"]).exists()
    assert "kept worktree" not in done.stderr
    gc = alice.claim("gc")
    assert gc.code == 0 and f"removed {tree}" in gc.stdout, gc


def test_the_operations_import_no_click():
    probe = ("import sys, git_claim.ops.claim, git_claim.ops.run, git_claim.ops.gc;"
             " print(sorted(m for m in sys.modules if m.split('.')[0] == 'click'))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                               check=True)
    assert completed.stdout.strip() == "[]", completed


def test_a_signal_ends_the_drain_after_the_current_command(make_world, tmp_path):
    """SIGTERM to a drain reaches the command; its claim is ended as its status says, and
    no further ticket is taken: the drain exits 143, never 0."""
    import signal

    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("S1\nS2\n")
    tool = Path(sys.executable).parent / "git-claim"  # signalled itself, not through git
    drain = subprocess.Popen([str(tool), "run", "--next", "--until-empty", "--from", str(backlog),
                              "--on-failure", "release", *FAST, "--", "sh", "-c",
                              "trap 'echo got-term; exit 7' TERM;"
                              " echo started $GIT_CLAIM_TICKET; while :; do sleep 0.1; done"],
                             cwd=alice.workdir, env=alice.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = drain.stdout.readline().split()
    assert first[:1] == ["started"], first
    drain.send_signal(signal.SIGTERM)
    out, err = drain.communicate(timeout=60)
    assert drain.returncode == 128 + signal.SIGTERM, (out, err)
    assert "got-term" in out and "started" not in out, (out, err)
    assert "interrupted after 1 run: 1 free" in err, err
    assert ticket_state(world.repo, first[1]).state == "free"
    other = "S2" if first[1] == "S1" else "S1"
    assert ticket_state(world.repo, other).state == "free"


def test_a_signal_while_the_drain_finds_nothing_left_is_not_a_clean_drain(make_world, tmp_path):
    """The drain looks at the backlog once more after its last ticket: a SIGINT that
    comes while it reads (a slow source, here a FIFO that answers late) ends it with 130,
    never 0, although nothing was eligible any more."""
    import os
    import signal

    from agents import wait_until

    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog"
    os.mkfifo(backlog)
    script, log = agent_script(tmp_path), tmp_path / "work.log"
    tool = Path(sys.executable).parent / "git-claim"  # signalled itself, not through git
    drain = subprocess.Popen([str(tool), "run", "--next", "--until-empty", "--from", str(backlog),
                              *FAST, "--", str(script)], cwd=alice.workdir,
                             env=with_env(alice, WORK_LOG=str(log)), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    backlog.write_text("F1\n")  # the first read: one ticket
    wait_until(lambda: logged(log) == [("alice", "F1")], 60, "F1 never ran")
    wait_until(lambda: ticket_state(world.repo, "F1").state == "done", 60, "F1 never ended")
    # the drain now waits on the backlog again: a FIFO's open blocks until a writer comes
    def waiting_on_the_backlog() -> bool:
        with open(f"/proc/{drain.pid}/wchan") as wchan:
            return wchan.read() in ("wait_for_partner", "fifo_open")  # not another pipe

    wait_until(waiting_on_the_backlog, 60, "the drain never read the backlog again")
    drain.send_signal(signal.SIGINT)
    # lets the read go on (F1 only, done by now); ENXIO here: the drain stopped reading
    writer = os.open(backlog, os.O_WRONLY | os.O_NONBLOCK)
    os.write(writer, b"F1\n")
    os.close(writer)
    out, err = drain.communicate(timeout=60)
    assert drain.returncode == 128 + signal.SIGINT, (out, err)
    assert "drained" not in err, err
    assert logged(log) == [("alice", "F1")]
