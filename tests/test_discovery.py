"""gateway.discovery against real git: the two git processes a session starts side by
side (`start`) find the same repository and the same configuration as `locate` and then
`read_config` on the git dir it names, wherever the command runs; no servers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from git_claim.errors import GitError
from git_claim.gateway.discovery import locate, read_config, start


def git(cwd: Path, *args: str) -> str:
    completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert completed.returncode == 0, f"git {' '.join(args)}: {completed.stderr}"
    return completed.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work = tmp_path / "my repo"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "sub").mkdir()
    (work / "README").write_text("seed\n")
    git(work, "add", "README")
    git(work, "commit", "-qm", "seed")
    git(work, "config", "claim.agent", "main-agent")
    git(work, "config", "Remote.Origin.URL", "git://example.invalid/r.git")
    return work


def both_ways(cwd: Path) -> None:
    location = locate(cwd)
    assert start(cwd).result() == (location, read_config(location))


def test_side_by_side_reads_what_one_after_the_other_reads(repo: Path) -> None:
    both_ways(repo)
    both_ways(repo / "sub")
    both_ways(repo / ".git")
    location, config = start(repo / "sub").result()
    assert location.worktree == repo.resolve()
    assert config["claim.agent"] == ["main-agent"]
    assert config["remote.Origin.url"] == ["git://example.invalid/r.git"]  # git's own spelling


def test_a_linked_worktree_with_its_own_configuration(repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "other", str(linked))
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(linked, "config", "--worktree", "claim.agent", "linked-agent")
    both_ways(linked)
    location, config = start(linked).result()
    assert location.git_dir != location.common_dir
    assert config["claim.agent"] == ["main-agent", "linked-agent"]


def test_git_dir_and_git_c_are_seen(repo: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'claim.ttl'='1h'")
    both_ways(elsewhere)
    location, config = start(elsewhere).result()
    assert location.common_dir == (repo / ".git").resolve()
    assert config["claim.ttl"] == ["1h"]


def test_no_repository_is_a_git_error(tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(GitError, match="not a git repository"):
        start(outside).result()
    with pytest.raises(GitError, match="not a git repository"):
        locate(outside)
