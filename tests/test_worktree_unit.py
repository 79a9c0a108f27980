"""git_claim.worktree against real git: linked worktrees made, reused, refused and
removed only when no work can be lost.

Each test builds a bare "origin" and a clone (in a folder whose name has a
space) with refs/remotes/origin/main, so there is a base commit; no servers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from git_claim.errors import RefusedError, UsageError
from git_claim.gateway.localrepo import Location, locate
from git_claim.worktree import (
    Worktree,
    branch_name,
    default_worktree_path,
    ensure_worktree,
    gc,
    git_dirs,
    our_worktrees,
    remove_worktree,
    ticket_env,
    worktree_state,
)


def git(cwd: Path, *args: str) -> str:
    completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert completed.returncode == 0, f"git {' '.join(args)}: {completed.stderr}"
    return completed.stdout.strip()


def git_ok(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / "src" / "my repo"
    work.parent.mkdir()
    git(tmp_path, "clone", "-q", str(origin), str(work))
    (work / "README").write_text("seed\n")
    git(work, "add", "README")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", "origin", "main")
    return work


def base_of(repo: Path) -> str:
    return git(repo, "rev-parse", "refs/remotes/origin/main")


def make(location: Location, repo: Path, ticket: str = "640", *, tag: str = "tag-1",
         path: Path | None = None, base: str | None = None,
         info: dict[str, Any] | None = None) -> Worktree:
    return ensure_worktree(location, ticket=ticket, branch=branch_name("claim/", ticket),
                           base=base or base_of(repo), claim_tag=tag, path=path,
                           ticket_info=info if info is not None else
                           {"title": "Fix login", "labels": ["bug", "auth"]})


def commit_in(path: Path, name: str = "work.txt") -> str:
    (path / name).write_text("work\n")
    git(path, "add", name)
    git(path, "commit", "-qm", f"add {name}")
    return git(path, "rev-parse", "HEAD")


def ticket_file(wt: Worktree) -> dict[str, Any]:
    """The ticket as the agent's command reads it: the file GIT_CLAIM_TICKET_FILE names."""
    return json.loads(Path(ticket_env(wt, {})["GIT_CLAIM_TICKET_FILE"]).read_text())


def listed(location: Location) -> list[tuple[str, str, str]]:
    """Our worktrees as the tool finds them again: (ticket, real path, branch)."""
    return [(wt.ticket, os.path.realpath(wt.path), wt.branch) for wt in our_worktrees(location)]


