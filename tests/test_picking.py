"""Picking: the rules `--next`, a direct claim and `git claim ready` share.

Every rule (the design gate, dependencies, sub-issues, capabilities, the
agent's and the team's WIP limits, priority tiers) is driven here through
the installed commands against a real served repository, with the backlog
in a file. The gh source's shapes of the same data are in test_gh_links.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from agents import PausePoint, remote_refs, ticket_state, with_env


def backlog_file(tmp_path: Path, *lines: dict | str, name: str = "backlog.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def agent_on(world, name: str, backlog: Path, **config: str):
    agent = world.agent(name)
    agent.git("config", "claim.source", str(backlog))
    for key, value in config.items():
        agent.git("config", f"claim.{key}", value)
    return agent


def ready(agent, *args: str) -> dict[str, dict]:
    shown = agent.claim("ready", "--json", *args)
    assert shown.code == 0, shown
    return {entry["ticket"]: entry for entry in shown.json()["tickets"]}


def test_a_direct_claim_obeys_the_gate_a_backlog_file_sets(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 804, "labels": ["design:required"]},
                           {"id": 805, "labels": ["design:required", "design:approved"]}, "806")
    alice = agent_on(world, "alice", backlog)
    before = remote_refs(world.repo)
    refused = alice.claim("804")
    assert refused.code == 1 and refused.stderr.strip() == (
        "git claim: 804 needs design approval (labelled design:required, not design:approved)")
    assert remote_refs(world.repo) == before  # nothing written
    alice.git("config", "claim.maxPerAgent", "0")
    taken = {alice.claim("--next", "--json").json().get("ticket") for _ in range(2)}
    assert taken == {"805", "806"}  # 804 is skipped the same way; a plain line has no gate
    assert alice.claim("--next").code == 6
    human = world.agent("human")
    human.git("config", "claim.source", str(backlog))
    assert human.claim("804", "--no-gate").code == 0  # the human's override stays


def test_dependencies_of_a_file_backlog(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(
        tmp_path,
        {"id": 1, "title": "base"},
        {"id": 2, "blocked_by": [1]},
        {"id": 3, "blocked_by": [9, "#4"]},  # 9 is not listed: finished; 4 is closed
        {"id": 4, "state": "closed"},
        {"id": 5, "blocked_by": "1"},  # not a list: fails closed
    )
    alice = agent_on(world, "alice", backlog, maxPerAgent="0")
    seen = ready(alice)
    assert seen["2"]["state"] == "waiting" and seen["2"]["detail"] == "#1"
    assert seen["3"]["state"] == "eligible"
    assert seen["5"]["state"] == "dependencies-unknown"
    assert "blocked_by" in seen["5"]["detail"]
    direct = alice.claim("2")
    assert direct.code == 1 and "2 is waiting on #1, still open" in direct.stderr, direct
    assert ticket_state(world.repo, "2").state == "free"
    # Released --done through git-claim, 1 counts as done at once: the file still says open.
    assert alice.claim("1").code == 0
    assert alice.release("1", "--done").code == 0
    assert ready(alice)["2"]["state"] == "eligible"
    assert alice.claim("2").code == 0
    # A human may still override, as with the gate.
    refused = alice.claim("5")
    assert refused.code == 1 and "dependencies cannot be read" in refused.stderr
    assert alice.claim("5", "--no-gate").code == 0


def test_a_dependency_cycle_is_reported_with_its_ids_never_looped_on(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": "A", "blocked_by": ["B"]},
                           {"id": "B", "blocked_by": ["C"]}, {"id": "C", "blocked_by": ["A"]},
                           {"id": "D", "blocked_by": ["D"]}, {"id": "E", "blocked_by": ["A"]})
    alice = agent_on(world, "alice", backlog)
    seen = ready(alice)
    assert seen["A"]["state"] == "cycle" and seen["A"]["detail"] == "A -> B -> C -> A"
    assert seen["C"]["detail"] == "C -> A -> B -> C"
    assert seen["D"]["state"] == "cycle" and seen["D"]["detail"] == "D -> D"
    assert seen["E"]["state"] == "waiting"  # waits on a ticket in a cycle; not in it
    nothing = alice.claim("--next")
    assert nothing.code == 6
    assert "4 in a dependency cycle" in nothing.stderr and "1 waiting on an open blocker" \
        in nothing.stderr, nothing
    direct = alice.claim("B")
    assert direct.code == 1 and "dependency cycle: B -> C -> A -> B" in direct.stderr, direct


def test_parents_wait_for_their_open_sub_issues_when_asked(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 10, "title": "epic"}, {"id": 11, "parent": 10},
                           {"id": 12, "parent": 10, "state": "closed"})
    alice = agent_on(world, "alice", backlog, maxPerAgent="0")
    assert ready(alice)["10"]["state"] == "eligible"  # off by default
    alice.git("config", "claim.parentsWait", "true")
    seen = ready(alice)
    assert seen["10"]["state"] == "sub-issues-open" and seen["10"]["detail"] == "#11"
    assert alice.claim("11").code == 0 and alice.release("11", "--done").code == 0
    assert ready(alice)["10"]["state"] == "eligible"


def test_higher_tiers_are_taken_first_and_spread_within_a_tier(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 1, "title": "low", "labels": ["priority:low"]},
                           {"id": 2, "title": "none"}, {"id": 3, "labels": ["P1"]},
                           {"id": 4, "priority": "critical"}, {"id": 5, "priority": 0},
                           {"id": 6, "labels": ["urgent"]})
    alice = agent_on(world, "alice", backlog, maxPerAgent="0")
    order = [entry["ticket"] for entry in alice.claim("ready", "--json").json()["tickets"]]
    assert set(order[:2]) == {"4", "5"} and order[2:] == ["3", "2", "6", "1"]
    alice.git("config", "claim.priorityLabels", "urgent=0")
    order = [entry["ticket"] for entry in alice.claim("ready", "--json").json()["tickets"]]
    assert set(order[:3]) == {"4", "5", "6"}  # the mapping replaced: P1 and priority:low now medium
    taken = [alice.claim("--next", "--json").json()["ticket"] for _ in range(3)]
    assert set(taken) == {"4", "5", "6"}
    alice.git("config", "claim.priorityLabels", "urgent=9")
    bad = alice.claim("ready")
    assert bad.code == 2 and "claim.priorityLabels" in bad.stderr, bad


def test_agents_starting_together_spread_over_the_top_tier(make_world, tmp_path):
    world = make_world("path", "libgit2")
    lines = [{"id": n, "labels": ["P0"] if n > 20 else []} for n in range(1, 29)]
    backlog = backlog_file(tmp_path, *lines)
    firsts = set()
    for index in range(8):
        agent = agent_on(world, f"spread-{index}", backlog)
        firsts.add(agent.claim("ready", "--json").json()["tickets"][0]["ticket"])
    assert firsts <= {str(n) for n in range(21, 29)} and len(firsts) >= 3, firsts


def test_capabilities(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 1, "labels": ["needs:frontend"]},
                           {"id": 2, "labels": ["needs:python", "needs:GPU"]})
    alice = agent_on(world, "alice", backlog, maxPerAgent="0")
    nothing = alice.claim("--next")
    assert nothing.code == 6 and "2 needs a capability this agent lacks" in nothing.stderr
    assert ready(alice)["2"]["detail"] == "gpu, python"
    direct = alice.claim("1")
    assert direct.code == 1 and "1 needs frontend, which this agent cannot do" in direct.stderr
    taken = alice.claim("--next", "--can", "frontend", "--json")
    assert taken.code == 0 and taken.json()["ticket"] == "1"
    alice.git("config", "claim.capabilities", "python, gpu")
    assert alice.claim("--next", "--json").json()["ticket"] == "2"


def test_an_agent_takes_one_claim_at_a_time_unless_allowed(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2", "3", "4")
    alice = agent_on(world, "alice", backlog)
    assert alice.claim("--next").code == 0
    second = alice.claim("--next", "--json")
    assert second.code == 6 and second.json()["skipped"]["over this agent's claim limit"] == 3
    assert alice.claim("2").code == 0  # a named ticket is the human's choice
    alice.git("config", "claim.maxPerAgent", "3")
    assert alice.claim("--next").code == 0
    assert alice.claim("--next").code == 6
    alice.git("config", "claim.maxPerAgent", "0")
    assert alice.claim("--next").code == 0
    bob = agent_on(world, "bob", backlog)  # the limit is per agent
    assert ready(bob)["1"]["state"] == "held"


def test_a_claim_another_live_process_works_on_does_not_count_against_the_limit(
        make_world, tmp_path):
    """Workers sharing one checkout and name each have a limit of their own."""
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2")
    alice = agent_on(world, "alice", backlog)
    with _working(alice, tmp_path) as first:
        second = alice.claim("--next", "--json")
        assert second.code == 0 and second.json()["ticket"] != first, second
        assert alice.claim("--next").code == 6  # this one, left by a finished process, counts


def test_team_wip_limit_per_label(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 1, "labels": ["Review"]},
                           {"id": 2, "labels": ["review"]}, {"id": 3, "labels": ["area:ui"]},
                           {"id": 4, "labels": ["area:ui"]}, {"id": 5})
    alice = agent_on(world, "alice", backlog, **{"wip.review": "1"})
    alice.git("config", "--add", "claim.wipLimit", "area:ui=1")
    bob = agent_on(world, "bob", backlog, **{"wip.review": "1"})
    bob.git("config", "--add", "claim.wipLimit", "area:ui=1")
    assert alice.claim("1").code == 0 and alice.claim("3").code == 0
    seen = ready(bob)
    assert seen["2"]["state"] == "wip-limit" and seen["2"]["detail"] == "review (1 of 1)"
    assert seen["4"]["state"] == "wip-limit" and seen["4"]["detail"] == "area:ui (1 of 1)"
    assert bob.claim("--next", "--json").json()["ticket"] == "5"
    assert alice.release("1", "--done").code == 0
    assert ready(bob)["2"]["state"] == "agent-limit"  # bob holds 5 already
    bob.git("config", "claim.maxPerAgent", "2")
    assert bob.claim("--next", "--json").json()["ticket"] == "2"


def test_ready_shows_every_state_in_text_and_json(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 1, "title": "free one"},
                           {"id": 2, "title": "held one"}, {"id": 3, "title": "done one"},
                           {"id": 4, "labels": ["design:required"]},
                           {"id": 5, "blocked_by": [2]}, {"id": 6, "labels": ["needs:rust"]},
                           {"id": 7, "state": "closed"})
    alice = agent_on(world, "alice", backlog)
    bob = agent_on(world, "bob", backlog, maxPerAgent="0")
    assert bob.claim("2").code == 0
    assert bob.claim("3").code == 0 and bob.release("3", "--done").code == 0
    before = remote_refs(world.repo)
    shown = alice.claim("ready", "--json")
    assert shown.code == 0, shown
    document = shown.json()
    states = {e["ticket"]: (e["state"], e["detail"]) for e in document["tickets"]}
    assert states == {"1": ("eligible", ""), "2": ("held", "bob"), "3": ("done", "bob"),
                      "4": ("gated", "design:required"), "5": ("waiting", "#2"),
                      "6": ("needs-capability", "rust")}
    assert document["eligible"] == 1 and document["agent"] == "alice"
    text = alice.claim("ready")
    assert text.code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["1", "P2", "eligible", "free", "one"]
    assert "held by bob" in text.stdout and "waiting on #2" in text.stdout
    assert "needs rust" in text.stdout and lines[-1].startswith("1 eligible of 6")
    mine = bob.claim("ready", "--json").json()["tickets"]
    assert next(e for e in mine if e["ticket"] == "2")["mine"] is True
    no_source = world.agent("carol").claim("ready")
    assert no_source.code == 2 and "ready needs a backlog" in no_source.stderr
    assert remote_refs(world.repo) == before  # ready claims nothing


@contextlib.contextmanager
def _working(agent, tmp_path: Path) -> Iterator[str]:
    """A `git claim run --next` of `agent` at work on its ticket (yielded) till the end,
    undisturbed by what the test did meanwhile."""
    started = tmp_path / "started"
    worker = agent.popen("claim", "run", "--next", "--", "sh", "-c",
                         f"echo $GIT_CLAIM_TICKET > {started}; sleep 60",
                         start_new_session=True)
    try:
        _wait_for(started, worker)
        yield started.read_text().strip()
        assert worker.poll() is None  # still at work
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.communicate(timeout=60)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if process.poll() is not None:
            raise AssertionError(f"ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not written in {timeout}s")
        time.sleep(0.05)


def test_run_next_resumes_its_own_claim_after_its_supervisor_died(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2", "3")
    alice = agent_on(world, "alice", backlog)
    where = tmp_path / "where"
    command = ["sh", "-c", f"echo $GIT_CLAIM_TICKET $PWD > {where}; sleep 60"]
    first = alice.popen("claim", "run", "--next", "--worktree", "--", *command,
                        start_new_session=True)
    _wait_for(where, first)
    ticket, tree = where.read_text().split()
    os.killpg(first.pid, signal.SIGKILL)  # the supervisor and its command die at once
    first.communicate(timeout=30)
    assert ticket_state(world.repo, ticket).state == "held"
    where.unlink()
    done = alice.cmd("claim", "run", "--next", "--worktree", "--", "sh", "-c",
                     f"echo $GIT_CLAIM_TICKET $PWD > {where}")
    assert done.code == 0, done
    assert f"resumed {ticket}" in done.stderr and where.read_text().split() == [ticket, tree]
    assert ticket_state(world.repo, ticket).state == "done"


def test_no_resume_leaves_the_old_claim_and_counts_it(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2", "3")
    alice = agent_on(world, "alice", backlog)
    assert alice.claim("--next").code == 0
    held = [t for t in "123" if ticket_state(world.repo, t).state == "held"]
    assert len(held) == 1
    refused = alice.cmd("claim", "run", "--next", "--no-resume", "--", "true")
    assert refused.code == 6 and "over this agent's claim limit" in refused.stderr, refused
    alice.git("config", "claim.maxPerAgent", "2")
    other = alice.cmd("claim", "run", "--next", "--no-resume", "--json", "--", "true")
    assert other.code == 0 and other.json()["ticket"] not in held, other
    assert ticket_state(world.repo, held[0]).state == "held"  # left alone
    resumed = alice.cmd("claim", "run", "--next", "--json", "--", "true")
    assert resumed.code == 0 and resumed.json()["ticket"] == held[0], resumed


def test_a_claim_supervised_by_another_live_process_is_never_resumed(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2")
    alice = agent_on(world, "alice", backlog)
    with _working(alice, tmp_path) as first:
        second = alice.cmd("claim", "run", "--next", "--json", "--", "true")
        assert second.code == 0 and second.json()["ticket"] != first, second
        assert ticket_state(world.repo, first).state == "held"


def test_resume_env_is_the_claims_own(make_world, tmp_path):
    """A resumed claim runs with its ticket's variables, as a fresh one does."""
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 7, "title": "seven"})
    alice = agent_on(world, "alice", backlog)
    assert alice.claim("--next").code == 0
    out = tmp_path / "env"
    run = alice.cmd("claim", "run", "--next", "--", "sh", "-c",
                    f"echo $GIT_CLAIM_TICKET:$GIT_CLAIM_AGENT > {out}")
    assert run.code == 0 and out.read_text().strip() == "7:alice", run
    assert with_env(alice)["GIT_CLAIM_AGENT"] == "alice"


