"""How `git claim` reads its command line: which word is a subcommand, which a ticket.

Every command module registers on the group in claim_cmd (cli/app.py imports
them all); this module only decides how argv is split between them, and runs
a group with our exit codes.
"""

from __future__ import annotations

from typing import Any

import click

from .output import emit_json

DEFAULT_COMMAND = "take"
HELP_WORD = "help"
GROUP_FIRST = ("-h", "--help", "--version")


class LookalikeError(click.UsageError):
    """A word that looks like a command where a ticket id would be taken (exit 2)."""

    def __init__(self, message: str, meant: str) -> None:
        super().__init__(message)
        self.meant = meant


class ClaimGroup(click.Group):
    """`git claim 640` means `git claim take 640`: tickets need no subcommand word.

    So that no word becomes a claim by accident, argv is read as git reads its
    own: options first (each taking its value word, if it has one), then the
    first other word. A subcommand there gets the options moved after it
    (`git claim --json list` is `git claim list --json`). Otherwise the words
    are tickets for `take`, and one that looks like a command (see lookalike)
    is a usage error: such a ticket is claimed with `git claim take WORD` or
    `git claim -- WORD`.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] in GROUP_FIRST:
            return super().parse_args(ctx, args)
        arity = self.option_arity()
        options, head = _leading_options(args, arity)
        if head < len(args) and args[head] == HELP_WORD and args[head] not in self.commands:
            topic = _positionals(args[head + 1:], arity)
            return super().parse_args(ctx, self._help_args(topic))
        if head < len(args) and args[head] in self.commands:
            path, rest = self._command_path(args[head:])
            return super().parse_args(ctx, [*path, *self._moved(path, options), *rest])
        for word in [] if ctx.resilient_parsing else _positionals(args, arity):
            self.refuse_lookalike(word)  # (not while completing: that reads partial words)
        return super().parse_args(ctx, [DEFAULT_COMMAND, *args])

    def refuse_lookalike(self, word: str) -> None:
        """Raise LookalikeError when `word` would be a ticket but looks like a command."""
        from .lookalike import lookalike

        found = lookalike(word, self.commands)
        if found is not None:
            raise LookalikeError(found.message, found.meant)

    def option_arity(self) -> dict[str, int]:
        """Each option of every subcommand (read from the click tree): how many words
        follow it as its value. An option with an optional value (`--worktree`,
        `--watch`) takes one only as `--opt=VALUE`."""
        arity: dict[str, int] = {}
        for command in _walk(self):
            for param in command.params:
                if isinstance(param, click.Option):
                    words = 0 if param.is_flag or param.count or _optional_value(param) \
                        else param.nargs
                    for name in (*param.opts, *param.secondary_opts):
                        arity[name] = max(arity.get(name, 0), words)
        return arity

    def _help_args(self, topic: list[str]) -> list[str]:
        """`git claim help [COMMAND]`, as in git: the help, never a claim of "help"."""
        if not topic:
            return ["--help"]
        if topic[0] in self.commands:
            return [*self._command_path(topic)[0], "--help"]
        self.refuse_lookalike(topic[0])
        raise click.UsageError(f"no such command: {topic[0]!r}")

    def _command_path(self, words: list[str]) -> tuple[list[str], list[str]]:
        """The subcommand words (`hook install`) and what follows them."""
        command: click.Command = self.commands[words[0]]
        index = 1
        while isinstance(command, click.Group) and index < len(words) \
                and words[index] in command.commands:
            command = command.commands[words[index]]
            index += 1
        return words[:index], words[index:]

    def _moved(self, path: list[str], options: list[str]) -> list[str]:
        """Options moved after the subcommand; a bare optional-value option gets its
        flag value spelled out, so that it cannot take the next word as its value."""
        command: click.Command = self
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        bare = {name: param for param in command.params if isinstance(param, click.Option)
                and _optional_value(param) for name in param.opts}
        return [f"{word}={bare[word].flag_value}" if word in bare else word
                for word in options]

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("git claim", "[OPTIONS] TICKET... | COMMAND [ARGS]...")


def _walk(command: click.Command) -> list[click.Command]:
    found = [command]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found += _walk(sub)
    return found


def _optional_value(option: click.Option) -> bool:
    return bool(getattr(option, "_flag_needs_value", False))


def _option_words(word: str, arity: dict[str, int]) -> int:
    """How many of the following words `word` (an option) takes as its value."""
    if word.startswith("--"):
        return 0 if "=" in word else arity.get(word, 0)
    return arity.get(word, 0) if len(word) == 2 else 0  # -xVALUE carries its value


def _is_option(word: str) -> bool:
    return word.startswith("-") and word not in ("-", "--")


def _leading_options(args: list[str], arity: dict[str, int]) -> tuple[list[str], int]:
    """The options before the first other word, and that word's index."""
    index = 0
    while index < len(args) and _is_option(args[index]):
        index += 1 + _option_words(args[index], arity)
    index = min(index, len(args))
    return args[:index], index


def _positionals(args: list[str], arity: dict[str, int]) -> list[str]:
    """The words that are neither options nor their values, up to `--`."""
    words: list[str] = []
    index = 0
    while index < len(args) and args[index] != "--":
        if _is_option(args[index]):
            index += 1 + _option_words(args[index], arity)
        else:
            words.append(args[index])
            index += 1
    return words


def run_group(group: click.Command, args: list[str] | None = None,
              prog: str = "git claim") -> Any:
    """Run a click command with our exit codes: usage errors exit 2, as JSON under --json."""
    import sys

    argv = _bare_worktree(sys.argv[1:] if args is None else args)
    try:
        return group.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help() if error.ctx else str(error))
        raise SystemExit(2) from None
    except click.UsageError as error:
        if "--json" in argv:
            from .output import error_document

            details = {"did_you_mean": error.meant} if isinstance(error, LookalikeError) else {}
            emit_json(error_document(error.format_message(), "usage", 2, **details))
        elif isinstance(error, LookalikeError):
            click.echo(f"{prog}: {error.format_message()}", err=True)
        else:
            click.echo(f"{prog}: {error.format_message()} (see `{prog} -h`)", err=True)
        raise SystemExit(2) from None
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None


def _bare_worktree(argv: list[str]) -> list[str]:
    """`--worktree` alone means the default place: it never takes the next word as a path
    (`git claim --worktree 640`); a path is given as `--worktree=PATH`."""
    out: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            return out + argv[index:]
        out.append("--worktree=" if word == "--worktree" else word)
    return out
