"""`git claim guard`: the server-side guard, installed by an admin on a bare repository."""

from __future__ import annotations

import sys

import click

from .claim_cmd import claim_group
from .common import CONTEXT_SETTINGS, json_option
from .output import emit_guard_installed, emit_verdict, reporting


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

        from ..ops.hook import GuardInstallRequest, guard_install

        executable = shutil.which("git-claim") or os.path.abspath(sys.argv[0])
        emit_guard_installed(guard_install(GuardInstallRequest(repository, executable)),
                             as_json=as_json)


@guard_group.command("pre-receive", context_settings=CONTEXT_SETTINGS)
def guard_pre_receive_command() -> None:
    """Judge a push: git's pre-receive input on stdin; exit 1 refuses the whole push."""
    with reporting(as_json=False, command="git claim guard"):
        from ..ops.hook import guard_pre_receive

        emit_verdict(guard_pre_receive(sys.stdin), prefix="git-claim guard: refused ")


@guard_group.command("update", context_settings=CONTEXT_SETTINGS)
@click.argument("ref")
@click.argument("old")
@click.argument("new")
def guard_update_command(ref: str, old: str, new: str) -> None:
    """Judge one ref, as an update hook is called (REF OLD NEW); exit 1 refuses it."""
    with reporting(as_json=False, command="git claim guard"):
        from ..ops.hook import guard_update

        emit_verdict(guard_update(ref, old, new), prefix="git-claim guard: refused ")
