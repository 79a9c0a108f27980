"""Shell completion candidates for `git claim`, `git release` and `git reap`.

The shell scripts in completions/ ask `git-claim --complete COMMAND WORD...`,
where COMMAND is claim, release or reap and the WORDs are what follows it on
the command line, the last one being the word under the cursor (possibly
empty). The answer is one candidate per line, already filtered by that word:

    candidate                  a subcommand, option, value or ticket id
    candidate<TAB>description  a ticket with its title (fish and zsh show it)
    :files                     also complete file names (no candidate starts with ':')
    :commands                  complete command names (`git claim run 640 -- <TAB>`)

A completion request runs on every TAB, so this module imports neither click
nor pygit2 and never talks to the network: the tickets come from our
ownership records and from the backlog cache, read straight from the git dir
that one `git rev-parse` names. The command table below is static; a test
checks it against the click commands so that it cannot go stale.
"""

from __future__ import annotations

import os
import sys

HOOK = "--complete"  # argv[1] of git-claim; an old git-claim rejects it as an unknown option

FILES = ":files"
COMMAND_NAMES = ":commands"
REMOTES = ":remotes"  # (in VALUES only: the names of our git remotes)

HELP = ("-h", "--help")
REMOTE = ("--remote", "--agent")
HELD = "held"  # claims held by us (non-pending ownership records)
BACKLOG = "backlog"  # eligible tickets from the last backlog listing
RUN = "run"  # a BACKLOG ticket (unless --next), then a command line

# Groups: their subcommands as offered (the default `take` is never offered),
# their own flags, and the command that takes over when the first word is not
# a subcommand (`git claim 640` is `git claim take 640`).
GROUPS: dict[str, tuple[str, ...]] = {
    "claim": ("list", "reopen", "heartbeat", "verify", "log", "hook", "run", "gc", "compact",
              "guard", "completion"),
    "claim hook": ("install", "uninstall", "pre-push"),
    "claim guard": ("install", "pre-receive", "update"),
}
GROUP_FLAGS: dict[str, tuple[str, ...]] = {"claim": ("--version",) + HELP, "claim hook": HELP,
                                           "claim guard": HELP}
DEFAULT_COMMAND = {"claim": "claim take"}

# Commands: options that take a value, flags, what the arguments are (a kind
# above or a tuple of words) and how many there are (None: any number).
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], object, int | None]] = {
    "claim take": (("--from", "--label", "--exclude-label", "--worktree", "--base") + REMOTE,
                   ("--next", "--no-gate", "--json") + HELP, BACKLOG, None),
    "claim list": (("--watch",) + REMOTE, ("--json",) + HELP, None, 0),
    "claim reopen": (REMOTE, ("--json",) + HELP, None, 1),
    "claim heartbeat": (REMOTE, ("--json",) + HELP, HELD, 1),
    "claim verify": (REMOTE, ("--json",) + HELP, HELD, 1),
    "claim log": (REMOTE, ("--json",) + HELP, HELD, 1),
    "claim hook install": ((), ("--json",) + HELP, None, 0),
    "claim hook uninstall": ((), ("--json",) + HELP, None, 0),
    "claim hook pre-push": ((), HELP, None, 2),
    "claim guard install": ((), ("--json",) + HELP, None, 1),
    "claim guard pre-receive": ((), HELP, None, 0),
    "claim guard update": ((), HELP, None, 3),
    "claim run": (("--from", "--label", "--exclude-label", "--worktree", "--base", "--interval",
                   "--on-failure", "--on-lost", "--grace") + REMOTE,
                  ("--next", "--no-gate", "--json") + HELP, RUN, None),
    "claim gc": (REMOTE, ("--dry-run", "--json") + HELP, None, 0),
    "claim compact": (REMOTE, ("--dry-run", "--json") + HELP, None, 0),
    "claim completion": ((), HELP, ("bash", "zsh", "fish"), 1),
    "release": (("--reason",) + REMOTE,
                ("--done", "--blocked", "--force", "--json", "--version") + HELP, HELD, 1),
    "reap": (("--ttl", "--max-skew", "--ticket") + REMOTE,
             ("--dry-run", "--force", "--no-pr-check", "--json", "--version") + HELP, None, 0),
}
REPEATABLE = frozenset({"--ticket", "--label", "--exclude-label"})
NEXT = "--next"  # instead of a ticket: `git claim --next`, `git claim run --next -- COMMAND`

