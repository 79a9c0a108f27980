"""Linked worktrees for won claims: one branch and one directory per ticket.

An agent that wins a ticket gets its own working tree, so that two agents in
one clone never edit the same files and the main working tree stays as the
user left it. Everything goes through the `git worktree` CLI, the same tool a
user would use to inspect or repair what we made.

What makes a worktree *ours* is a marker in that worktree's own git dir
(`<common dir>/worktrees/<id>/git-claim/worktree.json`): it lives in this
clone, it is never part of the working tree (so it is never committed), and
it disappears with the worktree. A branch is ours when
`branch.<name>.gitClaimTicket` names the ticket; we set it when we create the
branch. Anything without those marks belongs to a person and is refused,
never reused and never removed.

Never lose work: a worktree or branch is removed only after proving it holds
no uncommitted changes, no untracked files and no commits that are not on a
remote-tracking ref; otherwise it is kept and the reason names where it is.

Repository-wide commands run as `git --git-dir=<common dir>`, and commands
about one worktree as `git --git-dir=<its git dir> --work-tree=<its path>`,
so that the answer does not depend on the current directory or on a GIT_DIR
the user exported. This module never prints.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomicfile import write_atomic
from .errors import GitError, RefusedError, UsageError
from .gateway.localrepo import Location, run_git
from .safetext import clean
from .ticket import parse_ticket

MARKER_DIR = "git-claim"
MARKER_FILE = "worktree.json"
TICKET_FILE = "ticket.json"
BRANCH_MARK = "gitClaimTicket"  # branch.<name>.gitClaimTicket = <ticket>
CLAIMS_SUFFIX = ".claims"  # <main working tree>.claims/<ticket>
ADD_TIMEOUT = 600  # a checkout runs hooks (LFS, post-checkout) and may be slow
_NO_OID = "0" * 40


@dataclass(frozen=True)
class Worktree:
    ticket: str
    path: Path
    branch: str
    created: bool  # False: an existing worktree or branch of ours was reused
    git_dir: Path | None = None  # the worktree's own git dir, where the marker lives


@dataclass(frozen=True)
class _Entry:
    """One record of `git worktree list --porcelain`."""

    path: Path
    head: str
    branch: str  # short name; "" when detached or bare
    main: bool
    bare: bool = False
    locked: bool = False
    prunable: bool = False


# Running git ---------------------------------------------------------------


def _git(location: Location, args: list[str], *, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Git on the repository as a whole, wherever we are and whatever GIT_DIR says."""
    return run_git(["--git-dir", str(location.common_dir), *args], cwd=location.common_dir,
                   check=check, timeout=timeout)


def _prune(location: Location) -> None:
    """Forget worktrees whose directory was deleted by hand, so their paths and
    branches become usable again (their commits stay on the branch)."""
    _git(location, ["worktree", "prune"])


def _entries(location: Location) -> list[_Entry]:
    result = _git(location, ["worktree", "list", "--porcelain", "-z"], check=False)
    if result.returncode == 0:
        records = result.stdout.split("\0\0")
        fields_of = [record.split("\0") for record in records]
    else:  # git before 2.36 has no -z; paths with newlines are then quoted
        result = _git(location, ["worktree", "list", "--porcelain"])
        fields_of = [record.split("\n") for record in result.stdout.split("\n\n")]
    entries: list[_Entry] = []
    for fields in fields_of:
        values: dict[str, str] = {}
        for field in fields:
            if field:
                key, _, value = field.partition(" ")
                values[key] = value
        if "worktree" not in values:
            continue
        branch = values.get("branch", "")
        entries.append(_Entry(
            path=Path(values["worktree"]), head=values.get("HEAD", ""),
            branch=branch[len("refs/heads/"):] if branch.startswith("refs/heads/") else "",
            main=not entries, bare="bare" in values, locked="locked" in values,
            prunable="prunable" in values,
        ))
    return entries


