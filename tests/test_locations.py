"""Works where git works: subdirectories, `git -C`, linked worktrees, GIT_DIR.

The commands find the repository exactly as git does, and keep their
ownership records in the per-worktree git dir, so two agents in two linked
worktrees of one clone are two different claimants (`git claim list --json`
marks a claim `ours` only in the checkout that made it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agents import Agent, Outcome, remote_refs, ticket_state


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> Outcome:
    completed = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=120)
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def git_dir(cwd: Path, env: dict[str, str]) -> Path:
    out = run(["rev-parse", "--git-dir"], cwd=cwd, env=env)
    assert out.code == 0, out
    path = Path(out.stdout.strip())
    return path if path.is_absolute() else (cwd / path).resolve()


def add_worktree(agent: Agent, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    agent.git("worktree", "add", "-q", "--detach", str(path))
    return path


def claims(outcome: Outcome) -> dict[str, dict]:
    assert outcome.code == 0, outcome
    return {row["ticket"]: row for row in json.loads(outcome.stdout)}


def test_from_a_subdirectory_and_with_dash_c(make_world, transport, tmp_path):
    world = make_world("git", transport)
    alice = world.agent("alice")
    sub = alice.workdir / "deep" / "er"
    sub.mkdir(parents=True)

    won = run(["claim", "640"], cwd=sub, env=alice.env)
    assert won.code == 0, won
    assert won.stdout.strip() == "claimed 640 (refs/claims/640)"
    assert alice.claim("verify", "640").code == 0  # the record is the clone's, not sub's
    assert list(sub.iterdir()) == []

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    won = run(["-C", str(alice.workdir), "claim", "641"], cwd=elsewhere, env=alice.env)
    assert won.code == 0, won
    assert alice.claim("verify", "641").code == 0
    assert list(elsewhere.iterdir()) == []

    assert {"refs/claims/640", "refs/claims/641"} <= set(remote_refs(world.repo))
    assert [ticket_state(world.repo, t).state for t in ("640", "641")] == ["held", "held"]
    rows = claims(run(["claim", "list", "--json"], cwd=sub, env=alice.env))
    assert rows["640"]["ours"] is True and rows["641"]["ours"] is True
    assert run(["release", "640"], cwd=sub, env=alice.env).code == 0
    assert ticket_state(world.repo, "640").state == "free"


def test_with_git_dir_and_work_tree_set(make_world, transport, tmp_path):
    world = make_world("git", transport)
    alice = world.agent("alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(alice.env, GIT_DIR=str(alice.workdir / ".git"),
               GIT_WORK_TREE=str(alice.workdir))

    won = run(["claim", "643"], cwd=elsewhere, env=env)
    assert won.code == 0, won
    assert won.stdout.strip() == "claimed 643 (refs/claims/643)"
    assert "refs/claims/643" in remote_refs(world.repo)
    assert ticket_state(world.repo, "643").state == "held"
    assert alice.claim("verify", "643").code == 0  # from the clone itself: GIT_DIR was its own
    assert list(elsewhere.iterdir()) == []

    rows = claims(run(["claim", "list", "--json"], cwd=elsewhere, env=env))
    assert rows["643"]["agent"] == "alice" and rows["643"]["ours"] is True


def test_linked_worktrees_are_separate_claimants(make_world, transport, tmp_path):
    world = make_world("git", transport)
    alice = world.agent("alice")
    first = add_worktree(alice, tmp_path / "trees" / "first")
    second = add_worktree(alice, tmp_path / "trees" / "second")
    first_env = dict(alice.env, GIT_CLAIM_AGENT="first-agent")
    second_env = dict(alice.env, GIT_CLAIM_AGENT="second-agent")

    won = run(["claim", "642"], cwd=first, env=first_env)
    assert won.code == 0, won
    first_git_dir = git_dir(first, first_env)
    assert first_git_dir != alice.workdir / ".git"
    # ours only where it was made: the main checkout and the second worktree, even
    # under first-agent's name, hold no record of it
    assert claims(run(["claim", "list", "--json"], cwd=first, env=first_env))["642"]["ours"]
    for cwd in (alice.workdir, second):
        rows = claims(run(["claim", "list", "--json"], cwd=cwd, env=first_env))
        assert rows["642"]["ours"] is False, (cwd, rows)
        assert run(["claim", "verify", "642"], cwd=cwd, env=first_env).code == 1, cwd
    assert run(["claim", "verify", "642"], cwd=first, env=first_env).code == 0

    before = remote_refs(world.repo)
    refused = run(["release", "642"], cwd=second, env=second_env)
    assert refused.code == 1, refused
    assert "first-agent" in refused.stderr, refused
    assert remote_refs(world.repo) == before

    released = run(["release", "642"], cwd=first, env=first_env)
    assert released.code == 0, released
    assert ticket_state(world.repo, "642").state == "free"
    assert run(["claim", "verify", "642"], cwd=first, env=first_env).code == 1


def test_default_agent_differs_between_linked_worktrees(make_world, transport, tmp_path):
    world = make_world("git", transport)
    alice = world.agent("alice")
    env = {key: value for key, value in alice.env.items() if key != "GIT_CLAIM_AGENT"}
    assert alice.git("config", "--get", "claim.agent", check=False).code == 1
    # the same directory name in two places: the agents must still differ
    one = add_worktree(alice, tmp_path / "a" / "tree")
    two = add_worktree(alice, tmp_path / "b" / "tree")

    won = run(["claim", "644", "--json"], cwd=one, env=env)
    assert won.code == 0, won
    refused = run(["claim", "644"], cwd=two, env=env)
    assert refused.code == 1, refused
    won = run(["claim", "645", "--json"], cwd=two, env=env)
    assert won.code == 0, won

    rows = claims(run(["claim", "list", "--json"], cwd=one, env=env))
    assert rows["644"]["agent"] != rows["645"]["agent"], rows
    assert rows["644"]["ours"] is True and rows["645"]["ours"] is False
    assert json.loads(won.stdout)["agent"] == rows["645"]["agent"]