# -- the same rules with gh as the source (the fake gh answers like gh) -------

FAKE_GH = Path(__file__).parent / "fake_gh"


def gh_world(make_world, tmp_path, issues, name="alice", **fake):
    world = make_world("path", "libgit2")
    state = tmp_path / "gh-state.json"
    log = tmp_path / "gh-log.jsonl"
    state.write_text(json.dumps({"issues": issues, "prs": [], "labels": [
        "in-progress", "blocked", "design:required", "design:approved"]}))
    agent = world.agent(name)
    agent.git("config", "claim.source", "gh")
    agent.env = with_env(agent, PATH=f"{FAKE_GH}:{agent.env['PATH']}",
                         FAKE_GH_STATE=str(state), FAKE_GH_LOG=str(log), **fake)
    return world, agent, log


def gh_calls(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] \
        if log.exists() else []


def gh_issue(number, **more):
    return {"number": number, "title": f"issue {number}", "labels": [], "state": "open",
            **more}


def test_gh_dependencies_cost_one_call_per_listing(make_world, tmp_path):
    issues = [gh_issue(n, blocked_by=[n - 1]) for n in range(2, 60)] + [gh_issue(1)]
    world, alice, log = gh_world(make_world, tmp_path, issues, FAKE_GH_PAGE="7")
    taken = alice.claim("--next", "--json")
    assert taken.code == 0 and taken.json()["ticket"] == "1", taken  # all others wait
    reads = [argv for argv in gh_calls(log) if argv[:2] in (["issue", "list"], ["api", "graphql"])]
    assert [argv[:2] for argv in reads] == [["issue", "list"], ["api", "graphql"]], reads
    assert ready(alice)["2"]["state"] == "waiting"
    alice.git("config", "claim.dependencies", "false")
    log.unlink()
    assert ready(alice)["2"]["state"] != "waiting"
    assert not [argv for argv in gh_calls(log) if argv[:2] == ["api", "graphql"]]


