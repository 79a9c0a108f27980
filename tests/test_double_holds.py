"""No double holds in the set-ups agents really use.

Each test models one way teams run agents, and judges from what the agents'
own commands logged (when each really started and stopped working), never
from what the tool believes:
- several agents in one checkout, with or without names of their own;
- a claim deleted or replaced on the remote with plain git;
- `git claim run` reusing an old claim of ours;
- tags mode (`refs/tags/claim/`) and a stale clone's `git push --tags [--force]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import PausePoint, notes_log, remote_refs, remote_refs_bytes, tag_message, ticket_state

WORKER = """\
import json, os, sys, time
log, go = sys.argv[1], sys.argv[2]
def note(what):
    with open(log, "a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "what": what, "at": time.time(),
                                 "ticket": os.environ.get("GIT_CLAIM_TICKET")}) + "\\n")
note("start")
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
note("stop")
"""


def worker(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A command that logs its start, works until told to stop, and logs its end."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    log, go = tmp_path / "work.log", tmp_path / "go"
    return [sys.executable, str(script), str(log), str(go)], log, go


def work_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def overlaps(entries: list[dict]) -> list[tuple[str, int, int]]:
    """(ticket, pid, pid) for every two commands that worked one ticket at the same time."""
    spans: dict[int, list[float]] = {}
    tickets: dict[int, str] = {}
    for entry in entries:
        tickets[entry["pid"]] = entry["ticket"]
        spans.setdefault(entry["pid"], [entry["at"], float("inf")])
        if entry["what"] == "stop":
            spans[entry["pid"]][1] = entry["at"]
    found = []
    pids = sorted(spans)
    for i, first in enumerate(pids):
        for second in pids[i + 1:]:
            if tickets[first] == tickets[second] and \
                    spans[first][0] < spans[second][1] and spans[second][0] < spans[first][1]:
                found.append((tickets[first], first, second))
    return found


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s"
        time.sleep(0.05)


def started(log: Path, count: int) -> bool:
    return sum(1 for e in work_log(log) if e["what"] == "start") >= count


# 1. Several agents in one checkout.

@pytest.mark.parametrize("own_names", [True, False], ids=["own-names", "one-name"])
def test_processes_in_one_clone_are_separate_contenders(make_world, own_names, tmp_path):
    world = make_world("git", "libgit2")
    clone = world.agent("shared")
    processes = []
    for index in range(20):
        env = dict(clone.env, GIT_CLAIM_AGENT=f"worker-{index}" if own_names else "shared")
        processes.append(clone.popen("claim", "S1", "--json", env=env))
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    won = [json.loads(out) for code, out, _ in outcomes if code == 0]
    fresh = [doc for doc in won if not doc["already_ours"]]
    assert len(fresh) == 1, outcomes
    tag = remote_refs(world.repo)["refs/claims/S1"]
    assert fresh[0]["tag"] == tag
    # With one name, a process that started after the winner had finished may find
    # the claim unsupervised and reuse it; it never pushes a claim of its own.
    assert all(doc["tag"] == tag for doc in won)
    if own_names:
        assert len(won) == 1


@pytest.mark.parametrize("second_name", ["alice", "bob"])
def test_a_pending_claim_of_a_live_process_is_never_adopted(make_world, second_name):
    """Process 1 wrote its pending record and is about to push; process 2 starts."""
    world = make_world("git", "libgit2")
    clone = world.agent("alice")
    pause = PausePoint(world.root / "pauses", "claim:before-push")
    first = clone.popen("claim", "S2", "--json", env=pause.env(clone.env))
    pause.wait_reached(first)
    second = clone.cmd("claim", "S2", "--json", env=dict(clone.env, GIT_CLAIM_AGENT=second_name))
    pause.go()
    code = first.wait(timeout=60)
    out, err = first.communicate()
    assert second.code == 0 and not second.json()["already_ours"], second
    assert code == 1, (out, err)  # it lost: its own tag was refused
    assert remote_refs(world.repo)["refs/claims/S2"] == second.json()["tag"]
    body = tag_message(world.repo, second.json()["tag"])
    assert f"Claim-Agent: {second_name}\n" in body


def test_runs_in_one_clone_under_one_name_never_share_a_ticket(make_world, tmp_path):
    """The commonest laptop set-up: `run` loops side by side in one clone, default names."""
    world = make_world("git", "libgit2")
    clone = world.agent("laptop")
    env = {k: v for k, v in clone.env.items() if k != "GIT_CLAIM_AGENT"}  # the default name
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"T{n}\n" for n in range(1, 7)))
    command, log, go = worker(tmp_path)
    runs = [clone.popen("claim", "run", "--next", "--from", str(backlog), "--worktree",
                        "--interval", "1s", "--", *command, env=env) for _ in range(3)]
    wait_until(lambda: started(log, 3) or any(r.poll() is not None for r in runs),
               what="three commands started")
    go.write_text("")
    results = [(r.wait(timeout=120), *r.communicate()) for r in runs]
    assert all(code == 0 for code, _, _ in results), results
    entries = work_log(log)
    assert overlaps(entries) == []
    tickets = [e["ticket"] for e in entries if e["what"] == "start"]
    assert len(tickets) == 3 and len(set(tickets)) == 3, entries
    for ticket in tickets:
        assert ticket_state(world.repo, ticket).state == "done"


def test_a_supervised_claim_is_not_taken_over_by_another_process(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    command, log, go = worker(tmp_path)
    supervisor = alice.popen("claim", "run", "760", "--interval", "1s", "--", *command)
    wait_until(lambda: started(log, 1), what="the command started")
    again = alice.cmd("claim", "run", "760", "--", *command)
    plain = alice.claim("760")
    go.write_text("")
    assert supervisor.wait(timeout=60) == 0, supervisor.communicate()
    assert again.code == 1 and "another process" in again.stderr, again
    assert plain.code == 1 and "another process" in plain.stderr, plain
    assert [e["what"] for e in work_log(log)] == ["start", "stop"]


def test_next_never_takes_a_ticket_of_ours(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("N1\nN2\n")
    assert alice.claim("N1").code == 0
    alice.git("config", "claim.maxPerAgent", "0")  # the limit is another rule (test_picking)
    picked = alice.claim("--next", "--from", str(backlog), "--json")
    assert picked.code == 0, picked
    assert picked.json()["ticket"] == "N2"


# 2. A claim deleted or replaced with plain git.

def test_a_heartbeat_after_the_claim_was_replaced_is_refused(sampled_world):
    world = sampled_world  # each scheme once, and each transport (libgit2, git CLI, path) too
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("710").code == 0
    assert alice.claim("heartbeat", "710").code == 0
    # someone deletes the claim with plain git, and bob claims the ticket anew
    bob.git("push", "-q", "origin", ":refs/claims/710")
    assert bob.claim("710").code == 0
    taken = remote_refs(world.repo)
    for _ in range(2):
        beat = alice.claim("heartbeat", "710")
        assert beat.code == 1, beat
        assert "no longer yours" in beat.stderr
    assert alice.claim("verify", "710").code == 1
    released = alice.release("710", "--done")
    assert released.code == 1, released
    assert remote_refs(world.repo) == taken  # neither beat nor release wrote anything


def test_a_deleted_claim_stops_the_heartbeat(make_world):
    world = make_world("git", "git")
    alice = world.agent("alice")
    assert alice.claim("711").code == 0
    assert alice.claim("heartbeat", "711").code == 0
    alice.git("push", "-q", "origin", ":refs/claims/711")
    beat = alice.claim("heartbeat", "711")
    assert beat.code == 1 and "gone from the remote" in beat.stderr, beat
    assert "refs/claims/711" not in remote_refs(world.repo)


def test_run_stops_within_one_interval_when_its_claim_is_replaced(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    command, log, go = worker(tmp_path)
    run = alice.popen("claim", "run", "712", "--interval", "1s", "--grace", "2s", "--",
                      *command)
    wait_until(lambda: started(log, 1), what="alice's command started")
    wait_until(lambda: any(line.startswith("heartbeat 712")
                           for line in notes_log(world.repo, "712")),
               what="alice's first beat")
    bob.git("push", "-q", "origin", ":refs/claims/712")
    assert bob.claim("712").code == 0
    replaced_at = time.time()
    code = run.wait(timeout=60)
    _, stderr = run.communicate()
    assert code == 4, stderr
    assert "no longer yours" in stderr
    stopped = [e for e in work_log(log) if e["what"] == "stop"]
    # SIGTERM ends the worker without its "stop" line: it is gone when run exits
    assert not stopped or stopped[0]["at"] - replaced_at < 1 + 2 + 2
    assert time.time() - replaced_at < 1 + 2 + 5


# 5. run reusing an old claim renews it before the command starts.

def test_run_beats_before_reusing_an_old_claim(make_world, tmp_path):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    assert alice.claim("760").code == 0
    assert alice.claim("heartbeat", "760").code == 0
    before = notes_log(world.repo, "760")
    seen = tmp_path / "seen.txt"
    script = (f"import subprocess; open({str(seen)!r}, 'w').write(subprocess.run(['git',"
              f" '--git-dir', {str(world.repo.path)!r}, 'log', '--format=%s',"
              " 'refs/notes/claims/760'], capture_output=True, text=True).stdout)")
    run = alice.cmd("claim", "run", "760", "--interval", "5m", "--", sys.executable, "-c",
                    script)
    assert run.code == 0, run
    at_start = seen.read_text().splitlines()
    assert len(at_start) == len(before) + 1 and at_start[0].startswith("heartbeat 760"), \
        (before, at_start)


# 6. Tags mode: a stale clone's `git push --tags` neither resurrects nor steals.

TAGS = "refs/tags/claim/"


def tags_mode(*agents) -> None:
    for agent in agents:
        agent.git("config", "claim.refPrefix", "refs/tags/claim/")


def test_push_tags_from_a_stale_clone_does_not_resurrect_a_claim(make_world):
    """The stale clone has alice's claim tag from before it ended. Claim refs are never
    deleted, so its push finds nothing to put back; once the superseded claim was
    compacted away, the tag it puts back is history: only the newest claim counts."""
    world = make_world("git", "libgit2")
    alice, bob, stale = world.agent("alice"), world.agent("bob"), world.agent("stale")
    tags_mode(alice, bob, stale)
    assert alice.claim("731").code == 0
    first = ticket_state(world.repo, "731", TAGS).tag
    stale.git("fetch", "-q", "origin", "refs/tags/*:refs/tags/*")
    assert alice.release("731", "--done").code == 0
    assert alice.claim("reopen", "731").code == 0
    stale.git("push", "-q", "origin", "--tags")  # the old claim tag, as it was
    on_remote = ticket_state(world.repo, "731", TAGS)
    assert on_remote.state == "free" and on_remote.claims == {1: first}, on_remote
    rows = {row["ticket"]: row for row in bob.claim("list", "--json").json()}
    assert "731" not in rows, rows  # neither held nor done again
    taken = bob.claim("731", "--json")
    assert taken.code == 0, taken
    assert alice.claim("731").code == 1
    # the superseded claim is compacted away, and the stale clone puts it back
    bob.git("push", "-q", "origin", ":refs/tags/claim/731")
    assert ticket_state(world.repo, "731", TAGS).claims == {2: taken.json()["tag"]}
    stale.git("push", "-q", "origin", "--tags")
    on_remote = ticket_state(world.repo, "731", TAGS)
    assert on_remote.claims == {1: first, 2: taken.json()["tag"]}, on_remote
    assert on_remote.state == "held" and on_remote.in_force == taken.json()["tag"], on_remote
    assert bob.claim("heartbeat", "731").code == 0
    assert alice.claim("731").code == 1
    rows = {row["ticket"]: row for row in alice.claim("list", "--json").json()}
    assert rows["731"]["state"] == "live" and rows["731"]["agent"] == "bob", rows


def test_push_tags_force_from_a_stale_clone_does_not_steal_a_claim(make_world):
    """alice's old claim tag cannot go over bob's: bob's claim is a ref of its own
    (732@2), which the stale clone never had, even with --force."""
    world = make_world("git", "libgit2")
    alice, bob, stale = world.agent("alice"), world.agent("bob"), world.agent("stale")
    tags_mode(alice, bob, stale)
    assert alice.claim("732").code == 0
    stale.git("fetch", "-q", "origin", "refs/tags/*:refs/tags/*")
    assert alice.release("732").code == 0
    taken = bob.claim("732", "--json")
    assert taken.code == 0, taken
    assert bob.claim("heartbeat", "732").code == 0
    before = remote_refs_bytes(world.repo)
    stale.git("push", "-q", "--force", "origin", "--tags")  # alice's old tag
    assert remote_refs_bytes(world.repo) == before
    on_remote = ticket_state(world.repo, "732", TAGS)
    assert on_remote.in_force == taken.json()["tag"] and on_remote.state == "held", on_remote
    assert on_remote.ref == "refs/tags/claim/732@2"
    again = alice.claim("732")
    assert again.code == 1 and "held by bob" in again.stderr, again
    assert bob.claim("heartbeat", "732").code == 0
    reap = alice.cmd("reap", "--json")
    assert not reap.json()["reaped"] and [e["ticket"] for e in reap.json()["live"]] == ["732"], \
        reap


@pytest.mark.parametrize("guarded", [False, True], ids=["unprotected", "guarded"])
def test_a_mirror_push_from_a_stale_clone_never_makes_a_double_hold(make_world, tmp_path,
                                                                    guarded):
    """Tags mode: a `git push --mirror` from a clone made while alice held the ticket.

    It deletes bob's newer claim and rewinds the notes, so alice's ended claim reads
    as held again. The guard refuses that push whole; an unprotected host takes it,
    and then the tool must notice: bob's next beat says the claim is no longer his,
    alice does not take her ended claim up again, and the reaper frees the ticket.
    """
    world = make_world("git", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    tags_mode(alice, bob)
    if guarded:
        assert bob.claim("guard", "install", str(world.repo.path)).code == 0
    assert alice.claim("735").code == 0
    assert alice.claim("heartbeat", "735").code == 0
    stale = tmp_path / "stale.git"
    subprocess.run(["git", "clone", "-q", "--mirror", world.repo.url, str(stale)], check=True,
                   capture_output=True, env=world.env)
    assert alice.release("735").code == 0
    taken = bob.claim("735", "--json")
    assert taken.code == 0, taken
    assert bob.claim("heartbeat", "735").code == 0
    before = remote_refs_bytes(world.repo)
    pushed = subprocess.run(["git", "--git-dir", str(stale), "push", "--mirror", world.repo.url],
                            capture_output=True, text=True, env=world.env)
    if guarded:
        assert pushed.returncode != 0 and "git-claim guard: refused" in pushed.stderr, pushed
        assert remote_refs_bytes(world.repo) == before
        assert ticket_state(world.repo, "735", TAGS).in_force == taken.json()["tag"]
        assert bob.claim("heartbeat", "735").code == 0
        assert alice.claim("735").code == 1
        return
    assert pushed.returncode == 0, pushed
    resurrected = ticket_state(world.repo, "735", TAGS)
    assert resurrected.claims == {1: resurrected.tag} and resurrected.state == "held" \
        and resurrected.agent == "alice", \
        resurrected  # what an unprotected host let happen
    beat = bob.claim("heartbeat", "735")
    assert beat.code == 1 and "no longer yours" in beat.stderr, beat
    for attempt in (alice.claim("735"), alice.claim("heartbeat", "735"), bob.claim("735")):
        assert attempt.code == 1, attempt
    reaped = bob.cmd("reap", "--ttl", "1s", "--force", "--max-skew", "0", "--json",
                     env=dict(bob.env, GIT_CLAIM_CLOCK_OFFSET="120"))
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["735"], reaped
    assert ticket_state(world.repo, "735", TAGS).state == "free"
    again = bob.claim("735", "--json")
    assert again.code == 0, again
    assert ticket_state(world.repo, "735", TAGS).in_force == again.json()["tag"]


def test_a_reopening_is_recorded_and_frees_the_ticket_for_others(make_world):
    """A reopening is one note: the done claim stays as history, the next claim is epoch 2."""
    world = make_world("git", "git")
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.release("733", "--done").code == 1  # not claimed
    assert alice.claim("733").code == 0
    assert alice.release("733", "--done").code == 0
    done = ticket_state(world.repo, "733")
    assert done.state == "done", done
    assert alice.claim("reopen", "733").code == 0
    assert notes_log(world.repo, "733")[0].startswith("reopened 733")
    reopened = ticket_state(world.repo, "733")
    assert reopened.state == "free" and reopened.event == "reopened", reopened
    assert reopened.claims == done.claims  # no ref written or deleted: just the note
    taken = bob.claim("733", "--json")
    assert taken.code == 0, taken
    assert ticket_state(world.repo, "733").in_force == taken.json()["tag"]
    assert ticket_state(world.repo, "733").ref == "refs/claims/733@2"


def test_no_beat_lands_once_the_claim_is_gone(make_world):
    """The guard is checked in the same push: a beat never writes after a deletion."""
    world = make_world("http", "libgit2")
    alice = world.agent("alice")
    assert alice.claim("714").code == 0
    assert alice.claim("heartbeat", "714").code == 0
    beats = notes_log(world.repo, "714")
    subprocess.run(["git", "--git-dir", str(world.repo.path), "update-ref", "-d",
                    "refs/claims/714"], check=True)
    assert alice.claim("heartbeat", "714").code == 1
    assert notes_log(world.repo, "714") == beats


def test_a_claim_supervised_from_its_worktree_is_not_taken_over_there(make_world, tmp_path):
    """An agent's command inside run's worktree (with run's agent name) cannot reuse the claim."""
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    command, log, go = worker(tmp_path)
    supervisor = alice.popen("claim", "run", "761", "--worktree", "--interval", "1s", "--",
                             *command)
    wait_until(lambda: started(log, 1), what="the command started")
    tree = Path(alice.workdir.parent / f"{alice.workdir.name}.claims" / "761")
    assert tree.is_dir()
    inside = subprocess.run(["git", "claim", "run", "761", "--", "true"], cwd=tree,
                            env=alice.env, capture_output=True, text=True, timeout=60)
    go.write_text("")
    assert supervisor.wait(timeout=60) == 0, supervisor.communicate()
    assert inside.returncode == 1 and "another process" in inside.stderr, inside


def test_another_process_of_the_checkout_cannot_end_a_supervised_claim(make_world, tmp_path):
    """Another agent's record proves nothing, and a supervised claim is ended by its run."""
    world = make_world("git", "libgit2")
    x = world.agent("x")
    command, log, go = worker(tmp_path)
    supervisor = x.popen("claim", "run", "7", "--interval", "1s", "--", *command)
    wait_until(lambda: started(log, 1), what="x's command started")
    y_env = dict(x.env, GIT_CLAIM_AGENT="y")
    assert x.cmd("claim", "verify", "7", env=y_env).code == 1
    assert x.cmd("release", "7", "--done", env=y_env).code == 1
    same_name = x.release("7", "--done")  # another process under x's own name
    assert same_name.code == 1 and "another process" in same_name.stderr, same_name
    assert x.claim("verify", "7").code == 0
    go.write_text("")
    assert supervisor.wait(timeout=60) == 0, supervisor.communicate()
    on_remote = ticket_state(world.repo, "7")
    assert on_remote.state == "done" and on_remote.agent == "x", on_remote
    assert on_remote.epoch == 1  # nobody else's claim came in between


def test_run_never_reports_success_for_a_release_that_did_not_happen(make_world, tmp_path):
    """The claim is deleted with plain git while the command works, and the command ends
    before its next beat: run cannot release it, and says so with exit 4."""
    world = make_world("git", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    command, log, go = worker(tmp_path)
    run = alice.popen("claim", "run", "715", "--interval", "5m", "--json", "--", *command)
    wait_until(lambda: started(log, 1), what="the command started")
    bob.git("push", "-q", "origin", ":refs/claims/715")
    go.write_text("")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4, (out, err)
    document = json.loads(out.splitlines()[-1])
    assert document["ok"] is False and document["released"] is None, document
    assert "could not release 715" in err


def test_a_retried_claim_never_brings_back_an_ended_one(make_world):
    """A claim whose process died between its push and the answer is retried with the same
    tag; if that tag landed and was reaped since, and the ticket moved on, the retry must
    make a new claim, not push the reaped one back (found by the soak)."""
    world = make_world("git", "libgit2")
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    pause = PausePoint(world.root / "pauses", "claim:after-push")
    process = alice.popen("claim", "640", env=pause.env(alice.env))
    pause.wait_reached(process)
    pause.kill(process)
    landed = remote_refs(world.repo)["refs/claims/640"]
    reaped = carol.cmd("reap", "--ttl", "1s", "--force", "--max-skew", "0", "--json",
                       env=dict(carol.env, GIT_CLAIM_CLOCK_OFFSET="120"))
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["640"], reaped
    assert bob.claim("640").code == 0 and bob.release("640").code == 0  # the ticket moves on
    retry = alice.claim("640", "--json")
    assert retry.code == 0, retry
    assert retry.json()["tag"] != landed
    on_remote = ticket_state(world.repo, "640")
    assert on_remote.state == "held" and on_remote.in_force == retry.json()["tag"], on_remote
    assert on_remote.ref == "refs/claims/640@3" and on_remote.claims[1] == landed, on_remote
    assert alice.claim("heartbeat", "640").code == 0
    shown = subprocess.run(["git", "--git-dir", str(world.repo.path), "notes", "--ref",
                            "refs/notes/claims/640", "show", landed],
                           capture_output=True, text=True)
    assert "Claim-Event: reaped" in shown.stdout, shown  # its history is intact


def test_an_interrupt_while_claiming_never_starts_the_command(make_world, tmp_path):
    """SIGINT arriving while libgit2 pushes the claim (inside its callbacks, where a
    KeyboardInterrupt would be swallowed): the command never runs, the ticket is freed."""
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    entered, go = tmp_path / "hook-entered", tmp_path / "hook-go"
    hook = world.repo.path / "hooks" / "pre-receive"  # holds the push until told to go on
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch '{entered}'\n"
                    f"while [ ! -e '{go}' ]; do sleep 0.01; done\n")
    hook.chmod(0o755)
    ran = tmp_path / "ran"
    tool = Path(sys.executable).parent / "git-claim"
    run = subprocess.Popen([str(tool), "run", "716", "--", "touch", str(ran)], cwd=alice.workdir,
                           env=alice.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(entered.exists, what="the claim push reached the server")
    os.kill(run.pid, 2)  # while the push is held at the server
    go.write_text("")
    out, err = run.communicate(timeout=60)
    hook.unlink()
    assert run.returncode == 130, (out, err)
    assert not ran.exists()
    assert ticket_state(world.repo, "716").state == "free", err
    assert "interrupted before the command started" in err


def _paused_run(world, pause: PausePoint, ticket: str, ran: Path) -> subprocess.Popen[str]:
    """`git-claim run TICKET -- touch RAN`, leading its own session, held at `pause`."""
    alice = world.agent("alice")
    tool = Path(sys.executable).parent / "git-claim"  # signalled itself, not through git
    run = subprocess.Popen([str(tool), "run", ticket, "--", "touch", str(ran)],
                           cwd=alice.workdir, env=pause.env(alice.env), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    pause.wait_reached(run)
    return run


def _watchdogs(session: int) -> list[int]:
    """The watchdog processes (guardian and watchdog) of the run leading `session`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] not in ("Z", "X") \
                and b"watchdog" in command:
            found.append(int(entry))
    return found


def _waits_on_a_pipe(pid: int) -> bool:
    """Blocked reading a pipe, with no signal pending: a handler that ran is done."""
    with open(f"/proc/{pid}/wchan") as handle:
        wchan = handle.read()
    with open(f"/proc/{pid}/status") as handle:
        pending = [line.split()[1] for line in handle if line.startswith(("SigPnd", "ShdPnd"))]
    return wchan in ("pipe_read", "anon_pipe_read") and all(int(p, 16) == 0 for p in pending)


@pytest.mark.parametrize("signum,group,moment", [
    (2, False, "paused"), (15, False, "paused"), (1, False, "paused"), (2, True, "paused"),
    (15, False, "cancelled"), (1, False, "cancelled"), (15, False, "after-start-order"),
    (2, True, "after-start-order"),
], ids=["INT", "TERM", "HUP", "INT-group", "TERM-cancelled", "HUP-cancelled",
        "TERM-after-start-order", "INT-group-after-start-order"])
def test_a_signal_just_before_the_start_never_starts_the_command(make_world, tmp_path,
                                                                 signum, group, moment):
    """The last moments before the start: the claim won, the lease taken, the watchdog
    waiting for its order. A signal to run (or to its whole group, as Ctrl-C) then means
    the command never runs; the ticket is given back, not blocked. Also when the
    watchdog acted on it before run gave the start order (`cancelled`: the order then
    finds the watchdog gone), and when run had given the order already but the
    watchdog, slow to start on a loaded machine, reads the signal with it
    (`after-start-order`: here it is stopped meanwhile)."""
    world = make_world("git", "libgit2")
    pause = PausePoint(world.root / "pauses", "run:before-start")
    ran = tmp_path / "ran"
    run = _paused_run(world, pause, "718", ran)
    # the guardian and the watchdog, once both exec'd (a forked child names its parent)
    wait_until(lambda: len(_watchdogs(run.pid)) >= 2, what="a watchdog waits for the order")
    watchdogs = _watchdogs(run.pid)

    def signal_run() -> None:
        if group:
            os.killpg(run.pid, signum)
        else:
            os.kill(run.pid, signum)

    if moment == "after-start-order":
        for pid in watchdogs:
            os.kill(pid, 19)  # SIGSTOP: a watchdog that has not read its orders yet
        pause.go()
        wait_until(lambda: _waits_on_a_pipe(run.pid), what="run gave the start order")
        signal_run()
        wait_until(lambda: _waits_on_a_pipe(run.pid), what="run passed the signal on")
        for pid in watchdogs:
            os.kill(pid, 18)  # SIGCONT
    else:
        signal_run()
        if moment == "cancelled":
            wait_until(lambda: not _watchdogs(run.pid), what="the watchdog ended")
        pause.go()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signum, (out, err)
    assert not ran.exists(), err
    assert ticket_state(world.repo, "718").state == "free", err
    assert "interrupted before the command started" in err


@pytest.mark.parametrize("group", [True, False], ids=["group", "run-alone"])
def test_a_signal_while_the_watchdog_forks_never_starts_the_command(make_world, tmp_path, group):
    """The watchdog has run's start order and is about to fork the command when Ctrl-C
    reaches the group (or a signal reaches run alone, which passes it on): the command,
    not there yet to get it, is never started."""
    world = make_world("git", "libgit2")
    pause = PausePoint(world.root / "pauses", "watchdog:before-spawn")
    ran = tmp_path / "ran"
    run = _paused_run(world, pause, "720", ran)
    if group:
        os.killpg(run.pid, 2)
    else:
        os.kill(run.pid, 2)
    wait_until(lambda: _waits_on_a_pipe(run.pid), what="run passed the signal on")
    pause.go()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, (out, err)
    assert not ran.exists(), err
    assert ticket_state(world.repo, "720").state == "free", err
    assert "interrupted before the command started" in err


def test_a_watchdog_frozen_past_the_lease_as_it_forks_never_starts_the_command(
        make_world, tmp_path):
    """The watchdog looked at the lease and was frozen (SIGSTOP, a crawling machine) a
    fork away from the start until the lease ran out (found by the soak): the command's
    process looks at the lease last, before its exec, and never runs it."""
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    for key, value in (("ttl", "6s"), ("maxSkew", "1s"), ("heartbeat", "1s")):
        alice.git("config", f"claim.{key}", value)
    pause = PausePoint(world.root / "pauses", "watchdog:before-spawn")
    ran = tmp_path / "ran"
    tool = Path(sys.executable).parent / "git-claim"
    run = subprocess.Popen([str(tool), "run", "721", "--grace", "1s", "--", "touch", str(ran)],
                           cwd=alice.workdir, env=pause.env(alice.env), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    pause.wait_reached(run)
    time.sleep(6)  # the lease (TTL less a margin and the grace) runs out meanwhile
    pause.go()
    out, err = run.communicate(timeout=60)
    assert not ran.exists(), err
    assert run.returncode == 4 and "the command was not started" in err, (out, err)


def test_a_run_killed_while_its_watchdog_forks_never_has_its_command_started(
        make_world, tmp_path):
    """run dies by SIGKILL (alone, not its group) as its watchdog is about to fork the
    command: the watchdog finds run's orders ended and starts nothing (found by review:
    the command started for a dead run and was stopped 3 ms later)."""
    world = make_world("git", "libgit2")
    pause = PausePoint(world.root / "pauses", "watchdog:before-spawn")
    ran = tmp_path / "ran"
    run = _paused_run(world, pause, "722", ran)
    os.kill(run.pid, 9)
    run.wait(timeout=30)
    pause.go()
    wait_until(lambda: not _watchdogs(run.pid), what="the watchdog and its guardian ended")
    assert not ran.exists()
    assert ticket_state(world.repo, "722").state == "held"  # left for a reaper or a resume


def test_a_signal_ignored_when_run_starts_stays_ignored(make_world, tmp_path):
    """As nohup (or `cmd &` in a script) asks: run started with SIGINT and SIGHUP
    ignored goes on through them, and so does its command, which ends the claim."""
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    began, ran = tmp_path / "began", tmp_path / "ran"
    tool = Path(sys.executable).parent / "git-claim"
    command = f"touch '{began}'; sleep 1; touch '{ran}'"
    run = subprocess.Popen(["sh", "-c", f"trap '' INT HUP; exec '{tool}' run 719 -- sh -c \"$0\"",
                            command], cwd=alice.workdir, env=alice.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(began.exists, what="the command started")
    os.kill(run.pid, 2)
    os.killpg(run.pid, 1)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, (out, err)
    assert ran.exists()
    assert ticket_state(world.repo, "719").state == "done", err


def test_run_releases_only_the_claim_it_supervised(make_world, tmp_path):
    """run's claim is reaped while it releases, and the same name claims the ticket anew
    in the same clone: run must not release that new claim as done (found by review)."""
    world = make_world("path", "libgit2")
    alice, carol = world.agent("alice"), world.agent("carol")
    pause = PausePoint(world.root / "pauses", "release:before-decide")
    run = alice.popen("claim", "run", "717", "--", "true", env=pause.env(alice.env))
    pause.wait_reached(run)
    reaped = carol.cmd("reap", "--ttl", "1s", "--force", "--max-skew", "0", "--json",
                       env=dict(carol.env, GIT_CLAIM_CLOCK_OFFSET="120"))
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["717"], reaped
    again = alice.claim("717", "--json")
    assert again.code == 0, again
    pause.go()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4, (out, err)
    on_remote = ticket_state(world.repo, "717")
    assert on_remote.in_force == again.json()["tag"] and on_remote.state == "held", on_remote


def test_an_outcome_cleared_by_force_does_not_come_back_as_done(make_world):
    """Tags mode: a stale clone has a done outcome (the claim tag and the notes recording it)
    from before the ticket was reopened and moved on, and pushes it back (found by the
    soak). A plain push cannot rewind the notes; a forced one on an unprotected host can,
    but the outcome is on a claim that is no longer the newest: never done again."""
    world = make_world("git", "libgit2")
    alice, bob, stale = world.agent("alice"), world.agent("bob"), world.agent("stale")
    tags_mode(alice, bob, stale)
    every = ["refs/tags/*:refs/tags/*", "refs/notes/*:refs/notes/*"]
    assert alice.claim("734").code == 0
    assert alice.release("734", "--done").code == 0
    stale.git("fetch", "-q", "origin", *every)  # has the done outcome
    assert alice.claim("reopen", "734").code == 0
    assert bob.claim("734").code == 0 and bob.release("734").code == 0  # the ticket moves on
    moved_on = remote_refs_bytes(world.repo)
    stale.git("push", "-q", "origin", "--tags")
    assert stale.git("push", "origin", *every, check=False).code != 0  # not a fast-forward
    assert remote_refs_bytes(world.repo) == moved_on
    assert ticket_state(world.repo, "734", TAGS).state == "free"
    assert "734" not in {row["ticket"] for row in bob.claim("list", "--json").json()}
    stale.git("push", "-q", "--force", "origin", *every)  # the old notes come back
    forced = ticket_state(world.repo, "734", TAGS)
    assert forced.epoch == 2 and forced.state != "done", forced
    rows = {row["ticket"]: row for row in bob.claim("list", "--json").json()}
    assert rows.get("734", {}).get("state") != "done", rows
    assert bob.release("734", "--force").code == 0  # a human clears what came back
    assert bob.claim("734").code == 0
    stale.git("push", "-q", "--force", "origin", *every)  # and it is pushed again
    again = ticket_state(world.repo, "734", TAGS)
    assert again.epoch == 3 and again.state == "held" and again.agent == "bob", again
    rows = {row["ticket"]: row for row in bob.claim("list", "--json").json()}
    assert rows["734"]["state"] == "live", rows
    assert bob.claim("heartbeat", "734").code == 0


def test_run_refuses_an_interval_no_lease_can_cover(make_world):
    """A lease no beat can renew would stop the command, or outlive the TTL: exit 2, unclaimed."""
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    before = remote_refs(world.repo)
    refused = alice.cmd("claim", "run", "718", "--interval", "8m", "--", "true")
    assert refused.code == 2 and "claim.ttl" in refused.stderr, refused
    assert remote_refs(world.repo) == before


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_guards_hold_on_a_server_without_atomic_pushes(make_world, scheme):
    """The git CLI transport puts its guards in an atomic push; a server that offers none
    (receive.advertiseAtomic false) gets the update alone and the guard read back."""
    world = make_world(scheme, "git")
    subprocess.run(["git", "--git-dir", str(world.repo.path), "config",
                    "receive.advertiseAtomic", "false"], check=True)
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("719").code == 0
    beat = alice.claim("heartbeat", "719")
    assert beat.code == 0, beat
    bob.git("push", "-q", "origin", ":refs/claims/719")
    assert bob.claim("719").code == 0
    refused = alice.claim("heartbeat", "719")
    assert refused.code == 1 and "no longer yours" in refused.stderr, refused
    assert alice.release("719", "--done").code == 1
    assert bob.release("719", "--done").code == 0