def _same_path(a: Path | str, b: Path | str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(inner: Path | str, outer: Path | str) -> bool:
    inner_real, outer_real = os.path.realpath(inner), os.path.realpath(outer)
    return inner_real == outer_real or inner_real.startswith(outer_real.rstrip(os.sep) + os.sep)


def _admin_dir(location: Location, wt_path: Path) -> Path | None:
    """A linked worktree's own git dir (what `git rev-parse --git-dir` prints inside it).

    Found from the repository's side (`worktrees/<id>/gitdir` points back to
    `<path>/.git`), so it is found even when the directory is gone, and a
    `.git` file planted in a directory cannot point us at a foreign git dir.
    """
    root = location.common_dir / "worktrees"
    if not root.is_dir():
        return None
    wanted = wt_path / ".git"
    for admin in sorted(root.iterdir()):
        try:
            text = (admin / "gitdir").read_text().strip()
        except OSError:
            continue
        back = Path(text) if os.path.isabs(text) else admin / text
        if _same_path(back, wanted):
            return admin
    return None


def _branch_oid(location: Location, branch: str) -> str | None:
    result = _git(location, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
                  check=False)
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def _branch_ticket(location: Location, branch: str) -> str | None:
    """The ticket our mark on `branch` names; None for a branch we did not make."""
    result = _git(location, ["config", "--local", "--get", f"branch.{branch}.{BRANCH_MARK}"],
                  check=False)
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def _marked_branches(location: Location) -> dict[str, str]:
    """{branch: ticket} for every branch carrying our mark."""
    result = _git(location, ["config", "--local", "-z", "--get-regexp",
                             rf"^branch\..*\.{BRANCH_MARK.lower()}$"], check=False)
    found: dict[str, str] = {}
    suffix = f".{BRANCH_MARK.lower()}"
    for item in result.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key.lower().startswith("branch.") and key.lower().endswith(suffix):
            found[key[len("branch."):-len(suffix)]] = value.strip()
    return found


# Markers -------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, so a crash never leaves a half marker that reads as foreign."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def _any_marker(location: Location) -> bool:
    """Whether any linked worktree's admin dir holds a marker file.

    Every worktree of ours has one (`_marker` reads it there), so without any
    there is none of ours, and `git worktree list` need not run.
    """
    root = location.common_dir / "worktrees"
    try:
        admins = list(root.iterdir())
    except OSError:
        return False  # no linked worktree at all
    return any(os.path.lexists(admin / MARKER_DIR / MARKER_FILE) for admin in admins)


def _marker(location: Location, entry: _Entry) -> dict[str, Any] | None:
    if entry.main or entry.bare:
        return None
    admin = _admin_dir(location, entry.path)
    if admin is None:
        return None
    data = _read_json(admin / MARKER_DIR / MARKER_FILE)
    if data is None or not isinstance(data.get("ticket"), str):
        return None
    return data


# Names and places ----------------------------------------------------------


def branch_name(branch_prefix: str, ticket: str) -> str:
    """`claim/640` by default; the prefix is `claim.branchPrefix`."""
    return f"{branch_prefix}{ticket}"


def _main_entry(location: Location) -> _Entry:
    entries = _entries(location)
    if not entries:
        raise GitError("git worktree list printed no main working tree")
    return entries[0]


def default_worktree_path(location: Location, ticket: str, config_dir: str | None) -> Path:
    """Where a ticket's worktree goes unless `--worktree=PATH` says otherwise.

    `<parent of the main working tree>/<its name>.claims/<ticket>`: next to
    the main tree, never inside it (so it never shows as untracked there), and
    the same from the main tree and from any linked worktree. A bare repository
    `/srv/proj.git` gives `/srv/proj.claims/<ticket>`. `claim.worktreeDir`
    (`config_dir`) replaces the `<name>.claims` folder; a relative one is taken
    from the main working tree (from the repository itself when bare).
    """
    parse_ticket(ticket)
    main = _main_entry(location)
    home = main.path
    if main.bare and home.name == ".git":
        home = home.parent
    if config_dir:
        folder = Path(config_dir).expanduser()
        return Path(os.path.normpath(folder if folder.is_absolute() else home / folder)) / ticket
    name = home.name
    if main.bare and name.endswith(".git") and len(name) > len(".git"):
        name = name[: -len(".git")]
    return home.parent / f"{name}{CLAIMS_SUFFIX}" / ticket


def _check_branch(branch: str) -> None:
    result = run_git(["check-ref-format", f"refs/heads/{branch}"], check=False)
    if result.returncode != 0 or branch.startswith("-"):
        raise UsageError(f"{branch!r} is not a valid branch name (see claim.branchPrefix)")


# Creating or reusing -------------------------------------------------------


def ensure_worktree(location: Location, *, ticket: str, branch: str, base: str, claim_tag: str,
                    path: Path | None, ticket_info: dict[str, Any],
                    worktree_dir: str | None = None) -> Worktree:
    """The ticket's worktree, made or reused; call it only after winning the claim.

    Reused when it is ours (our marker for this ticket; the claim tag is
    updated, as a re-claim mints a new one); refused when a worktree or branch
    of the same name belongs to someone else. A new branch starts at `base`
    and gets no upstream, so `git push` never aims it at the default branch.
    A relative `path` is taken from the current directory; None means the
    default place (`worktree_dir` being `claim.worktreeDir`).
    """
    parse_ticket(ticket)
    _check_branch(branch)
    _prune(location)
    if path is None:
        target = default_worktree_path(location, ticket, worktree_dir)
    else:
        target = Path(os.path.abspath(Path(path).expanduser()))
    entries = _entries(location)
    markers = {entry.path: _marker(location, entry) for entry in entries}

    def ours(entry: _Entry) -> bool:
        marker = markers.get(entry.path)
        return marker is not None and marker.get("ticket") == ticket

    on_branch = next((entry for entry in entries if entry.branch == branch), None)
    if on_branch is not None:
        if not ours(on_branch):
            raise RefusedError(_foreign_worktree(
                on_branch, markers.get(on_branch.path), ticket,
                f"branch {branch} is checked out in", "remove that worktree or rename the branch"))
        return _reuse(location, on_branch, ticket, branch, claim_tag, ticket_info)
    mine = next((entry for entry in entries if ours(entry)), None)
    if mine is not None:  # ours, though someone switched it to another branch
        return _reuse(location, mine, ticket, branch, claim_tag, ticket_info)
    at_path = next((entry for entry in entries if _same_path(entry.path, target)), None)
    if at_path is not None:
        raise RefusedError(_foreign_worktree(at_path, markers.get(at_path.path), ticket,
                                             "there is already a worktree at",
                                             "pass --worktree=PATH elsewhere"))
    if (target.is_symlink() or target.exists()) and (
            not target.is_dir() or any(target.iterdir())):
        raise RefusedError(f"{target} exists and is not a worktree of this repository:"
                           " move it away or pass --worktree=PATH")
    start: str | None = None
    if _branch_oid(location, branch) is not None:
        if _branch_ticket(location, branch) != ticket:
            raise RefusedError(f"branch {branch} exists and was not made by git claim for"
                               f" {ticket}: rename or delete it, or set another"
                               " `git config claim.branchPrefix`")
    else:
        start = _create_branch(location, branch, ticket, base)
    _git(location, ["worktree", "add", str(target), branch], timeout=ADD_TIMEOUT)
    admin = _admin_dir(location, target)
    if admin is None:
        raise GitError(f"git worktree add made no git dir for {target}")
    _write_markers(admin, ticket=ticket, branch=branch, claim_tag=claim_tag,
                   ticket_info=ticket_info, base=start)
    listed = next((entry.path for entry in _entries(location)
                   if _same_path(entry.path, target)), target)
    return Worktree(ticket, listed, branch, start is not None, admin)


def _foreign_worktree(entry: _Entry, marker: dict[str, Any] | None, ticket: str,
                      lead: str, remedy: str) -> str:
    if entry.main:
        return f"{lead} the main working tree {entry.path}: {remedy}"
    if marker is not None:
        return (f"{lead} {entry.path}, the worktree of ticket {clean(str(marker['ticket']))}:"
                f" {remedy}")
    return f"{lead} {entry.path}, a worktree not made by git claim for {ticket}: {remedy}"


def _create_branch(location: Location, branch: str, ticket: str, base: str) -> str:
    """A new branch at `base` (its commit is returned), marked ours *before* it exists.

    The mark comes first and the ref is created only if absent, so a branch
    never exists unmarked because of us; if someone else creates it in
    between, our mark is taken back and we refuse.
    """
    if not base:
        raise UsageError("no base commit: fetch the remote or pass --base REV")
    resolved = _git(location, ["rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
                    check=False)
    commit = resolved.stdout.strip()
    if resolved.returncode != 0 or not commit:
        raise UsageError(f"base {clean(base)!r} does not name a commit")
    key = f"branch.{branch}.{BRANCH_MARK}"
    _git(location, ["config", "--local", key, ticket])
    made = _git(location, ["update-ref", "-m", f"git claim: branch for {ticket}",
                           f"refs/heads/{branch}", commit, _NO_OID], check=False)
    if made.returncode != 0:
        _git(location, ["config", "--local", "--unset", key], check=False)
        raise RefusedError(f"branch {branch} was created by someone else just now:"
                           " rename or delete it, or set another `git config claim.branchPrefix`")
    return commit


def _reuse(location: Location, entry: _Entry, ticket: str, branch: str, claim_tag: str,
           ticket_info: dict[str, Any]) -> Worktree:
    if not entry.path.is_dir():  # deleted by hand but locked, so not pruned
        raise RefusedError(f"the worktree {entry.path} of {ticket} is missing but locked:"
                           f" `git worktree unlock` it, or restore the directory")
    admin = _admin_dir(location, entry.path)
    if admin is None:
        raise GitError(f"cannot find the git dir of the worktree {entry.path}")
    marker = _read_json(admin / MARKER_DIR / MARKER_FILE) or {}
    current = entry.branch or str(marker.get("branch") or branch)
    _write_markers(admin, ticket=ticket, branch=current, claim_tag=claim_tag,
                   ticket_info=ticket_info, base=marker.get("base"))
    return Worktree(ticket, entry.path, current, False, admin)


def _write_markers(admin: Path, *, ticket: str, branch: str, claim_tag: str,
                   ticket_info: dict[str, Any], base: str | None) -> None:
    marker: dict[str, Any] = {"ticket": ticket, "claim_tag": claim_tag, "branch": branch}
    if base:
        marker["base"] = base
    _write_json(admin / MARKER_DIR / TICKET_FILE, {**ticket_info, "ticket": ticket})
    _write_json(admin / MARKER_DIR / MARKER_FILE, marker)


def worktree_git_dir(location: Location, wt: Worktree | Path) -> Path | None:
    """A linked worktree's own git dir: where an agent working in it keeps its records."""
    return _admin_dir(location, wt.path if isinstance(wt, Worktree) else wt)


def git_dirs(location: Location) -> list[Path]:
    """The common git dir and every linked worktree's own git dir.

    Ownership records are per worktree, so "which claims does this clone
    still hold" is the union of the records found in all of these.
    """
    found = [location.common_dir]
    for entry in _entries(location):
        admin = None if entry.main else _admin_dir(location, entry.path)
        if admin is not None:
            found.append(admin)
    return found


# Inspecting and removing ---------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _unpushed(location: Location, revisions: Iterable[str]) -> int:
    """Commits reachable from `revisions` and from no remote-tracking ref."""
    revs = [rev for rev in dict.fromkeys(revisions) if rev]
    if not revs:
        return 0
    result = _git(location, ["rev-list", "--count", *revs, "--not", "--remotes", "--"])
    return int(result.stdout.strip() or "0")


def _tree_reasons(location: Location, entry: _Entry | None, wt_path: Path) -> list[str]:
    reasons: list[str] = []
    if entry is not None and entry.locked:
        reasons.append("locked (git worktree unlock to allow it)")
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    if cwd is not None and _inside(cwd, wt_path):
        reasons.append("it is the current directory")
    if not wt_path.is_dir():
        return reasons
    admin = _admin_dir(location, wt_path)
    if admin is None:
        return reasons + ["it is not a worktree of this repository"]
    status = run_git(["--git-dir", str(admin), "--work-tree", str(wt_path), "status",
                      "--porcelain=v1", "-z", "--untracked-files=normal",
                      "--ignore-submodules=none"], cwd=wt_path, check=False)
    if status.returncode != 0:
        return reasons + [f"git status failed ({clean(status.stderr.strip(), 120)})"]
    changed = untracked = False
    records = status.stdout.split("\0")
    index = 0
    while index < len(records):
        record = records[index]
        index += 1
        if not record:
            continue
        if record.startswith("??"):
            untracked = True
        else:
            changed = True
            if record[:1] in "RC":
                index += 1  # the rename's source path follows
    if changed:
        reasons.append("uncommitted changes")
    if untracked:
        reasons.append("untracked files")
    return reasons


def worktree_state(location: Location, wt_path: Path, branch: str) -> tuple[bool, list[str]]:
    """(safe to remove, why not): nothing in it or on its branch exists only here.

    Unpushed means reachable from the branch or from the worktree's HEAD (a
    detached HEAD or another branch checked out there) and from no
    remote-tracking ref. Ignored files do not count, as for `git worktree remove`.
    """
    entry = next((item for item in _entries(location) if _same_path(item.path, wt_path)), None)
    reasons = _tree_reasons(location, entry, wt_path)
    heads = [entry.head] if entry is not None and entry.head else []
    if _branch_oid(location, branch) is not None:
        heads.append(f"refs/heads/{branch}")
    count = _unpushed(location, heads)
    if count:
        reasons.append(f"{_plural(count, 'unpushed commit')}")
    return (not reasons, reasons)


def _remove_branch(location: Location, branch: str, ticket: str, dry_run: bool,
                   checked_out: set[str]) -> tuple[bool, str] | None:
    """Delete our fully pushed branch; None when there is nothing of ours to delete."""
    oid = _branch_oid(location, branch)
    if oid is None or branch in checked_out or _branch_ticket(location, branch) != ticket:
        return None
    count = _unpushed(location, [oid])
    if count:
        return False, f"branch {branch}: {_plural(count, 'unpushed commit')}"
    if not dry_run:
        # Compare-and-swap on the commit just proved pushed: a commit made
        # since then makes the delete fail instead of losing it.
        _git(location, ["update-ref", "-d", f"refs/heads/{branch}", oid])
        _git(location, ["config", "--local", "--remove-section", f"branch.{branch}"],
             check=False)
    return True, f"branch {branch}"


def _cleanup(location: Location, ticket: str, branches: Iterable[str],
             dry_run: bool) -> tuple[bool, str]:
    if not dry_run:
        _prune(location)
    entries = _entries(location)
    removed: list[str] = []
    kept: list[str] = []
    wanted = list(dict.fromkeys(branches))
    gone: set[Path] = set()
    for entry in entries:
        marker = _marker(location, entry)
        if marker is None or marker.get("ticket") != ticket:
            continue
        marked = str(marker.get("branch") or "")
        if marked:
            wanted.insert(0, marked)
        safe, reasons = worktree_state(location, entry.path, entry.branch or marked)
        if not safe:
            kept.append(f"{entry.path}: {', '.join(reasons)}")
            continue
        if not dry_run:
            result = _git(location, ["worktree", "remove", str(entry.path)], check=False)
            if result.returncode != 0:  # git's own check disagreed: it wins
                kept.append(f"{entry.path}: {clean(result.stderr.strip(), 160)}")
                continue
        removed.append(str(entry.path))
        gone.add(entry.path)
    checked_out = {entry.branch for entry in entries if entry.branch and entry.path not in gone}
    # A kept worktree keeps its branch too, even if switched away from it.
    for branch in dict.fromkeys(wanted) if not kept else ():
        outcome = _remove_branch(location, branch, ticket, dry_run, checked_out)
        if outcome is not None:
            (removed if outcome[0] else kept).append(outcome[1])
    words = ("would remove", "would keep") if dry_run else ("removed", "kept")
    parts = []
    if removed:
        parts.append(f"{words[0]} {' and '.join(removed)}")
    if kept:
        parts.append(f"{words[1]} {'; '.join(kept)}")
    return (not kept, "; ".join(parts))


def remove_worktree(location: Location, *, ticket: str, branch: str,
                    dry_run: bool = False) -> tuple[bool, str]:
    """Remove the ticket's worktree and branch, unless that would lose work.

    (True, "removed <path> and branch <branch>") when nothing of ours is left,
    (False, "kept <path>: uncommitted changes") when something was kept, and
    (True, "") when this clone has no worktree or branch of ours for the ticket.
    A branch is deleted only when we made it and every commit on it is on a
    remote-tracking ref; worktrees and branches we did not make are never touched.
    """
    return _cleanup(location, ticket, [branch], dry_run)


def our_worktrees(location: Location) -> list[Worktree]:
    """Linked worktrees carrying our marker, from every worktree of this clone."""
    if not _any_marker(location):
        return []  # (the common case: no git process to ask, a few ms off `release --done`)
    found: list[Worktree] = []
    for entry in _entries(location):
        marker = _marker(location, entry)
        if marker is None:
            continue
        found.append(Worktree(str(marker["ticket"]), entry.path,
                              entry.branch or str(marker.get("branch") or ""), False,
                              _admin_dir(location, entry.path)))
    return found


def gc(location: Location, *, held: set[str], dry_run: bool) -> list[tuple[str, bool, str]]:
    """Remove our worktrees (and our branches left without one) of claims no longer held.

    `held` must name every ticket this clone still holds, whichever of its
    worktrees claimed it. Each result is (ticket, removed, message) with the
    same rule and words as remove_worktree; a dry run changes nothing.
    """
    if not dry_run:
        _prune(location)
    branches: dict[str, list[str]] = {}
    for wt in our_worktrees(location):
        branches.setdefault(wt.ticket, []).append(wt.branch)
    for branch, ticket in _marked_branches(location).items():
        if _branch_oid(location, branch) is not None:
            branches.setdefault(ticket, []).append(branch)
    results: list[tuple[str, bool, str]] = []
    for ticket in sorted(branches):
        if ticket in held:
            continue
        removed, message = _cleanup(location, ticket, branches[ticket], dry_run)
        if message:
            results.append((ticket, removed, message))
    return results


# The agent's view ----------------------------------------------------------


def ticket_env(wt: Worktree, info: dict[str, Any]) -> dict[str, str]:
    """Environment for the agent: tracker text is foreign, so it arrives as one clean line."""
    labels = info.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    env = {
        "GIT_CLAIM_TICKET": wt.ticket,
        "GIT_CLAIM_WORKTREE": str(wt.path),
        "GIT_CLAIM_BRANCH": wt.branch,
        "GIT_CLAIM_TITLE": clean(str(info.get("title") or ""), 500),
        "GIT_CLAIM_LABELS": ",".join(clean(str(label), 100) for label in labels),
    }
    if wt.git_dir is not None:
        env["GIT_CLAIM_TICKET_FILE"] = str(wt.git_dir / MARKER_DIR / TICKET_FILE)
    return env
