"""The pre-push fence: a lost claim's branch must not reach the remote through us.

The hook reads git's pre-push lines (`<local ref> <local sha> <remote ref>
<remote sha>`), or the pre-commit framework's PRE_COMMIT_* variables, and
refuses a push to `refs/heads/<branch prefix><ticket>` unless the claim on
that ticket is still ours on the remote. Deletions and tags pass.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

from .errors import ClaimError, RefusedError, UsageError
from .gateway.localrepo import run_git
from .liveness import verify
from .session import Session
from .ticket import parse_ticket

MARKER = "# git-claim pre-push fence"
CHAINED_SUFFIX = ".pre-git-claim"
ZERO = "0" * 40
HOOK_SCRIPT = f"""#!/bin/sh
{MARKER}: installed by `git claim hook install`; `git claim hook uninstall` removes it.
input=$(cat)
printf '%s\\n' "$input" | git claim hook pre-push "$@" || exit 1
chained="$0{CHAINED_SUFFIX}"
if [ -x "$chained" ]; then
    printf '%s\\n' "$input" | "$chained" "$@" || exit $?
fi
exit 0
"""


@dataclass(frozen=True)
class PushedRef:
    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str

    @property
    def deletes(self) -> bool:
        return self.local_ref == "(delete)" or self.local_sha.strip("0") == ""


def pushed_refs(stream: TextIO) -> list[PushedRef]:
    lines: Iterable[str] = [] if stream.isatty() else stream.read().splitlines()
    found = [PushedRef(*line.split()) for line in lines if len(line.split()) == 4]
    if not found and os.environ.get("PRE_COMMIT_REMOTE_BRANCH"):
        found.append(PushedRef(os.environ.get("PRE_COMMIT_LOCAL_BRANCH", "HEAD"),
                               os.environ.get("PRE_COMMIT_TO_REF", "1" * 40),
                               os.environ["PRE_COMMIT_REMOTE_BRANCH"],
                               os.environ.get("PRE_COMMIT_FROM_REF", ZERO)))
    return found


def ticket_of_branch(session: Session, ref: str) -> str | None:
    """refs/heads/claim/640 (or claim/640) -> 640; None for other branches."""
    name = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
    prefix = session.settings.branch_prefix
    if ref.startswith("refs/") and not ref.startswith("refs/heads/"):
        return None
    if not prefix or not name.startswith(prefix):
        return None
    try:
        return parse_ticket(name[len(prefix):])
    except UsageError:
        return None


def ticket_of_current_branch(session: Session) -> str:
    result = run_git(["symbolic-ref", "-q", "HEAD"], cwd=session.location.worktree, check=False)
    ticket = ticket_of_branch(session, result.stdout.strip()) if result.returncode == 0 else None
    if ticket is None:
        raise UsageError(f"the current branch is not a claim branch"
                         f" ({session.settings.branch_prefix}<ticket>); name the ticket")
    return ticket


def check_push(session: Session, updates: list[PushedRef]) -> list[str]:
    """One message per refused ref; empty when the push may go on."""
    refusals: list[str] = []
    verdicts: dict[str, str | None] = {}
    for update in updates:
        if update.deletes:
            continue
        ticket = ticket_of_branch(session, update.remote_ref)
        if ticket is None:
            continue
        if ticket not in verdicts:
            try:
                verify(session, ticket)
                verdicts[ticket] = None
            except RefusedError as refusal:
                verdicts[ticket] = refusal.message
        if verdicts[ticket]:
            refusals.append(f"refusing to push {update.remote_ref}: {verdicts[ticket]}")
    return refusals


def _hooks_dir(session: Session) -> Path:
    result = run_git(["rev-parse", "--path-format=absolute", "--git-path", "hooks"],
                     cwd=session.location.worktree or session.location.git_dir)
    return Path(result.stdout.strip())


def install_hook(session: Session) -> dict[str, str]:
    hooks = _hooks_dir(session)
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / "pre-push"
    chained = Path(str(path) + CHAINED_SUFFIX)
    result = {"path": str(path)}
    if path.exists() or path.is_symlink():
        text = path.read_text(errors="replace") if path.is_file() else ""
        if MARKER not in text:
            if chained.exists():
                raise ClaimError(f"{path} exists and so does {chained}: refusing to overwrite"
                                 " either; merge them by hand")
            path.rename(chained)
            result["chained"] = str(chained)
    elif chained.exists():
        result["chained"] = str(chained)
    path.write_text(HOOK_SCRIPT)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return result


def uninstall_hook(session: Session) -> dict[str, str]:
    path = _hooks_dir(session) / "pre-push"
    chained = Path(str(path) + CHAINED_SUFFIX)
    if not path.is_file() or MARKER not in path.read_text(errors="replace"):
        raise RefusedError(f"no git-claim hook at {path}")
    path.unlink()
    if chained.exists():
        chained.rename(path)
    return {"path": str(path)}
