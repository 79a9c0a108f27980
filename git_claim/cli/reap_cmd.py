"""`git reap`: free the claims of crashed agents."""

from __future__ import annotations

import click

from .claim_cmd import run_group
from .common import CONTEXT_SETTINGS


@click.command(context_settings=CONTEXT_SETTINGS)
def reap_command() -> None:
    """Free claims whose holder stopped heartbeating (not yet implemented)."""
    click.echo("git reap: not yet implemented", err=True)
    raise SystemExit(2)


def main() -> None:
    run_group(reap_command, prog="git reap")
