"""libgit2 reads the configuration git reads: no system file under GIT_CONFIG_NOSYSTEM.

git honours GIT_CONFIG_NOSYSTEM; libgit2 does not read the variable. The
tool blanks libgit2's system search path itself when the variable is true
(git_claim/gateway/libgit2_env.py), and the test set-up does the same for
pygit2 in the test process (tests/conftest.py, `hermetic_libgit2`).

A test cannot write /etc/gitconfig, so the system file is simulated the only
way libgit2 allows: a small wrapper process points libgit2's system search
path at a directory of the test's, then runs the installed `git-claim` in
that same process. That file rewrites the remote's URL to a port where
nothing listens; a command that reads it cannot reach the remote.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agents import Outcome, ticket_state

WRAPPER = r"""
import sys
from importlib.metadata import entry_points

import pygit2
from pygit2.enums import ConfigLevel

pygit2.settings.search_path[ConfigLevel.SYSTEM] = sys.argv[1]  # stands in for /etc
(entry,) = entry_points(group="console_scripts", name="git-claim")
sys.argv = ["git-claim", *sys.argv[2:]]
entry.load()()
"""

NOWHERE = "git://127.0.0.1:1/nowhere.git"  # port 1: nothing listens there


def claim_with_a_system_file(agent, etc, ticket: str, env: dict[str, str]) -> Outcome:
    done = subprocess.run([sys.executable, "-c", WRAPPER, str(etc), ticket], cwd=agent.workdir,
                          env=env, capture_output=True, text=True, timeout=120)
    return Outcome(done.returncode, done.stdout, done.stderr)


def test_the_test_process_reads_no_system_config(hermetic):
    import pygit2
    from pygit2.enums import ConfigLevel

    paths = pygit2.settings.search_path
    assert paths[ConfigLevel.SYSTEM] == "" and paths[ConfigLevel.PROGRAMDATA] == ""
    assert paths[ConfigLevel.GLOBAL] == str(hermetic)
    with pytest.raises((OSError, pygit2.GitError)):
        pygit2.Config.get_system_config()


def test_no_system_config_reaches_libgit2_under_nosystem(make_world, tmp_path):
    world = make_world("git", "libgit2")
    alice = world.agent("alice")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "gitconfig").write_text(f'[url "{NOWHERE}"]\n\tinsteadOf = {world.repo.url}\n')

    # the premise: without GIT_CONFIG_NOSYSTEM the tool's libgit2 reads the file
    reading = {k: v for k, v in alice.env.items() if k != "GIT_CONFIG_NOSYSTEM"}
    misled = claim_with_a_system_file(alice, etc, "640", reading)
    assert misled.code == 3, misled
    assert ticket_state(world.repo, "640").state == "free"

    assert alice.env["GIT_CONFIG_NOSYSTEM"] == "1"
    for value in ("1", "true", "yes"):
        ticket = f"641-{value}"
        won = claim_with_a_system_file(alice, etc, ticket, {**alice.env,
                                                              "GIT_CONFIG_NOSYSTEM": value})
        assert won.code == 0, (value, won)
        assert ticket_state(world.repo, ticket).state == "held"
    for value in ("0", "false"):  # git reads the system file then, and so does libgit2
        skipped = claim_with_a_system_file(alice, etc, "642",
                                           {**alice.env, "GIT_CONFIG_NOSYSTEM": value})
        assert skipped.code == 3, (value, skipped)
