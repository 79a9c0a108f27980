"""The three programs: which click command each runs, with every subcommand registered.

Each `*_cmd` module defines its commands and registers them on the `git claim`
group (claim_cmd.claim_group) as it is imported; this is the one module that
imports them all, so no command module imports another that imports it back.
The shell completion (cli/tab.py) and the man page check (tools/build_man.py)
read the same tree from `programs()`, so what they walk is what runs.

`git release` and `git reap` import only their own command: they have no
subcommands, and their start-up stays as short as it was.
"""

from __future__ import annotations

import click

from .group import run_group


def _claim_group() -> click.Group:
    """`git claim`, with the subcommands of every command module registered."""
    # imported for their effect: each registers its commands on the group
    from . import (  # noqa: F401
        board_cmd,
        compact_cmd,
        completion_cmd,
        guard_cmd,
        liveness_cmd,
        ready_cmd,
        run_cmd,
    )
    from .claim_cmd import claim_group

    return claim_group


def programs() -> dict[str, click.Command]:
    """The click command each program runs, with every subcommand registered."""
    from .reap_cmd import reap_command
    from .release_cmd import release_command

    return {"git-claim": _claim_group(), "git-release": release_command,
            "git-reap": reap_command}


def claim_main() -> None:
    """git-claim (`git claim`)."""
    run_group(_claim_group())


def release_main() -> None:
    """git-release (`git release`)."""
    from .release_cmd import release_command

    run_group(release_command, prog="git release")


def reap_main() -> None:
    """git-reap (`git reap`)."""
    from .reap_cmd import reap_command

    run_group(reap_command, prog="git reap")
