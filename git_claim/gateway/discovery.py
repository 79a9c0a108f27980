"""Where the repository is and what its configuration says, asked of the `git` CLI.

Discovery and configuration go through git itself on purpose: pygit2's
discovery ignores GIT_DIR and its config ignores `git -c` settings, and a git
subcommand must see exactly what git sees.

This module imports no pygit2, so that a command can start its two git
processes (`rev-parse` and `config --list`) before it loads libgit2: they run
beside the import (see `start` and session.open_session) instead of after it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import GitError

TIMEOUT = 60.0  # seconds, for one git command
_WHERE = ["rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir",
          "--is-bare-repository", "--show-toplevel"]
_CONFIG = ["config", "-z", "--list"]


@dataclass(frozen=True)
class Location:
    git_dir: Path  # per worktree: where this worktree's ownership records live
    common_dir: Path  # shared objects and refs
    worktree: Path | None  # None for a bare repository


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    return env


def run_git(args: list[str], *, cwd: Path | None = None, input_text: str | None = None,
            timeout: float = TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git with no prompts on a non-terminal; raise GitError with git's own words."""
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, input=input_text, capture_output=True, text=True,
            timeout=timeout, env=_git_env(), errors="replace",
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {int(timeout)}s") from None
    if check and completed.returncode != 0:
        raise GitError(first_line(completed.stderr) or f"git {args[0]} failed")
    return completed


def first_line(text: str) -> str:
    """The most useful single line of git's stderr (fatal/error lines first)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Host key verification failed", "Permission denied")):
            return line.rstrip(".")
    for index, line in enumerate(lines):
        if line.startswith(("fatal:", "error:")):
            found = line.split(":", 1)[1].strip()
            if found.endswith(":") and index + 1 < len(lines):
                found = f"{found} {lines[index + 1]}"
            return found
    return lines[-1] if lines else ""


def locate(cwd: Path | None = None) -> Location:
    """Find the repository as git does (GIT_DIR, -C, subdirectories, linked worktrees)."""
    result = run_git(_WHERE, cwd=cwd, check=False)
    return _location(result.returncode, result.stdout, result.stderr)


def _location(returncode: int, stdout: str, stderr: str) -> Location:
    lines = stdout.splitlines()
    if returncode != 0 and len(lines) < 3:
        raise GitError(first_line(stderr) or "not a git repository")
    bare = len(lines) > 2 and lines[2] == "true"
    worktree = Path(lines[3]) if not bare and len(lines) > 3 else None
    return Location(git_dir=Path(lines[0]), common_dir=Path(lines[1]), worktree=worktree)


def read_config(location: Location) -> dict[str, list[str]]:
    """Every config value git sees here, including `git -c` ones; keys as git prints them."""
    result = run_git(["--git-dir", str(location.git_dir), *_CONFIG], check=False)
    return _config(result.stdout)


def _config(listing: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for entry in listing.split("\0"):
        if not entry:
            continue
        key, _, value = entry.partition("\n")
        values.setdefault(key.lower() if key.count(".") < 2 else _lower_ends(key), []).append(value)
    return values


def _lower_ends(key: str) -> str:
    section, _, rest = key.partition(".")
    subsection, _, name = rest.rpartition(".")
    return f"{section.lower()}.{subsection}.{name.lower()}"


class Discovery:
    """`locate` and `read_config` at once: both git processes start here, run side by side,
    and are read by `result()`, so the caller can do other work (load libgit2) meanwhile.

    The configuration is read from `cwd` the way `rev-parse` finds the repository there
    (the same GIT_DIR, the same discovery), so it is the configuration of the repository
    `result()` names: what `read_config(locate(cwd))` returns.
    """

    def __init__(self, cwd: Path | None = None) -> None:
        env = _git_env()
        self._where = _spawn(_WHERE, cwd, env)
        try:
            self._config = _spawn(_CONFIG, cwd, env)
        except BaseException:
            _finish(self._where, _WHERE)
            raise

    def result(self) -> tuple[Location, dict[str, list[str]]]:
        try:
            out, err, code = _finish(self._where, _WHERE)
        except BaseException:
            _finish(self._config, _CONFIG)
            raise
        listing, _, _ = _finish(self._config, _CONFIG)  # both reaped before any error
        return _location(code, out, err), _config(listing)


def start(cwd: Path | None = None) -> Discovery:
    """Start finding the repository at `cwd` and reading its configuration."""
    return Discovery(cwd)


def _spawn(args: list[str], cwd: Path | None, env: dict[str, str]) -> subprocess.Popen[str]:
    try:
        return subprocess.Popen(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace")
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None


def _finish(process: subprocess.Popen[str], args: list[str]) -> tuple[str, str, int]:
    """(stdout, stderr, exit status); the process is never left running."""
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise GitError(f"git {args[0]} did not finish within {int(TIMEOUT)}s") from None
    except BaseException:
        process.kill()
        process.wait()
        raise
    return out, err, process.returncode