def test_gh_blockers_gate_a_named_issue_and_done_counts_at_once(make_world, tmp_path):
    issues = [gh_issue(650, blocked_by=[640]), gh_issue(640), gh_issue(641, state="closed"),
              gh_issue(651, blocked_by=[641])]
    world, alice, log = gh_world(make_world, tmp_path, issues)
    refused = alice.claim("650")
    assert refused.code == 1 and "650 is waiting on #640, still open" in refused.stderr
    assert ticket_state(world.repo, "650").state == "free"
    assert alice.claim("651").code == 0  # its blocker is closed
    assert alice.release("651", "--done").code == 0
    assert alice.claim("640").code == 0 and alice.release("640", "--done").code == 0
    assert alice.claim("650").code == 0  # 640 is still open on GitHub: done here counts


def test_gh_without_dependencies_fails_closed_and_says_why(make_world, tmp_path):
    issues = [gh_issue(1), gh_issue(2)]
    world, alice, log = gh_world(make_world, tmp_path, issues, FAKE_GH_NO_DEPENDENCIES="1")
    seen = ready(alice)
    assert seen["1"]["state"] == "dependencies-unknown"
    assert "blockedBy" in seen["1"]["detail"], seen
    nothing = alice.claim("--next")
    assert nothing.code == 6 and "2 dependencies unknown (fails closed)" in nothing.stderr
    refused = alice.claim("1")
    assert refused.code == 1 and "dependencies cannot be read" in refused.stderr, refused
    assert "blockedBy" in refused.stderr
    alice.git("config", "claim.dependencies", "false")  # the team's way out, said in the docs
    assert alice.claim("--next").code == 0