DURATIONS = ("5m", "15m", "30m", "1h")
# Values by option name, wherever the option appears (an option named here
# but not defined yet gets its values once a command defines it).
VALUES: dict[str, tuple[str, ...]] = {
    "--ttl": DURATIONS,
    "--max-skew": DURATIONS,
    "--from": ("gh", "-", FILES),
    "--transport": ("auto", "libgit2", "git"),
    "--worktree": (FILES,),
    "--interval": ("1m", "5m", "10m"),
    "--grace": ("5s", "10s", "30s", "1m"),
    "--on-failure": ("blocked", "release", "keep"),
    "--on-lost": ("stop", "warn"),
    "--watch": ("2", "5", "10"),
    "--remote": (REMOTES,),
}

TITLE_LIMIT = 60


def complete(argv: list[str]) -> list[str]:
    """Candidate lines for `COMMAND WORD...` (see the module docstring)."""
    if not argv:
        return []
    command, words = argv[0], list(argv[1:]) or [""]
    if command not in GROUPS and command not in COMMANDS:
        return []
    cur, before = words[-1], words[:-1]
    path, arguments, used, pending_option, literal = _walk(command, before)
    if path is None:
        return []
    if pending_option is not None:
        return _values(pending_option, cur)
    if not literal and cur.startswith("--") and "=" in cur:
        name, _, partial = cur.partition("=")
        if not _takes_value(path, name):
            return []
        return [value if value.startswith(":") else f"{name}={value}"
                for value in _values(name, partial)]
    if not literal and cur.startswith("-"):
        return _options(path, cur, used)
    if path in GROUPS:
        candidates = [word for word in GROUPS[path] if word.startswith(cur)]
        if path in DEFAULT_COMMAND:
            candidates += _arguments(DEFAULT_COMMAND[path], cur, [], used)
        return candidates
    return _arguments(path, cur, arguments, used)


def _walk(command: str, words: list[str]) -> tuple[str | None, list[str], set[str], str | None, bool]:
    """Follow the words before the cursor: the command path, its arguments so far,
    the options used, an option still waiting for its value, and whether `--` was seen."""
    path = command
    arguments: list[str] = []
    used: set[str] = set()
    pending: str | None = None
    literal = False
    for word in words:
        if pending is not None:
            pending = None
            continue
        if path in GROUPS:
            if word in GROUPS[path] and not literal:
                path = f"{path} {word}"
                continue
            if word in GROUP_FLAGS.get(path, ()):
                return None, [], used, None, False  # --help / --version: nothing follows
            if path not in DEFAULT_COMMAND:
                return None, [], used, None, False  # unknown subcommand
            path = DEFAULT_COMMAND[path]
        if not literal and word == "--":
            literal = True
            continue
        if not literal and word.startswith("-") and word != "-":
            name = word.partition("=")[0]
            used.add(name)
            if name in HELP or name == "--version":
                return None, [], used, None, False
            if "=" not in word and _takes_value(path, name):
                pending = name
            continue
        arguments.append(word)
    return path, arguments, used, pending, literal


def _takes_value(path: str, name: str) -> bool:
    return (path in COMMANDS and name in COMMANDS[path][0]) or name in VALUES


def _options(path: str, cur: str, used: set[str]) -> list[str]:
    if path in GROUPS:
        names = list(GROUP_FLAGS.get(path, ()))
        if path in DEFAULT_COMMAND:
            value_options, flags = COMMANDS[DEFAULT_COMMAND[path]][:2]
            names += [*value_options, *flags]
    else:
        value_options, flags = COMMANDS[path][:2]
        names = [*value_options, *flags]
    long_only = not cur[1:] or cur.startswith("--")
    return [name for name in dict.fromkeys(names)
            if name.startswith(cur) and (name.startswith("--") or not long_only)
            and (name not in used or name in REPEATABLE)]


