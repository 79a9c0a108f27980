"""A reaped agent's worktree and branch survive: the reaper frees the ticket, never the work.

The reap runs from the owner's own clone (its main working tree), the place
where a careless cleanup would most easily reach the owner's worktree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from agents import with_env

REAPER_CLOCK = "100"  # seconds ahead: the owner's beats look older than the TTL to the reaper


def reap_until_won(agent, ticket: str) -> None:
    """Reap `ticket`; a beat may land between the reaper's read and its write, so retry."""
    agent.git("config", "claim.heartbeat", "0.3s")  # the reaper refuses a TTL below the beat
    for _ in range(20):
        reaped = agent.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--ticket", ticket,
                           "--json", env=with_env(agent, GIT_CLAIM_CLOCK_OFFSET=REAPER_CLOCK))
        assert reaped.code == 0, reaped
        if reaped.json()["reaped"]:
            return
    raise AssertionError("the reaper never won against the beats")


WORK = """set -e
echo draft > draft.txt
echo saved > saved.txt
git add saved.txt
git commit -qm 'saved but not pushed'
echo working
sleep 60
"""


def test_reaping_a_running_agent_keeps_its_worktree_branch_and_commits(make_world):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    run = alice.popen("claim", "run", "645", "--worktree", "--interval", "0.5s", "--grace", "1s",
                      "--json", "--", "sh", "-c", WORK)
    assert run.stdout.readline().strip() == "working"

    reap_until_won(alice, "645")  # from alice's own clone
    out, err = run.communicate(timeout=60)
    assert run.returncode == 4, (out, err)
    assert "645 is no longer yours (reaped by alice" in err
    tree = Path(alice.workdir.parent / f"{alice.workdir.name}.claims" / "645")
    assert tree.is_dir(), (out, err)
    assert (tree / "draft.txt").read_text() == "draft\n"
    log = alice.git("log", "-1", "--format=%s", "claim/645").stdout.strip()
    assert log == "saved but not pushed"

    # gc removes worktrees of claims no longer held, but never one with unsaved work
    dry = alice.claim("gc", "--dry-run")
    assert dry.code == 0 and "would keep" in dry.stdout and str(tree) in dry.stdout, dry
    gc = alice.claim("gc")
    assert gc.code == 0 and "kept" in gc.stdout and str(tree) in gc.stdout, gc
    assert (tree / "draft.txt").is_file() and (tree / "saved.txt").is_file()
    assert alice.git("rev-parse", "--verify", "-q", "refs/heads/claim/645").stdout.strip()

    # the owner's late release is refused and leaves the work alone too
    late = alice.release("645", "--done")
    assert late.code == 1 and "no longer yours" in late.stderr, late
    assert (tree / "draft.txt").is_file()


def test_a_reaped_claim_taken_by_another_leaves_the_first_owners_worktree(make_world):
    """The ticket moves on; the first owner's worktree and branch stay where they were."""
    world = make_world("path", "libgit2")
    alice, bob = world.agent("alice"), world.agent("bob")
    made = alice.claim("646", "--worktree", "--json")
    assert made.code == 0, made
    tree = Path(made.json()["worktree"])
    (tree / "notes.txt").write_text("half done\n")

    reap_until_won(bob, "646")
    assert bob.claim("646").code == 0
    assert (tree / "notes.txt").read_text() == "half done\n"
    gc = alice.claim("gc", "--json")
    assert gc.code == 0, gc
    assert tree.is_dir() and (tree / "notes.txt").is_file()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tree, env=alice.env,
                            capture_output=True, text=True, check=True).stdout
    assert "notes.txt" in status
