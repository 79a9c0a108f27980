"""Where the pre-push fence may be written: a hooks directory of this repository alone.

A hook runs for every repository that uses its directory. A `core.hooksPath`
from the global or system config (or from `git -c`) is used by every
repository, and a directory inside a work tree travels with the repository's
content. A fence written there blocks pushes in repositories and shells that
never asked for it, or edits a file that gets committed. What belongs to one
repository alone is its git directory (where `.git/hooks` lives), so the
installer writes only there and says what to do instead everywhere else.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .errors import UsageError
from .gateway.localrepo import Location, run_git

# Config scopes that belong to this repository; any other (global, system,
# command, or one a future git adds) is treated as shared.
REPOSITORY_SCOPES = frozenset({"local", "worktree"})
SCOPE_NAMES = {
    "global": "your global git config",
    "system": "the system git config",
    "command": "the command line or the GIT_CONFIG_* environment",
}


class SharedHooksError(UsageError):
    """The hooks directory is not this repository's alone: a hook there reaches others.

    A usage error, not a "no": nothing about the claims was asked, and only a
    change of configuration (hooks of the repository's own) makes it work.
    """

    kind = "shared-hooks"


class Sharing(Enum):
    PRIVATE = "private"  # inside this repository's git directory
    SCOPE = "scope"  # an absolute core.hooksPath from a config every repository reads
    WORKTREE = "worktree"  # inside a work tree: shared through the repository
    OUTSIDE = "outside"  # elsewhere: other repositories may use it too


@dataclass(frozen=True)
class HooksDir:
    path: Path  # as git runs hooks from it, absolute
    setting: str | None  # core.hooksPath as configured; None when unset
    scope: str | None  # the config scope of that setting
    sharing: Sharing
    worktree: Path | None  # the work tree it lies in (Sharing.WORKTREE)
    private: Path  # this repository's own hooks directory, for the advice


def find_hooks_dir(location: Location) -> HooksDir:
    """The hooks directory git uses here, and whether it is this repository's alone."""
    cwd = location.worktree or location.git_dir
    path = Path(run_git(["rev-parse", "--path-format=absolute", "--git-path", "hooks"],
                        cwd=cwd).stdout.strip())
    found = run_git(["config", "--show-scope", "--get", "core.hooksPath"], cwd=cwd, check=False)
    scope, _, setting = found.stdout.rstrip("\n").partition("\t")
    if found.returncode != 0 or not scope:
        scope, setting = "", ""
    real = path.resolve()
    worktree = None
    if scope and scope not in REPOSITORY_SCOPES and not _relative(setting):
        sharing = Sharing.SCOPE
    elif any(real.is_relative_to(folder.resolve())
             for folder in (location.common_dir, location.git_dir)):
        sharing = Sharing.PRIVATE
    else:
        worktree = _worktree_holding(location, real)
        sharing = Sharing.WORKTREE if worktree else Sharing.OUTSIDE
    return HooksDir(path=path, setting=setting or None, scope=scope or None, sharing=sharing,
                    worktree=worktree, private=location.common_dir.resolve() / "hooks")


def _relative(setting: str) -> bool:
    """A relative core.hooksPath: each repository resolves it from its own top directory.

    So even from the global config it names a directory per repository, and
    only where it lands decides whether that directory is the repository's own.
    """
    return not (os.path.isabs(setting) or setting.startswith(("~", "%(prefix)")))


def _worktree_holding(location: Location, real: Path) -> Path | None:
    """The work tree of this repository that `real` lies in, if any (linked ones too)."""
    listing = run_git(["worktree", "list", "--porcelain"],
                      cwd=location.worktree or location.git_dir, check=False).stdout
    trees = [Path(line[len("worktree "):]) for line in listing.splitlines()
             if line.startswith("worktree ")]
    if location.worktree:
        trees.append(location.worktree)
    for tree in trees:
        if real.is_relative_to(tree.resolve()) and tree.resolve() != location.common_dir.resolve():
            return tree
    return None


def refusal(hooks: HooksDir, *, ours_there: bool) -> SharedHooksError:
    """One line: why the fence does not go into `hooks`, and what to do instead."""
    where = str(hooks.path)
    real = hooks.path.resolve()
    if real != hooks.path:
        where += f" (a link to {real})"
    if hooks.sharing is Sharing.SCOPE:
        source = SCOPE_NAMES.get(hooks.scope or "", f"the {hooks.scope} git config")
        why = (f"core.hooksPath comes from {source}, so every repository runs the hooks"
               f" in {where}")
    elif hooks.sharing is Sharing.WORKTREE:
        why = (f"the hooks directory {where} is inside the work tree {hooks.worktree},"
               " so it is shared through the repository")
    else:
        why = (f"the hooks directory {where} is outside this repository's git directory,"
               " so other repositories may use it too")
    instead = ("; give this repository hooks of its own"
               f" (git config --local core.hooksPath {shlex.quote(str(hooks.private))})"
               " and install again, or use the pre-commit framework (see git-claim(1))")
    earlier = ("; `git claim hook uninstall` removes the fence installed there earlier"
               if ours_there else "")
    return SharedHooksError(f"{why}{instead}{earlier}", hooks_path=str(hooks.path),
                            sharing=hooks.sharing.value, scope=hooks.scope)


def tracked_text(hooks: HooksDir, name: str) -> str | None:
    """The repository's own version (the index's) of the file `name` in `hooks`, if tracked."""
    if hooks.worktree is None:
        return None
    relative = (hooks.path.resolve() / name).relative_to(hooks.worktree.resolve())
    shown = run_git(["show", f":{relative.as_posix()}"], cwd=hooks.worktree, check=False)
    return shown.stdout if shown.returncode == 0 else None