def test_gh_parents_wait_for_sub_issues(make_world, tmp_path):
    issues = [gh_issue(10), gh_issue(11, parent=10), gh_issue(12, parent=10, state="closed")]
    world, alice, log = gh_world(make_world, tmp_path, issues)
    alice.git("config", "claim.parentsWait", "true")
    alice.git("config", "claim.maxPerAgent", "0")
    seen = ready(alice)
    assert seen["10"]["state"] == "sub-issues-open" and seen["10"]["detail"] == "#11"
    assert alice.claim("10").code == 1
    assert alice.claim("11").code == 0 and alice.release("11", "--done").code == 0
    assert alice.claim("10").code == 0


def test_gh_priority_labels_and_capabilities(make_world, tmp_path):
    issues = [gh_issue(1, labels=["priority:low"]), gh_issue(2),
              gh_issue(3, labels=["needs:frontend", "P0"]), gh_issue(4, labels=["P1"])]
    world, alice, log = gh_world(make_world, tmp_path, issues)
    order = [e["ticket"] for e in alice.claim("ready", "--json").json()["tickets"]]
    assert order == ["4", "2", "1", "3"]  # 3 is P0 but needs what alice cannot do
    taken = alice.claim("--next", "--can", "frontend", "--json")
    assert taken.json()["ticket"] == "3", taken