def own_git_dir(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--path-format=absolute", "--git-dir"))


# Creation ------------------------------------------------------------------


def test_creates_branch_at_base_with_markers_outside_the_tree(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone, tag="tag-1")
    expected = clone.parent / "my repo.claims" / "640"
    assert wt.created and wt.ticket == "640" and wt.branch == "claim/640"
    assert os.path.realpath(wt.path) == os.path.realpath(expected)
    assert git(wt.path, "rev-parse", "HEAD") == base_of(clone)
    assert git(wt.path, "symbolic-ref", "--short", "HEAD") == "claim/640"
    admin = own_git_dir(wt.path)
    assert os.path.realpath(wt.git_dir or "") == os.path.realpath(admin)
    assert listed(location) == [("640", os.path.realpath(expected), "claim/640")]
    ticket = ticket_file(wt)
    assert ticket["title"] == "Fix login" and ticket["labels"] == ["bug", "auth"]
    assert os.path.realpath(ticket_env(wt, {})["GIT_CLAIM_TICKET_FILE"]).startswith(
        os.path.realpath(admin) + os.sep)  # in the worktree's git dir, outside its tree
    assert git(wt.path, "status", "--porcelain", "--ignored") == ""
    assert not list(wt.path.rglob("*.json"))
    assert git(clone, "config", "branch.claim/640.gitClaimTicket") == "640"
    assert not git_ok(clone, "rev-parse", "--abbrev-ref", "claim/640@{upstream}")
    assert git(clone, "status", "--porcelain") == ""  # the main tree sees nothing


def test_base_rev_and_explicit_path_with_spaces(clone: Path, tmp_path: Path) -> None:
    older = base_of(clone)
    newer = commit_in(clone, "local.txt")
    target = tmp_path / "some place" / "ticket 7"
    wt = make(locate(clone), clone, "7", path=target, base="HEAD~1")
    assert os.path.realpath(wt.path) == os.path.realpath(target)
    assert git(target, "rev-parse", "HEAD") == older != newer
    assert wt.git_dir is not None
    assert git(target, "rev-parse", "claim/7") == older  # the branch starts at the base


def test_bad_base_and_bad_branch_are_usage_errors(clone: Path) -> None:
    location = locate(clone)
    with pytest.raises(UsageError, match="does not name a commit"):
        make(location, clone, base="no-such-rev")
    with pytest.raises(UsageError, match="not a valid branch name"):
        ensure_worktree(location, ticket="640", branch="claim..x/640", base=base_of(clone),
                        claim_tag="t", path=None, ticket_info={})
    assert not git_ok(clone, "rev-parse", "--verify", "refs/heads/claim/640")


# Reuse ---------------------------------------------------------------------


def test_second_ensure_reuses_and_updates_the_claim_tag(clone: Path) -> None:
    location = locate(clone)
    first = make(location, clone, tag="tag-1")
    commit_in(first.path)
    second = make(location, clone, tag="tag-2", info={"title": "New title", "labels": []})
    assert not second.created and second.path == first.path and second.branch == "claim/640"
    assert listed(location) == [("640", os.path.realpath(first.path), "claim/640")]
    assert ticket_file(second)["title"] == "New title"
    assert (first.path / "work.txt").exists()


def test_our_branch_without_worktree_is_reused(clone: Path) -> None:
    location = locate(clone)
    first = make(location, clone)
    tip = commit_in(first.path)
    git(clone, "push", "-q", "origin", "claim/640")
    git(clone, "worktree", "remove", str(first.path))
    again = make(location, clone)
    assert not again.created and git(again.path, "rev-parse", "HEAD") == tip


def test_worktree_deleted_by_hand_is_pruned_and_its_branch_reused(clone: Path) -> None:
    location = locate(clone)
    first = make(location, clone)
    tip = commit_in(first.path)
    subprocess.run(["rm", "-rf", str(first.path)], check=True)
    again = make(location, clone)
    assert not again.created and git(again.path, "rev-parse", "HEAD") == tip
    assert (again.path / "work.txt").exists()


# Refusal -------------------------------------------------------------------


def test_foreign_worktree_on_the_branch_is_refused(clone: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine by hand"
    git(clone, "worktree", "add", "-q", "-b", "claim/640", str(foreign))
    with pytest.raises(RefusedError) as refused:
        make(locate(clone), clone)
    assert str(foreign) in refused.value.message
    assert "branch claim/640 is checked out in" in refused.value.message
    assert not (clone.parent / "my repo.claims").exists()


def test_foreign_branch_without_our_mark_is_refused(clone: Path) -> None:
    git(clone, "branch", "claim/641")
    with pytest.raises(RefusedError, match="branch claim/641 exists and was not made by git"
                                           " claim"):
        make(locate(clone), clone, "641")
    assert not (clone.parent / "my repo.claims" / "641").exists()


def test_branch_checked_out_in_the_main_tree_is_refused(clone: Path) -> None:
    git(clone, "switch", "-q", "-c", "claim/642")
    with pytest.raises(RefusedError, match="the main working tree"):
        make(locate(clone), clone, "642")


def test_worktree_of_another_ticket_at_the_path_is_refused(clone: Path) -> None:
    location = locate(clone)
    other = make(location, clone, "640")
    with pytest.raises(RefusedError, match="the worktree of ticket 640"):
        make(location, clone, "641", path=other.path)


def test_non_empty_foreign_directory_is_refused_an_empty_one_used(clone: Path,
                                                                  tmp_path: Path) -> None:
    location = locate(clone)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    with pytest.raises(RefusedError, match="exists and is not a worktree of this repository"):
        make(location, clone, path=busy)
    assert (busy / "notes.txt").read_text() == "mine\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make(location, clone, path=empty).created


# Never lose work -----------------------------------------------------------


def assert_kept(location: Location, wt: Worktree, reason: str) -> None:
    safe, reasons = worktree_state(location, wt.path, wt.branch)
    assert not safe and reason in reasons
    removed, message = remove_worktree(location, ticket=wt.ticket, branch=wt.branch)
    assert not removed
    assert message.startswith(f"kept {wt.path}: ") and reason in message
    assert wt.path.is_dir()
    assert git_ok(wt.path, "rev-parse", "--verify", f"refs/heads/{wt.branch}")


def test_uncommitted_changes_are_kept(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    (wt.path / "README").write_text("edited\n")
    assert_kept(location, wt, "uncommitted changes")
    assert (wt.path / "README").read_text() == "edited\n"


def test_staged_changes_are_kept(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    (wt.path / "new.txt").write_text("x\n")
    git(wt.path, "add", "new.txt")
    assert_kept(location, wt, "uncommitted changes")


def test_untracked_files_are_kept(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    (wt.path / "scratch.txt").write_text("draft\n")
    assert_kept(location, wt, "untracked files")
    assert (wt.path / "scratch.txt").exists()


def test_unpushed_commit_is_kept_even_when_the_tree_is_clean(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    commit_in(wt.path)
    assert git(wt.path, "status", "--porcelain") == ""
    assert_kept(location, wt, "1 unpushed commit")


def test_commit_on_a_detached_head_is_kept(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    git(wt.path, "switch", "-q", "--detach")
    commit_in(wt.path)
    assert_kept(location, wt, "1 unpushed commit")


def test_locked_worktree_is_kept(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    git(clone, "worktree", "lock", str(wt.path))
    removed, message = remove_worktree(location, ticket="640", branch="claim/640")
    assert not removed and "locked" in message and wt.path.is_dir()


def test_the_current_directory_is_kept(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wt = make(locate(clone), clone)
    monkeypatch.chdir(wt.path)
    removed, message = remove_worktree(locate(), ticket="640", branch="claim/640")
    assert not removed and "it is the current directory" in message and wt.path.is_dir()


def test_pushed_and_clean_is_removed_with_its_branch(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    commit_in(wt.path)
    git(wt.path, "push", "-q", "origin", "claim/640")
    (wt.path / "build.log").write_text("ignored output\n")
    git(clone, "config", "core.excludesFile", str(clone.parent / "ignore"))
    (clone.parent / "ignore").write_text("*.log\n")
    assert worktree_state(location, wt.path, wt.branch) == (True, [])
    removed, message = remove_worktree(location, ticket="640", branch="claim/640")
    assert removed and message == f"removed {wt.path} and branch claim/640"
    assert not wt.path.exists()
    assert not git_ok(clone, "rev-parse", "--verify", "refs/heads/claim/640")
    assert not git_ok(clone, "config", "branch.claim/640.gitClaimTicket")
    assert our_worktrees(location) == []


def test_fresh_worktree_at_base_is_removed(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    assert remove_worktree(location, ticket="640", branch="claim/640") == (
        True, f"removed {wt.path} and branch claim/640")


def test_nothing_of_ours_says_nothing_and_foreign_branches_are_untouched(clone: Path) -> None:
    location = locate(clone)
    git(clone, "branch", "claim/650")
    assert remove_worktree(location, ticket="650", branch="claim/650") == (True, "")
    assert git_ok(clone, "rev-parse", "--verify", "refs/heads/claim/650")


def test_branch_left_after_the_directory_was_deleted(clone: Path) -> None:
    location = locate(clone)
    wt = make(location, clone)
    commit_in(wt.path)
    subprocess.run(["rm", "-rf", str(wt.path)], check=True)
    assert remove_worktree(location, ticket="640", branch="claim/640") == (
        False, "kept branch claim/640: 1 unpushed commit")
    git(clone, "push", "-q", "origin", "claim/640")
    assert remove_worktree(location, ticket="640", branch="claim/640") == (
        True, "removed branch claim/640")
    assert not git_ok(clone, "rev-parse", "--verify", "refs/heads/claim/640")


# gc ------------------------------------------------------------------------


def test_gc_dry_run_then_real(clone: Path) -> None:
    location = locate(clone)
    done = make(location, clone, "640")
    dirty = make(location, clone, "641")
    (dirty.path / "README").write_text("half done\n")
    held = make(location, clone, "642")
    assert sorted(wt.ticket for wt in our_worktrees(location)) == ["640", "641", "642"]

    planned = gc(location, held={"642"}, dry_run=True)
    assert planned == [
        ("640", True, f"would remove {done.path} and branch claim/640"),
        ("641", False, f"would keep {dirty.path}: uncommitted changes"),
    ]
    assert done.path.is_dir() and git_ok(clone, "rev-parse", "--verify", "claim/640")

    assert gc(location, held={"642"}, dry_run=False) == [
        ("640", True, f"removed {done.path} and branch claim/640"),
        ("641", False, f"kept {dirty.path}: uncommitted changes"),
    ]
    assert not done.path.exists() and not git_ok(clone, "rev-parse", "--verify", "claim/640")
    assert dirty.path.is_dir() and held.path.is_dir()
    assert sorted(wt.ticket for wt in our_worktrees(location)) == ["641", "642"]


def test_gc_handles_a_directory_deleted_by_hand(clone: Path) -> None:
    location = locate(clone)
    pushed = make(location, clone, "640")
    unpushed = make(location, clone, "641")
    commit_in(unpushed.path)
    for wt in (pushed, unpushed):
        subprocess.run(["rm", "-rf", str(wt.path)], check=True)
    assert gc(location, held=set(), dry_run=False) == [
        ("640", True, "removed branch claim/640"),
        ("641", False, "kept branch claim/641: 1 unpushed commit"),
    ]
    assert "my repo.claims" not in git(clone, "worktree", "list")


# Places --------------------------------------------------------------------


def test_default_path_rule(clone: Path, tmp_path: Path) -> None:
    location = locate(clone)
    assert default_worktree_path(location, "640", None) == clone.parent / "my repo.claims" / "640"
    assert default_worktree_path(location, "640", str(tmp_path / "trees")) == \
        tmp_path / "trees" / "640"
    assert default_worktree_path(location, "640", "../trees") == clone.parent / "trees" / "640"
    bare = locate(tmp_path / "origin.git")
    assert default_worktree_path(bare, "640", None) == tmp_path / "origin.claims" / "640"
    assert branch_name("claim/", "640") == "claim/640"
    assert branch_name("agents/", "T-9") == "agents/T-9"


def test_running_from_a_linked_worktree(clone: Path) -> None:
    first = make(locate(clone), clone, "640")
    inside = locate(first.path / ".")
    assert inside.worktree is not None and _real(inside.worktree) == _real(first.path)
    assert default_worktree_path(inside, "641", None) == clone.parent / "my repo.claims" / "641"
    second = make(inside, clone, "641")
    assert _real(second.path) == _real(clone.parent / "my repo.claims" / "641")
    assert sorted(wt.ticket for wt in our_worktrees(inside)) == ["640", "641"]
    assert {_real(d) for d in git_dirs(inside)} == {
        _real(clone / ".git"), _real(own_git_dir(first.path)), _real(own_git_dir(second.path))}
    assert remove_worktree(inside, ticket="641", branch="claim/641")[0]
    assert not second.path.exists() and first.path.is_dir()


def test_a_worktree_made_from_a_bare_repository(tmp_path: Path, clone: Path) -> None:
    bare = locate(tmp_path / "origin.git")
    wt = ensure_worktree(bare, ticket="9", branch="claim/9", base="main", claim_tag="t",
                         path=None, ticket_info={})
    assert _real(wt.path) == _real(tmp_path / "origin.claims" / "9")
    assert git(wt.path, "status", "--porcelain") == ""


def _real(path: Path) -> str:
    return os.path.realpath(path)


# The agent's view ----------------------------------------------------------


def test_ticket_env(clone: Path) -> None:
    wt = make(locate(clone), clone)
    env = ticket_env(wt, {"title": "Fix\x1b[31m login\n", "labels": ["bug", "auth"]})
    assert env["GIT_CLAIM_TICKET"] == "640"
    assert env["GIT_CLAIM_WORKTREE"] == str(wt.path)
    assert env["GIT_CLAIM_BRANCH"] == "claim/640"
    assert env["GIT_CLAIM_TITLE"] == "Fix?[31m login?"
    assert env["GIT_CLAIM_LABELS"] == "bug,auth"
    assert json.loads(Path(env["GIT_CLAIM_TICKET_FILE"]).read_text())["ticket"] == "640"
    assert ticket_env(Worktree("1", Path("/w"), "claim/1", True), {}) == {
        "GIT_CLAIM_TICKET": "1", "GIT_CLAIM_WORKTREE": "/w", "GIT_CLAIM_BRANCH": "claim/1",
        "GIT_CLAIM_TITLE": "", "GIT_CLAIM_LABELS": ""}


def test_foreign_worktree_at_the_path_is_refused(clone: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "by hand"
    git(clone, "worktree", "add", "-q", "--detach", str(foreign))
    with pytest.raises(RefusedError, match="there is already a worktree at .*, a worktree not"
                                           " made by git claim for 640"):
        make(locate(clone), clone, path=foreign)
    assert remove_worktree(locate(clone), ticket="640", branch="claim/640") == (True, "")
    assert foreign.is_dir()


def test_an_exported_git_dir_does_not_redirect_the_checks(clone: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GIT_DIR", str(clone / ".git"))
    location = locate()
    wt = make(location, clone)
    assert _real(wt.path) == _real(clone.parent / "my repo.claims" / "640")
    (wt.path / "README").write_text("edited\n")
    assert worktree_state(location, wt.path, wt.branch) == (False, ["uncommitted changes"])
    (wt.path / "README").write_text("seed\n")
    assert remove_worktree(location, ticket="640", branch="claim/640")[0]
    assert not wt.path.exists()
