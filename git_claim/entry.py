"""Console entry points: git-claim, git-release, git-reap.

`git-claim --complete …` (every TAB) goes to the completion before the
commands run (git_claim/cli/tab.py): it builds its table from the click
commands. Everything else is click, through git_claim/cli/app.py. Both stay
fast because nothing heavy is imported before a command needs it: the cli
modules import click and our light modules only, and import the protocol,
pygit2 and the network inside the commands (a test checks that `-h`
imports no pygit2).
"""

from __future__ import annotations

import sys

HOOK = "--complete"  # argv[1] of git-claim; an old git-claim rejects it as an unknown option


def claim() -> None:
    """git-claim."""
    if sys.argv[1:2] == [HOOK]:
        from .cli.tab import answer

        raise SystemExit(answer(sys.argv[2:]))
    from .cli.app import claim_main

    claim_main()


def release() -> None:
    """git-release."""
    from .cli.app import release_main

    release_main()


def reap() -> None:
    """git-reap."""
    from .cli.app import reap_main

    reap_main()
