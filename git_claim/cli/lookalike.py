"""Which words on `git claim`'s command line look like a command rather than a ticket.

`git claim 640` needs no subcommand word, so without this rule any word that
is not exactly a subcommand would be claimed on the shared remote: a typo
(`git claim lsit`), a command of the family (`git claim release 5`) or a git
reflex (`git claim status`). A claim is public and costs a release to undo,
while a refusal costs the user `git claim take WORD`; so in doubt, refuse.

A word is command-like when, compared without case and without a leading `#`:
- it is a subcommand name (the caller passes the click group's names, so a new
  subcommand is protected without touching this table) or a word of FAMILY, or
  is near one: Damerau-Levenshtein distance at most `allowed_slips(name)`, which
  is 0 for names of 3 characters or fewer (`log`, `run`, `gc`: one slip in a
  short word makes another ordinary word: lot, rum, go), 1 for 4 to 6 (`lsit`,
  `tkae`, `reopn`) and 2 from 7 on (`hearbeat`, `compcat`), where two slips
  are still a typo and no longer a different word. A word with a digit in it
  is never near a name: no command has one, and every ticket scheme does
  (640, KEY-123), so fuzzy matching can never refuse those.
- or it is exactly one of SAID_FOR (`done`, `blocked`, `logs`, `install`: what
  another command does);
- or it is exactly one of GIT_WORDS: the commands `git help` lists as common,
  plus a few more that git users type by reflex. Only exact matches: these are
  short and many, and near misses of them are ordinary words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Words a git-claim user types meaning a command, and what they meant.
FAMILY = {
    "help": "git claim help",
    "status": "git claim list",
    "show": "git claim list",
    "ls": "git claim list",
    "release": "git release",
    "unclaim": "git release",
    "reap": "git reap",
    "next": "git claim --next",
    "version": "git claim --version",
    "worktree": "git claim --worktree",
}
# Words that say what another command does, taken only as they are (one slip from
# `done` is bone, gone, none: ordinary words a ticket may be named).
SAID_FOR = {
    "done": "git release --done",
    "blocked": "git release --blocked",
    "logs": "git claim log",
    "install": "git claim completion install",
}
# `git help`'s common commands, and checkout, stash, config, remote: said by reflex.
GIT_WORDS = frozenset({
    "add", "bisect", "branch", "checkout", "clone", "commit", "config", "diff", "fetch",
    "grep", "init", "merge", "mv", "pull", "push", "rebase", "remote", "reset", "restore",
    "rm", "stash", "switch", "tag",
})


@dataclass(frozen=True)
class Lookalike:
    """A word refused as an implicit ticket id, and the command it probably meant."""

    word: str
    meant: str

    @property
    def message(self) -> str:
        from ..safetext import clean

        word = clean(self.word, 80)
        return (f"`{word}` looks like a command, not a ticket id: did you mean `{self.meant}`?"
                f" (to claim a ticket named {word}: `git claim take {word}`)")


def allowed_slips(name: str) -> int:
    return 0 if len(name) <= 3 else 1 if len(name) <= 6 else 2


def lookalike(word: str, commands: Iterable[str]) -> Lookalike | None:
    """The command `word` looks like, or None when it may only be a ticket id."""
    key = (word[1:] if word.startswith("#") else word).lower()
    targets = {name: f"git claim {name}" for name in commands}
    targets.update((name, meant) for name, meant in FAMILY.items() if name not in targets)
    if key in targets:
        return Lookalike(word, targets[key])
    if key in SAID_FOR:
        return Lookalike(word, SAID_FOR[key])
    if key in GIT_WORDS:
        return Lookalike(word, f"git {key}")
    if any(char.isdigit() for char in key):
        return None
    near = [(distance(key, name), name) for name in sorted(targets)
            if abs(len(key) - len(name)) <= allowed_slips(name)]
    fits = [(slips, name) for slips, name in near if slips <= allowed_slips(name)]
    if not fits:
        return None
    return Lookalike(word, targets[min(fits)[1]])


def distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): a swap of two
    neighbours counts as one slip, as it is one on a keyboard (`lsit`)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
