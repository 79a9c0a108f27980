"""Shell completion candidates for `git claim`, `git release` and `git reap`.

The shell scripts (git_claim/cli/completion_cmd.py) ask
`git-claim --complete COMMAND WORD...`, where COMMAND is claim, release or
reap and the WORDs are what follows it on the command line, the last one
being the word under the cursor (possibly empty). The answer is one
candidate per line, already filtered by that word:

    candidate                  a subcommand, option, value or ticket id
    candidate<TAB>description  a ticket with its title (fish and zsh show it)
    :files                     also complete file names (no candidate starts with ':')
    :commands                  complete command names (`git claim run 640 -- <TAB>`)

What the commands are, their options and which options take a value come
from a Table that the CLI builds from its click commands at TAB time
(git_claim.cli.tab.command_table): there is no second, hand-written copy of
the command line to drift. This module adds only what click cannot say:
suggested values for free-form options, and which commands take which kind
of ticket.

Tickets: the ones a command may take of ours (release, heartbeat, verify,
log) are our live claims, checked against the remote by git_claim.live_claims
(bounded in time, cached for a few seconds); the ones `git claim` may take are
those of the last backlog listing. Neither click nor pygit2 is imported
here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from .quickgit import git, git_dirs, ticket_id

FILES = ":files"
COMMAND_NAMES = ":commands"
REMOTES = ":remotes"  # (in VALUE_HINTS only: the names of our git remotes)

HELP = ("-h", "--help")
STOPPERS = (*HELP, "--version")  # nothing is completed after these
HELD = "held"  # our live claims
BACKLOG = "backlog"  # eligible tickets from the last backlog listing
RUN = "run"  # a BACKLOG ticket (unless --next), then a command line
NEXT = "--next"  # instead of a ticket: `git claim --next`, `git claim run --next -- COMMAND`

# Which tickets a command's arguments are, by command path (the commands not
# named here take no ticket we could list). click knows an argument's name,
# not whose tickets it wants: this is the one thing said here about commands.
TICKET_KINDS = {
    "claim take": BACKLOG,
    "claim run": RUN,
    "claim heartbeat": HELD,
    "claim verify": HELD,
    "claim log": HELD,
    "release": HELD,
}

DURATIONS = ("5m", "15m", "30m", "1h")
# Suggested values of options whose values are free-form (an option with a
# fixed set of values, a click.Choice, gets its choices from the table).
VALUE_HINTS: dict[str, tuple[str, ...]] = {
    "--ttl": DURATIONS,
    "--max-skew": DURATIONS,
    "--from": ("gh", "-", FILES),
    "--worktree": (FILES,),
    "--interval": ("1m", "5m", "10m"),
    "--grace": ("5s", "10s", "30s", "1m"),
    "--watch": ("2", "5", "10"),
    "--remote": (REMOTES,),
}

TITLE_LIMIT = 60


@dataclass(frozen=True)
class Command:
    """One command of the tree, as completion needs it."""

    value_options: tuple[str, ...] = ()  # options that take a value
    flags: tuple[str, ...] = ()
    repeatable: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()  # value options that take a value only as --opt=VALUE
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # option -> its values
    arguments: tuple[str, ...] | None = None  # the argument's choices, if it has fixed ones
    most: int | None = None  # how many arguments (None: any number)
    subcommands: tuple[str, ...] = ()  # a group's, as offered
    default: str | None = None  # a group's command for a first word that is not a subcommand


# {path: Command}, paths like "claim", "claim hook install", "release".
Table = dict[str, Command]


def complete(argv: list[str], table: Table) -> list[str]:
    """Candidate lines for `COMMAND WORD...` (see the module docstring)."""
    if not argv:
        return []
    command, words = argv[0], list(argv[1:]) or [""]
    if command not in table:
        return []
    cur, before = words[-1], words[:-1]
    walked = _walk(table, command, before)
    if walked is None:
        return []
    path, arguments, used, pending_option, literal = walked
    if pending_option is not None:
        return _values(table, path, pending_option, cur, used)
    if not literal and cur.startswith("--") and "=" in cur:
        name, _, partial = cur.partition("=")
        if not _takes_value(table, path, name):
            return []
        return [value if value.startswith(":") else f"{name}={value}"
                for value in _values(table, path, name, partial, used)]
    if not literal and cur.startswith("-"):
        return _options(table, path, cur, used)
    spec = table[path]
    if spec.subcommands:
        candidates = [word for word in spec.subcommands if word.startswith(cur)
                      and _accepts(table[f"{path} {word}"], used)]
        if spec.default:
            candidates += _arguments(table, spec.default, cur, [], used)
        return candidates
    return _arguments(table, path, cur, arguments, used)


Walked = tuple[str, list[str], dict[str, str], str | None, bool]


def _walk(table: Table, command: str, words: list[str]) -> Walked | None:
    """Follow the words before the cursor: the command path, its arguments so far,
    the options used (with their values), an option still waiting for its value,
    and whether `--` was seen. None: nothing can follow (--help, an unknown word)."""
    path = command
    arguments: list[str] = []
    used: dict[str, str] = {}
    pending: str | None = None
    literal = False
    for word in words:
        if pending is not None:
            used[pending] = word
            pending = None
            continue
        spec = table[path]
        if spec.subcommands and not literal:
            if word in spec.subcommands:
                path = f"{path} {word}"
                continue
            if word in STOPPERS:
                return None
            if word.startswith("-") and word != "-" and word != "--":
                # an option before the subcommand (`git claim --json list`): the group
                # stays open while a subcommand other than the default takes it too
                name = word.partition("=")[0]
                if not spec.default or _shared_option(table, path, name):
                    used[name] = word.partition("=")[2]
                    if "=" not in word and _takes_value(table, path, name, bare=True):
                        pending = name
                    continue
            if not spec.default:
                return None  # unknown subcommand
            path = spec.default
        if not literal and word == "--":
            literal = True
            continue
        if not literal and word.startswith("-") and word != "-":
            name = word.partition("=")[0]
            if name in STOPPERS:
                return None
            used[name] = word.partition("=")[2]
            if "=" not in word and _takes_value(table, path, name, bare=True):
                pending = name
            continue
        arguments.append(word)
    return path, arguments, used, pending, literal


def _accepts(spec: Command, used: dict[str, str]) -> bool:
    """Whether a subcommand takes every option given before it (`git claim --next run`)."""
    return all(name in spec.value_options or name in spec.flags for name in used)


def _shared_option(table: Table, group: str, name: str) -> bool:
    """Whether a subcommand other than the group's default takes option `name`."""
    spec = table[group]
    return any(name in (*table[f"{group} {sub}"].value_options, *table[f"{group} {sub}"].flags)
               for sub in spec.subcommands if f"{group} {sub}" != spec.default)