def _values(option: str, cur: str) -> list[str]:
    out: list[str] = []
    for value in VALUES.get(option, ()):
        if value == REMOTES:
            out += [name for name in _remotes() if name.startswith(cur)]
        elif value == FILES or value.startswith(cur):
            out.append(value)
    return out


def _arguments(path: str, cur: str, arguments: list[str], used: set[str]) -> list[str]:
    _, _, kind, most = COMMANDS[path]
    if kind == RUN:
        tickets = 0 if NEXT in used else 1
        if len(arguments) > tickets:
            return [FILES]
        if len(arguments) == tickets:
            return [COMMAND_NAMES]
        kind = BACKLOG
    elif (most is not None and len(arguments) >= most) or NEXT in used:
        return []
    if isinstance(kind, tuple):
        return [word for word in kind if word.startswith(cur)]
    if kind not in (HELD, BACKLOG):
        return []
    hash_prefix = "#" if cur.startswith("#") else ""
    typed = {word.lstrip("#") for word in arguments}
    stem = cur[len(hash_prefix):]
    if kind == BACKLOG and not (_git("config", "--get", "claim.source") or "").strip():
        return []  # no backlog configured: an old listing is not offered
    dirs = _git_dirs()
    if dirs is None:
        return []
    held = _held_tickets(dirs[0])
    if kind == HELD:
        tickets = [(ticket, "") for ticket in held]
    else:
        tickets = [(ticket, title) for ticket, title in _backlog(dirs[1]) if ticket not in held]
    out = []
    for ticket, title in tickets:
        if ticket.startswith(stem) and ticket not in typed:
            out.append(hash_prefix + ticket + (f"\t{title}" if title else ""))
    return out


def _git(*args: str) -> str | None:
    """`git ARGS`'s output, or None. posix_spawn: importing subprocess costs more than git."""
    if not hasattr(os, "posix_spawnp"):
        import subprocess

        try:
            done = subprocess.run(["git", *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp("git", ["git", *args], os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ])
    except OSError:
        os.close(read_end)
        return None
    finally:
        os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as output:
        while chunk := output.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def _git_dirs() -> tuple[str, str] | None:
    """The per-worktree git dir (our ownership records) and the common one (the cache)."""
    out = _git("rev-parse", "--git-dir", "--git-common-dir")
    lines = out.splitlines() if out else []
    if len(lines) < 2:
        return None
    return os.path.abspath(lines[0]), os.path.abspath(lines[1])


def _ticket_id(raw: object) -> str | None:
    from .errors import BadTicketError
    from .ticket import parse_ticket

    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        return None
    try:
        return str(parse_ticket(str(raw)))
    except BadTicketError:
        return None


def _held_tickets(git_dir: str) -> list[str]:
    """Tickets whose claim we hold: the non-pending records of git_claim.ownership
    (owned/<ticket>/<tag>.json, and owned/<ticket>.json of earlier versions)."""
    import json

    root = os.path.join(git_dir, "git-claim", "owned")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    paths = []
    for name in names:
        if name.startswith("."):
            continue
        if name.endswith(".json"):
            paths.append(os.path.join(root, name))
            continue
        try:
            inner = sorted(os.listdir(os.path.join(root, name)))
        except OSError:
            continue
        paths += [os.path.join(root, name, n) for n in inner
                  if n.endswith(".json") and not n.startswith(".")]
    tickets = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("pending", True):
            continue
        ticket = _ticket_id(record.get("ticket"))
        if ticket and ticket not in tickets:
            tickets.append(ticket)
    return tickets


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
        ticket = _ticket_id(entry.get("id"))
        if not ticket or ticket in seen or entry.get("eligible") is False:
            continue
        seen.add(ticket)
        title = entry.get("title")
        out.append((ticket, clean(title, TITLE_LIMIT) if isinstance(title, str) else ""))
    return out


def _remotes() -> list[str]:
    out = _git("remote")
    return out.split() if out else []


def main(args: list[str]) -> int:
    """`git-claim --complete COMMAND WORD...`: print the candidates, one per line."""
    try:
        lines = complete(args)
    except Exception:  # a completion never prints a traceback into the command line
        lines = []
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0
