"""The backlog: `git claim --next`, the design gate, and mirroring to a (fake) gh.

The tracker boundary is the `gh` CLI; tests put tests/fake_gh/gh first on
PATH. It answers like gh, records every call and can fail on demand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents import PausePoint, remote_refs, tag_message, ticket_state, with_env

FAKE_GH = Path(__file__).parent / "fake_gh"


def issue(number, title="", labels=(), state="open"):
    return {"number": number, "title": title or f"issue {number}", "labels": list(labels),
            "state": state}


@pytest.fixture
def gh(tmp_path):
    """A fake gh: returns (env additions, state path, log path)."""
    state = tmp_path / "gh-state.json"
    log = tmp_path / "gh-log.jsonl"
    state.write_text(json.dumps({"issues": [], "prs": [], "labels": [
        "in-progress", "blocked", "design:required", "design:approved", "bug"]}))

    class Gh:
        path = state

        def env(self, agent, **extra):
            return with_env(agent, PATH=f"{FAKE_GH}:{agent.env['PATH']}",
                            FAKE_GH_STATE=str(state), FAKE_GH_LOG=str(log), **extra)

        def set(self, **values):
            data = json.loads(state.read_text())
            data.update(values)
            state.write_text(json.dumps(data))

        def labels_of(self, number):
            data = json.loads(state.read_text())
            found = next(i for i in data["issues"] if i["number"] == number)
            return sorted(label if isinstance(label, str) else label["name"]
                          for label in found["labels"])

        def comments(self):
            return json.loads(state.read_text()).get("comments", [])

    return Gh()


def gh_agent(world, gh, name):
    agent = world.agent(name)
    agent.git("config", "claim.source", "gh")
    agent.env = gh.env(agent)
    return agent


def test_the_design_gate(make_world, gh):
    world = make_world("git", "libgit2")
    gh.set(issues=[issue(645, labels=["design:required"]),
                   issue(646, labels=["design:required", "design:approved"]), issue(647)])
    alice = gh_agent(world, gh, "alice")
    refused = alice.claim("645")
    assert refused.code == 1, refused
    assert refused.stderr.strip() == ("git claim: 645 needs design approval (labelled"
                                      " design:required, not design:approved)")
    assert "refs/claims/645" not in remote_refs(world.repo)
    assert alice.claim("646").code == 0
    alice.git("config", "claim.maxPerAgent", "0")  # alice holds 646: let --next take more
    picked = alice.claim("--next", "--json")
    assert picked.code == 0, picked
    assert picked.json()["ticket"] == "647"
    nothing = alice.claim("--next")
    assert nothing.code == 6  # nothing eligible: its own exit status
    assert "nothing eligible" in nothing.stderr and "1 needs design approval" in nothing.stderr
    # the tracker is down: fail closed, and say why
    down = alice.cmd("claim", "645", env=with_env(alice, FAKE_GH_FAIL="auth"))
    assert down.code == 3, down
    assert "fails closed" in down.stderr and "gh auth login" in down.stderr
    assert down.stderr.count("\n") == 1
    human = alice.cmd("claim", "645", "--no-gate", env=with_env(alice, FAKE_GH_FAIL="auth"))
    assert human.code == 0, human
    body = tag_message(world.repo, remote_refs(world.repo)["refs/claims/645"])
    assert "Claim-No-Gate: true" in body


def test_configurable_gate_labels(make_world, gh):
    world = make_world("path", "libgit2")
    gh.set(issues=[issue(1, labels=["needs-design"]), issue(2, labels=["design:required"])])
    alice = gh_agent(world, gh, "alice")
    alice.git("config", "claim.gateLabel", "needs-design")
    alice.git("config", "claim.approvedLabel", "design-ok")
    refused = alice.claim("1")
    assert refused.code == 1 and "needs-design, not design-ok" in refused.stderr
    assert alice.claim("2").code == 0


def test_next_from_files_and_stdin_with_filters(make_world, tmp_path):
    world = make_world("git", "git")
    alice = world.agent("alice")
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("\n".join(json.dumps(x) for x in [
        {"id": 1, "title": "one", "labels": ["bug"]},
        {"id": 2, "title": "two \x1b[31mred\x1b[0m", "labels": ["bug", "ui"]},
        {"id": 3, "title": "three", "labels": []},
    ]) + "\n")
    first = alice.claim("--next", "--from", str(backlog), "--label", "ui", "--json")
    assert first.code == 0, first
    assert first.json()["ticket"] == "2" and first.json()["labels"] == ["bug", "ui"]
    shown = world.agent("bob").claim("--next", "--from", str(backlog), "--exclude-label", "bug")
    assert shown.code == 0 and shown.stdout.startswith("claimed 3 ")
    alice.git("config", "claim.maxPerAgent", "0")  # alice holds 2: let --next take more
    plain = alice.cmd("claim", "--next", "--from", "-", input="2\n3\n1\n")
    assert plain.code == 0 and plain.stdout.startswith("claimed 1 "), plain
    empty = alice.cmd("claim", "--next", "--from", "-", input="1\n2\n")
    assert empty.code == 6 and "nothing eligible (2 claimed, done or blocked)" in empty.stderr
    assert "\x1b" not in shown.stdout + first.stdout
    missing = alice.claim("--next", "--from", str(tmp_path / "nope.txt"))
    assert missing.code == 2 and missing.stderr.count("\n") == 1


def test_mirroring_is_display_and_reap_repairs_it(make_world, gh):
    world = make_world("git", "libgit2")
    gh.set(issues=[issue(10), issue(11), issue(12)])
    alice = gh_agent(world, gh, "alice")
    assert alice.claim("10").code == 0
    assert gh.labels_of(10) == ["in-progress"]
    assert alice.release("10", "--done").code == 0
    assert gh.labels_of(10) == []
    assert alice.claim("11").code == 0
    blocked = alice.release("11", "--blocked", "--reason", "needs API key")
    assert blocked.code == 0
    assert gh.labels_of(11) == ["blocked"]
    assert any("needs API key" in c["body"] for c in gh.comments())
    # the tracker fails while claiming: the claim stands, with a warning
    failing = alice.cmd("claim", "12", env=with_env(alice, FAKE_GH_FAIL="edit"))
    assert failing.code == 0, failing
    assert "warning: could not add the label in-progress on 12 (the claim stands)" in failing.stderr
    assert gh.labels_of(12) == []
    reaper = gh_agent(world, gh, "reaper")
    reaper.git("config", "claim.heartbeat", "1s")
    repaired = reaper.cmd("reap", "--ttl", "1h", "--max-skew", "0", "--json")
    assert repaired.code == 0, repaired
    assert "added in-progress to 12" in repaired.json()["repaired"]
    assert gh.labels_of(12) == ["in-progress"]
    # a reap removes the label and says so
    reaped = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0",
                        env=with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reaped.code == 0 and "reaped 12" in reaped.stdout
    assert gh.labels_of(12) == []
    assert any("reaped" in c["body"].lower() for c in gh.comments())


def test_the_reaper_skips_open_pull_requests(make_world, gh):
    world = make_world("path", "libgit2")
    gh.set(issues=[issue(20), issue(21), issue(22)],
           prs=[{"number": 5, "headRefName": "claim/20", "title": "work", "body": ""},
                {"number": 6, "headRefName": "feature", "title": "Fix", "body": "Closes #21"}])
    alice = gh_agent(world, gh, "alice")
    for ticket in ("20", "21", "22"):
        assert alice.claim(ticket).code == 0
    reaper = gh_agent(world, gh, "reaper")
    reaper.git("config", "claim.heartbeat", "1s")
    old = with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100")
    run = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--json", env=old)
    document = run.json()
    assert [e["ticket"] for e in document["reaped"]] == ["22"]
    reasons = {e["ticket"]: e["reason"] for e in document["skipped"]}
    assert reasons["20"] == "open pull request #5 from claim/20"
    assert reasons["21"] == "open pull request #6 references #21"
    forced = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--no-pr-check", "--json",
                        env=old)
    assert sorted(e["ticket"] for e in forced.json()["reaped"]) == ["20", "21"]


@pytest.mark.parametrize("version", ["2.23.0", "2.60.0"])
def test_board_status_with_old_and_new_gh(make_world, gh, version):
    world = make_world("path", "libgit2")
    gh.set(issues=[issue(30)], viewer="octo",
           projects=[{"owner": "octo", "number": 1, "title": "Board",
                      "statuses": ["Todo", "In Progress", "Done"], "items": []}])
    alice = gh_agent(world, gh, "alice")
    alice.git("config", "claim.project", "1")
    alice.git("config", "claim.projectOwner", "octo")
    won = alice.cmd("claim", "30", env=with_env(alice, FAKE_GH_VERSION=version))
    assert won.code == 0, won
    projects = json.loads(gh.path.read_text())["projects"]
    assert [item["status"] for item in projects[0]["items"]] == ["In Progress"], won


def test_sixteen_processes_next_on_one_backlog(make_world, tmp_path):
    world = make_world("git", "libgit2")
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"B{i}\n" for i in range(32)))
    agents = [world.agent(f"next{i:02d}") for i in range(16)]
    processes = [a.popen("claim", "--next", "--from", str(backlog), "--json") for a in agents]
    documents = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (out, err)
        documents.append(json.loads(out))
    tickets = [d["ticket"] for d in documents]
    assert len(set(tickets)) == 16
    claimed = {ref for ref in remote_refs(world.repo) if ref.startswith("refs/claims/")}
    assert len(claimed) == 16
    for document in documents:  # each holder is the agent that reported the win
        body = tag_message(world.repo, remote_refs(world.repo)[f"refs/claims/{document['ticket']}"])
        assert f"Claim-Agent: {document['agent']}\n" in body
    pushes = sum(d["pushes"] for d in documents)
    print(f"16 agents, 32 tickets: {pushes} claim pushes ({pushes / 16:.2f} per agent)")


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_lost_race_relists_before_the_next_push(make_world, tmp_path, transport):
    """Bob loses his first pick, and the tickets behind it went meanwhile too.

    He lists the remote again instead of pushing for each of them: one lost
    push, then a win, whatever his order (claim.spread 1 makes it backlog
    order, the worst case: every ticket he would try next is taken).
    """
    world = make_world("path", transport)
    backlog = tmp_path / "backlog.txt"
    backlog.write_text("".join(f"L{i}\n" for i in range(6)))
    alice, bob = world.agent("alice"), world.agent("bob")
    bob.git("config", "claim.spread", "1")
    point = PausePoint(tmp_path / "pause", "claim:before-push")
    process = bob.popen("claim", "--next", "--from", str(backlog), "--json",
                        env=point.env(bob.env))
    point.wait_reached(process)
    for ticket in ("L0", "L1", "L2", "L3"):
        assert alice.claim(ticket).code == 0
    point.go()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    document = json.loads(out)
    assert document["ticket"] == "L4" and document["pushes"] == 2, document


def test_assignment_is_mirrored_when_configured(make_world, gh):
    world = make_world("path", "libgit2")
    gh.set(issues=[issue(40)], viewer="octo")
    alice = gh_agent(world, gh, "alice")
    alice.git("config", "claim.assign", "@me")
    assert alice.claim("40").code == 0
    data = json.loads(gh.path.read_text())
    assert data["issues"][0]["assignees"] == ["octo"]


@pytest.mark.parametrize("gh_trouble", ["missing", "auth"])
def test_a_reap_that_cannot_check_pull_requests_is_not_a_success(make_world, gh, gh_trouble):
    """A cron reaper must notice that it kept every stale claim only to be safe."""
    world = make_world("path", "libgit2")
    gh.set(issues=[issue(23)])
    alice = gh_agent(world, gh, "alice")
    assert alice.claim("23").code == 0
    reaper = world.agent("reaper")
    reaper.git("config", "claim.source", "gh")
    reaper.git("config", "claim.heartbeat", "1s")
    if gh_trouble == "auth":
        reaper.env = gh.env(reaper, FAKE_GH_FAIL="auth")
    old = with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100")
    run = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", env=old)
    assert run.code == 5, run
    assert "skipped 23: open pull requests unknown" in run.stdout
    assert run.stderr.splitlines()[-1].startswith(
        "git reap: 1 claim not freed: 23: open pull requests unknown")
    assert "Traceback" not in run.stderr
    document = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--json", env=old)
    assert document.code == 5
    report = document.json()
    assert report["ok"] is False and report["exit_code"] == 5
    assert report["error"]["kind"] == "incomplete"
    assert [e["ticket"] for e in report["undone"]] == ["23"]
    assert report["undone"][0]["undone"] == "unchecked"
    assert ticket_state(world.repo, "23").state == "held"
    # an open pull request is a deliberate skip, not a failure; --no-pr-check reaps
    forced = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--no-pr-check", env=old)
    assert forced.code == 0 and "reaped 23" in forced.stdout, forced
    assert ticket_state(world.repo, "23").state == "free"
