"""`git claim guard`: the server-side guard, installed by an admin on a bare repository."""

from __future__ import annotations

import sys

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option
from .output import emit_json, reporting


@claim_group.group("guard", context_settings=CONTEXT_SETTINGS)
def guard_group() -> None:
    """Server side: refuse pushes that delete or rewrite claims (a hook on the remote)."""


@guard_group.command("install", context_settings=CONTEXT_SETTINGS)
@click.argument("repository", required=False, default=".")
@json_option
def guard_install_command(repository: str, as_json: bool) -> None:
    """Install the guard as REPOSITORY's pre-receive hook (a bare repository; default: here).

    An existing pre-receive hook that is not ours is never replaced (exit 3):
    call `git claim guard pre-receive` from it instead.
    """
    with reporting(as_json=as_json, command="git claim guard install"):
        import os
        import shutil
        from pathlib import Path

        from ..errors import GitError, UsageError
        from ..gateway.localrepo import run_git
        from ..guard import install

        found = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir"],
                        cwd=Path(repository).absolute(), check=False)
        if found.returncode != 0:
            raise UsageError(f"{repository}: not a git repository")
        executable = shutil.which("git-claim") or os.path.abspath(sys.argv[0])
        try:
            path = install(found.stdout.strip(), executable)
        except FileExistsError as exists:
            raise GitError(f"{exists.args[0]} exists and is not the guard; add the line"
                           f" `'{executable}' guard pre-receive` to it (it reads the same"
                           " input), or move it aside") from None
        if as_json:
            emit_json({"ok": True, "path": path, "executable": executable})
        else:
            click.echo(f"installed {path}")


@guard_group.command("pre-receive", context_settings=CONTEXT_SETTINGS)
def guard_pre_receive_command() -> None:
    """Judge a push: git's pre-receive input on stdin; exit 1 refuses the whole push."""
    with reporting(as_json=False, command="git claim guard"):
        from ..guard import judge, parse_pre_receive

        _refuse(judge(parse_pre_receive(sys.stdin)))


@guard_group.command("update", context_settings=CONTEXT_SETTINGS)
@click.argument("ref")
@click.argument("old")
@click.argument("new")
def guard_update_command(ref: str, old: str, new: str) -> None:
    """Judge one ref, as an update hook is called (REF OLD NEW); exit 1 refuses it."""
    with reporting(as_json=False, command="git claim guard"):
        from ..guard import PushedUpdate, judge

        _refuse(judge([PushedUpdate(ref, old, new)]))


def _refuse(refusals: list[str]) -> None:
    if refusals:
        for line in refusals:
            click.echo(f"git-claim guard: refused {line}", err=True)
        raise SystemExit(1)