def test_run_next_takes_up_a_ticket_handed_to_it_before_new_work(make_world, tmp_path):
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 1, "labels": ["P0"]}, {"id": 2, "labels": ["P0"]},
                           {"id": 3})
    alice = agent_on(world, "alice", backlog)
    bob = agent_on(world, "bob", backlog)
    assert alice.claim("3").code == 0
    assert alice.release("3", "--to", "bob").code == 0
    seen = ready(bob)
    assert seen["3"]["state"] == "held" and seen["3"]["mine"] is True
    assert seen["3"]["detail"] == "you (handed off by alice, not yet taken up)"
    took = bob.cmd("claim", "run", "--next", "--json", "--", "true")
    assert took.code == 0 and took.json()["ticket"] == "3", took  # before P0 work
    assert "claimed 3 (refs/claims/3@2) (handed off by alice)" in took.stderr, took
    assert ticket_state(world.repo, "3").state == "done"
    assert ticket_state(world.repo, "3").agent == "bob"


def test_labels_that_are_not_a_list_fail_closed(make_world, tmp_path):
    """A gate or a capability may hide in a labels field nobody can read."""
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, {"id": 808, "labels": "design:required"},
                           {"id": 809, "labels": {"name": "needs:gpu"}}, {"id": 810},
                           {"id": 811, "labels": [["design:required"]]},
                           {"id": 812, "labels": ["bug", None]},
                           {"id": 813, "labels": [f"l{n}" for n in range(100)]
                            + ["design:required"]})
    alice = agent_on(world, "alice", backlog, maxPerAgent="0")
    seen = ready(alice)
    assert seen["808"]["state"] == "labels-unknown"
    assert seen["808"]["detail"] == "its labels are not a list"
    assert seen["809"]["state"] == "labels-unknown"
    refused = alice.claim("808")
    assert refused.code == 1 and "808: its labels are not a list" in refused.stderr, refused
    assert seen["811"]["detail"] == seen["812"]["detail"] == "its labels are not all label names"
    assert seen["813"]["detail"] == "it has more than 100 labels"
    assert alice.claim("811").code == 1
    assert alice.claim("--next", "--json").json()["ticket"] == "810"
    nothing = alice.claim("--next")
    assert nothing.code == 6 and "5 labels unknown (gate fails closed)" in nothing.stderr