def _takes_value(table: Table, path: str, name: str, *, bare: bool = False) -> bool:
    """Whether option `name` at `path` takes a value (at a group: in any subcommand,
    as `git claim --remote origin list` gives it before the subcommand). `bare`: as
    the next word (an optional value, `--worktree[=PATH]`, never takes it)."""
    specs = [table[path], *(table[f"{path} {sub}"] for sub in table[path].subcommands)]
    return any(name in spec.value_options and not (bare and name in spec.optional)
               for spec in specs)


def _options(table: Table, path: str, cur: str, used: dict[str, str]) -> list[str]:
    spec = table[path]
    if spec.subcommands:
        names = [*spec.flags]
        if spec.default:  # (the options of the other subcommands are offered after them)
            default = table[spec.default]
            names += [*default.value_options, *default.flags]
        repeatable: frozenset[str] = table[spec.default].repeatable if spec.default \
            else frozenset()
    else:
        names = [*spec.value_options, *spec.flags]
        repeatable = spec.repeatable
    long_only = not cur[1:] or cur.startswith("--")
    return [name for name in dict.fromkeys(names)
            if name.startswith(cur) and (name.startswith("--") or not long_only)
            and (name not in used or name in repeatable)]


def _choices(table: Table, path: str, option: str) -> tuple[str, ...] | None:
    spec = table[path]
    if option in spec.choices:
        return spec.choices[option]
    for sub in spec.subcommands:
        found = table[f"{path} {sub}"].choices.get(option)
        if found is not None:
            return found
    return None


def _values(table: Table, path: str, option: str, cur: str, used: dict[str, str]) -> list[str]:
    choices = _choices(table, path, option)
    out: list[str] = []
    for value in choices if choices is not None else VALUE_HINTS.get(option, ()):
        if value == REMOTES:
            out += [name for name in _remotes() if name.startswith(cur)]
        elif value == FILES or value.startswith(cur):
            out.append(value)
    return out


def _arguments(table: Table, path: str, cur: str, arguments: list[str],
               used: dict[str, str]) -> list[str]:
    spec = table[path]
    kind: str | None = TICKET_KINDS.get(path)
    if kind == RUN:
        before_command = 0 if NEXT in used else 1
        if len(arguments) > before_command:
            return [FILES]
        if len(arguments) == before_command:
            return [COMMAND_NAMES]
        kind = BACKLOG
    elif (spec.most is not None and len(arguments) >= spec.most) or NEXT in used:
        return []
    if spec.arguments is not None:
        return [word for word in spec.arguments if word.startswith(cur)]
    if kind not in (HELD, BACKLOG):
        return []
    hash_prefix = "#" if cur.startswith("#") else ""
    typed = {word.lstrip("#") for word in arguments}
    stem = cur[len(hash_prefix):]
    if kind == HELD:
        from .live_claims import our_live_tickets

        tickets = [(ticket, "") for ticket in our_live_tickets(used.get("--remote") or None,
                                                               used.get("--agent") or None)]
    else:
        tickets = _backlog_tickets()
    out = []
    for ticket, title in tickets:
        if ticket.startswith(stem) and ticket not in typed:
            out.append(hash_prefix + ticket + (f"\t{title}" if title else ""))
    return out


def _backlog_tickets() -> list[tuple[str, str]]:
    """The eligible tickets of the last backlog listing, less those we hold: (id, title)."""
    if not (git("config", "--get", "claim.source") or "").strip():
        return []  # no backlog configured: an old listing is not offered
    dirs = git_dirs()
    if dirs is None:
        return []
    from .live_claims import recorded_tickets

    held = set(recorded_tickets(dirs[0]))
    return [(ticket, title) for ticket, title in _backlog(dirs[1]) if ticket not in held]


def _backlog(common_dir: str) -> list[tuple[str, str]]:
    """Eligible tickets of the last backlog listing, if one was cached: (id, title)."""
    import json

    from .safetext import clean

    try:
        with open(os.path.join(common_dir, "git-claim", "backlog-cache.json"),
                  encoding="utf-8") as handle:
            entries = json.load(handle)
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        ticket = ticket_id(entry.get("id"))
        if not ticket or ticket in seen or entry.get("eligible") is False:
            continue
        seen.add(ticket)
        title = entry.get("title")
        out.append((ticket, clean(title, TITLE_LIMIT) if isinstance(title, str) else ""))
    return out


def _remotes() -> list[str]:
    out = git("remote")
    return out.split() if out else []


def main(args: list[str], table: Table) -> int:
    """`git-claim --complete COMMAND WORD...`: print the candidates, one per line."""
    try:
        lines = complete(args, table)
    except Exception:  # a completion never prints a traceback into the command line
        lines = []
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0
