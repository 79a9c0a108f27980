"""`git claim completion install`: put the completion scripts where the user's shell looks.

`pip install` and `pipx install` put data files under the environment's own
prefix (a venv's share/), which no shell searches: bash-completion reads
XDG_DATA_DIRS (a venv is not on it), zsh its $fpath, fish its vendor
directories. So the scripts go into the per-user directories each shell
reads without any setup, apart from zsh, which has none:

    bash  ${BASH_COMPLETION_USER_DIR:-${XDG_DATA_HOME:-~/.local/share}/bash-completion}/completions/
          (bash-completion 2.x loads git-claim from there on the first TAB, and git's
          own completion loads it to find _git_claim for `git claim`)
    zsh   ~/.zfunc/, which ~/.zshrc must put on $fpath before compinit (we say so)
    fish  ${XDG_CONFIG_HOME:-~/.config}/fish/{completions,functions,conf.d}/

Installing again is harmless: a file with the same text is left as it is,
an older script of ours is updated, and a file that is not ours (it lacks
MARKER) is left alone and reported, unless `force`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import RefusedError

MARKER = "git claim completion install"  # every script we write says how to update it
ZSH_DIR = ".zfunc"
ZSH_FPATH_LINE = "fpath=(~/.zfunc $fpath)"


@dataclass(frozen=True)
class Placed:
    path: Path
    action: str  # "wrote" (new), "updated" (an older script of ours), "unchanged", "replaced"


@dataclass(frozen=True)
class Installed:
    shell: str
    files: tuple[Placed, ...]
    next_step: str  # what the user still has to do, or ""


def user_dirs(shell: str, env: Mapping[str, str]) -> dict[str, Path]:
    """Where each folder of the shipped files goes for this user: {folder: directory}."""
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if shell == "bash":
        data = env.get("XDG_DATA_HOME") or str(home / ".local" / "share")
        base = env.get("BASH_COMPLETION_USER_DIR") or os.path.join(data, "bash-completion")
        return {"bash": Path(base) / "completions"}
    if shell == "zsh":
        return {"zsh": home / ZSH_DIR}
    if shell == "fish":
        fish = Path(env.get("XDG_CONFIG_HOME") or str(home / ".config")) / "fish"
        return {"fish/vendor_completions.d": fish / "completions",
                "fish/vendor_functions.d": fish / "functions",
                "fish/vendor_conf.d": fish / "conf.d"}
    raise ValueError(shell)


def install(shell: str, files: Mapping[str, str], *, force: bool = False,
            env: Mapping[str, str] | None = None) -> Installed:
    """Write `files` ({folder/name: text}, as shipped) for `shell` into the user's directories.

    Nothing is written when a target is someone else's file (RefusedError
    names it), so a refusal leaves no half-installed set behind.
    """
    env = os.environ if env is None else env
    dirs = user_dirs(shell, env)
    plan: list[tuple[Path, str, str]] = []
    for relative, text in files.items():
        folder, name = relative.rsplit("/", 1)
        if folder not in dirs:
            continue
        path = dirs[folder] / name
        plan.append((path, text, _action(path, text)))
    foreign = [path for path, _, action in plan if action == "replaced"]
    if foreign and not force:
        raise RefusedError(f"{foreign[0]} exists and is not git-claim's completion: left as it"
                           " is (move it away, or use --force to replace it)",
                           paths=[str(path) for path in foreign])
    for path, text, action in plan:
        if action != "unchanged":
            path.parent.mkdir(parents=True, exist_ok=True)
            from .atomicfile import write_atomic

            write_atomic(path, text)
    return Installed(shell, tuple(Placed(path, action) for path, _, action in plan),
                     _next_step(shell, env))


def _action(path: Path, text: str) -> str:
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "wrote"
    except (OSError, UnicodeDecodeError):
        return "replaced"
    if current == text:
        return "unchanged"
    return "updated" if MARKER in current else "replaced"


def _next_step(shell: str, env: Mapping[str, str]) -> str:
    """What is left for the user: for zsh, ~/.zfunc on $fpath; else opening a new shell."""
    if shell == "zsh":
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        rc = Path(env.get("ZDOTDIR") or home) / ".zshrc"
        try:
            configured = ZSH_DIR in rc.read_text(encoding="utf-8", errors="replace")
        except OSError:
            configured = False
        if not configured:
            return (f"add this line to {rc} before compinit (or before oh-my-zsh is loaded),"
                    f" then open a new shell: {ZSH_FPATH_LINE}")
    if shell == "bash":
        return ("open a new shell (this needs the bash-completion package, loaded by"
                " ~/.bashrc or /etc/bash.bashrc as most distributions do)")
    return "open a new shell"
