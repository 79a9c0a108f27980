"""The pre-push fence: a lost claim's branch must not reach the remote through us.

The hook reads git's pre-push lines (`<local ref> <local sha> <remote ref>
<remote sha>`), or the pre-commit framework's PRE_COMMIT_* variables, and
refuses a push to `refs/heads/<branch prefix><ticket>` unless the claim on
that ticket is still ours on the remote. Deletions and tags pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .atomicfile import write_atomic
from .errors import ClaimError, RefusedError, UsageError
from .gateway.localrepo import run_git
from .hookdir import SharedHooksError, Sharing, find_hooks_dir, refusal, tracked_text
from .liveness import verify
from .session import Session
from .ticket import parse_ticket

MARKER = "# git-claim pre-push fence"
CHAINED_SUFFIX = ".pre-git-claim"
ZERO = "0" * 40
# A shell without git-claim on PATH (another venv, a GUI client, a cron job)
# must still be able to push: the fence then warns and steps aside. Every
# other failure of the fence, a broken installation included, still blocks.
HOOK_SCRIPT = f"""#!/bin/sh
{MARKER}: installed by `git claim hook install`; `git claim hook uninstall` removes it.
input=$(cat)
if command -v git-claim >/dev/null 2>&1; then
    printf '%s\\n' "$input" | git claim hook pre-push "$@" || exit 1
else
    echo "git-claim pre-push fence: git-claim is not on PATH; pushing without the fence" >&2
fi
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
                view = verify(session, ticket)
                verdicts[ticket] = _stale_token(ticket, view.epoch)
            except RefusedError as refusal:
                verdicts[ticket] = refusal.message
        if verdicts[ticket]:
            refusals.append(f"refusing to push {update.remote_ref}: {verdicts[ticket]}")
    return refusals


def _stale_token(ticket: str, epoch: int) -> str | None:
    """The fencing token: a command of an earlier claim may not push for a later one.

    `git claim run` hands its command the claim's epoch (GIT_CLAIM_EPOCH). A
    process left over from an earlier claim of the same ticket, by the same
    agent, would otherwise pass: the current claim is ours too.
    """
    token = os.environ.get("GIT_CLAIM_EPOCH", "")
    if os.environ.get("GIT_CLAIM_TICKET") != ticket or not token.isdigit():
        return None
    if int(token) != epoch:
        return (f"this process works on claim {token} of {ticket}, and the claim in force"
                f" is {epoch} (GIT_CLAIM_EPOCH): its work belongs to an earlier claim")
    return None


def _is_ours(path: Path) -> bool:
    return path.is_file() and MARKER in path.read_text(errors="replace")


def install_hook(session: Session) -> dict[str, str]:
    """Write the fence into this repository's own hooks directory, chaining a foreign hook.

    Refuses (SharedHooksError) a hooks directory that other repositories or
    the repository's content share: see hookdir.
    """
    hooks = find_hooks_dir(session.location)
    path = hooks.path / "pre-push"
    if hooks.sharing is not Sharing.PRIVATE:
        raise refusal(hooks, ours_there=_is_ours(path))
    hooks.path.mkdir(parents=True, exist_ok=True)
    chained = Path(str(path) + CHAINED_SUFFIX)
    result = {"path": str(path)}
    if path.exists() or path.is_symlink():
        if not _is_ours(path):
            if chained.exists() or chained.is_symlink():
                raise ClaimError(f"{path} exists and so does {chained}: refusing to overwrite"
                                 " either; merge them by hand")
            path.rename(chained)
            result["chained"] = str(chained)
    elif chained.exists():
        result["chained"] = str(chained)
    # Replaced, never written through: a link named pre-push may lead to a shared file.
    write_atomic(path, HOOK_SCRIPT, mode=0o755)
    return result


def uninstall_hook(session: Session) -> dict[str, str]:
    """Remove our fence and put back the hook it chained to, wherever git's hooks are.

    Only a file we wrote is removed, also from a shared hooks directory: that
    is how a fence installed there by an older version is taken back out, and
    it puts back what was there before. A fence the repository itself tracks
    is refused: removing it is a change for every clone, made with git rm and
    a commit, not by this command.
    """
    hooks = find_hooks_dir(session.location)
    path = hooks.path / "pre-push"
    chained = Path(str(path) + CHAINED_SUFFIX)
    if not _is_ours(path):
        raise RefusedError(f"no git-claim hook at {path}")
    committed = tracked_text(hooks, path.name)
    if committed is not None and MARKER in committed:
        raise SharedHooksError(f"the fence {path} is tracked by the repository, so removing"
                               " it changes every clone; remove it with git rm and commit",
                               hooks_path=str(hooks.path), sharing=hooks.sharing.value,
                               scope=hooks.scope)
    path.unlink()
    if chained.exists() or chained.is_symlink():
        chained.rename(path)
    return {"path": str(path)}
