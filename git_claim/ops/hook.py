"""`git claim hook` (the client's pre-push fence) and `git claim guard` (the server's hook).

Both install a hook that must never clobber a user's, and both judge pushes:
the fence refuses a lost claim's branch, the guard refuses deletes and
rewrites of claims. The verdicts are lists of refusals; empty lets the push on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ..errors import ExitCode, GitError, UsageError

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["GuardInstallRequest", "GuardInstalled", "HookInstalled", "HookRemoved", "Verdict",
           "check_push", "guard_install", "guard_pre_receive", "guard_update", "hook_install",
           "hook_uninstall"]


@dataclass(frozen=True)
class HookInstalled:
    path: str
    chained: str | None = None  # the user's own hook, kept and run after ours
    exit_code: ExitCode = ExitCode.OK


@dataclass(frozen=True)
class HookRemoved:
    path: str
    exit_code: ExitCode = ExitCode.OK


@dataclass(frozen=True)
class Verdict:
    """A hook's judgement of one push: one line per refused ref."""

    refusals: tuple[str, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.NO if self.refusals else ExitCode.OK


def hook_install(session: Session) -> HookInstalled:
    """The fence in this repository's own hooks; SharedHooksError (exit 2) elsewhere."""
    from ..fence import install_hook

    found = install_hook(session)
    return HookInstalled(found["path"], found.get("chained"))


def hook_uninstall(session: Session) -> HookRemoved:
    """Remove our fence (only a file we wrote), restoring a hook it chained to."""
    from ..fence import uninstall_hook

    return HookRemoved(uninstall_hook(session)["path"])


def check_push(session: Session, stdin: TextIO) -> Verdict:
    """The fence on git's pre-push input (or the pre-commit framework's variables)."""
    from ..fence import check_push as fence
    from ..fence import pushed_refs

    return Verdict(tuple(fence(session, pushed_refs(stdin))))


@dataclass(frozen=True)
class GuardInstallRequest:
    repository: str  # a bare repository (its path as given)
    executable: str  # the git-claim the hook runs


@dataclass(frozen=True)
class GuardInstalled:
    path: str
    executable: str
    exit_code: ExitCode = ExitCode.OK


def guard_install(request: GuardInstallRequest) -> GuardInstalled:
    """Write the guard as the repository's pre-receive hook; never replace another hook."""
    from pathlib import Path

    from ..gateway.localrepo import run_git
    from ..guard import install

    found = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"],
                    cwd=Path(request.repository).absolute(), check=False)
    if found.returncode != 0:
        raise UsageError(f"{request.repository}: not a git repository")
    try:
        path = install(found.stdout.strip(), request.executable)
    except FileExistsError as exists:
        raise GitError(f"{exists.args[0]} exists and is not the guard; add the line"
                       f" `'{request.executable}' guard pre-receive` to it (it reads the same"
                       " input), or move it aside") from None
    return GuardInstalled(path, request.executable)


def guard_pre_receive(stdin: TextIO) -> Verdict:
    """Judge a whole push from git's pre-receive input."""
    from ..guard import judge, parse_pre_receive

    return Verdict(tuple(judge(parse_pre_receive(stdin))))


def guard_update(ref: str, old: str, new: str) -> Verdict:
    """Judge one ref, as an update hook is called."""
    from ..guard import PushedUpdate, judge

    return Verdict(tuple(judge([PushedUpdate(ref, old, new)])))