def test_unreadable_labels_are_not_replaced_by_the_trackers(make_world, tmp_path):
    """The line said something about its labels that cannot be read: the tracker's
    "no labels" must not let it through."""
    world, alice, _log = gh_world(make_world, tmp_path, [gh_issue(13), gh_issue(14)])
    backlog = backlog_file(tmp_path, {"id": 13, "labels": "design:required"},
                           {"id": 14, "labels": [None]})
    alice.git("config", "claim.source", str(backlog))
    alice.git("config", "claim.tracker", "gh")
    assert alice.claim("13").code == 1 and alice.claim("14").code == 1
    assert alice.claim("--next").code == 6


def test_a_long_cycle_is_named_briefly(make_world, tmp_path):
    world = make_world("path", "libgit2")
    size = 30
    backlog = backlog_file(tmp_path, *({"id": n, "blocked_by": [n % size + 1]}
                                       for n in range(1, size + 1)))
    alice = agent_on(world, "alice", backlog)
    seen = ready(alice)
    assert seen["5"]["detail"] == "5 -> 6 -> 7 -> 8 -> 9 -> 10 -> 11 -> ... -> 5 (30 tickets)"
    assert {entry["state"] for entry in seen.values()} == {"cycle"}


def test_a_claim_another_process_is_just_winning_counts_as_worked_on(make_world, tmp_path):
    """Between its push and the record of its win a process works on its claim: a worker
    beside it is not over its limit for it, and once that process dies in the window the
    claim is resumed, never left to block the agent until a reaper comes."""
    world = make_world("path", "libgit2")
    backlog = backlog_file(tmp_path, "1", "2", "3")
    alice = agent_on(world, "alice", backlog)
    pause = PausePoint(tmp_path / "p", "claim:after-push")
    first = alice.popen("claim", "run", "--next", "--", "true", env=pause.env(alice.env),
                        start_new_session=True)
    pause.wait_reached(first)
    held = next(t for t in "123" if ticket_state(world.repo, t).state == "held")
    beside = alice.claim("--next", "--json")
    assert beside.code == 0 and beside.json()["ticket"] != held, beside
    assert alice.release(beside.json()["ticket"]).code == 0
    os.killpg(first.pid, signal.SIGKILL)  # dies between its push and the record of its win
    first.communicate(timeout=30)
    resumed = alice.cmd("claim", "run", "--next", "--json", "--", "true")
    assert resumed.code == 0 and resumed.json()["ticket"] == held, resumed
    assert f"resumed {held}" in resumed.stderr
    assert ticket_state(world.repo, held).state == "done"
