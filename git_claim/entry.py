"""Console entry points: git-claim, git-release, git-reap.

`git-claim --complete …` (every TAB) goes to the completion before the
commands run: it builds its table from the click commands (see
git_claim/cli/completion_cmd.py). Everything else is click. Both stay fast
because nothing heavy is imported before a command needs it: the cli
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
        from .cli.completion_cmd import answer

        raise SystemExit(answer(sys.argv[2:]))
    from .cli.claim_cmd import main

    main()


def release() -> None:
    """git-release."""
    from .cli.release_cmd import main

    main()


def reap() -> None:
    """git-reap."""
    from .cli.reap_cmd import main

    main()
