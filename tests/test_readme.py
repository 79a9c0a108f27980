"""The README's examples are the tool as it is: its commands parse, its transcript is real.

Every `git claim`, `git release` and `git reap` command line the README shows
(in code blocks and in inline code) is run by the installed command with
`--help` appended, which makes click check every subcommand and option name
without doing anything. The quick-start transcript is replayed against a real
remote, and each output line must match the README's once agent names,
clock times and ages are put aside.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent

COMMAND = re.compile(r"\bgit (claim|release|reap)\b([^#;|&`)\n]*)")
PLACEHOLDER = re.compile(r"<ticket>")


def readme_commands() -> list[tuple[str, list[str]]]:
    """(program, arguments) of every command line in the README, placeholders filled in."""
    text = README.read_text()
    found: dict[str, tuple[str, list[str]]] = {}
    for match in COMMAND.finditer(text):
        start = match.start()
        line_start = text.rfind("\n", 0, start) + 1
        line = text[line_start:start]
        if line.endswith("`git ") or "…" in match.group(2) or "<TAB>" in match.group(2):
            continue
        rest = match.group(2)
        if rest.startswith(":"):  # an error message quoted from the tool, not a command
            continue
        rest = PLACEHOLDER.sub("640", rest).strip()
        try:
            arguments = shlex.split(rest)
        except ValueError:  # an unbalanced quote: the match ran into prose
            continue
        found[f"git-{match.group(1)} {rest}".strip()] = (f"git-{match.group(1)}", arguments)
    return sorted(found.values())


def with_help(arguments: list[str]) -> list[str]:
    """`--help` after the options, before any `--` that hands the rest to a command."""
    if "--" in arguments:
        cut = arguments.index("--")
        return [*arguments[:cut], "--help", *arguments[cut:]]
    return [*arguments, "--help"]


def test_the_readme_shows_commands_of_every_program() -> None:
    programs = {program for program, _ in readme_commands()}
    assert programs == {"git-claim", "git-release", "git-reap"}
    assert len(readme_commands()) >= 20


def test_every_readme_command_parses(tmp_path: Path) -> None:
    """A renamed subcommand or option fails here before a reader trips on it."""
    failures = []
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
           "MANPAGER": "cat", "PAGER": "cat", "GIT_CONFIG_NOSYSTEM": "1"}
    for program, arguments in readme_commands():
        if arguments[:1] == ["--help"]:
            continue  # `git claim --help` opens the man page: test_manpages covers it
        completed = subprocess.run([str(BIN / program), *with_help(arguments)], cwd=tmp_path,
                                   env=env, capture_output=True, text=True, timeout=60,
                                   stdin=subprocess.DEVNULL)
        if completed.returncode != 0 or "Usage:" not in completed.stdout:
            failures.append(f"{program} {shlex.join(arguments)}: exit {completed.returncode}"
                            f" {completed.stderr.strip()[:200]}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------
# the quick start, replayed

AGENT = re.compile(r"\b[\w.-]+@[\w.-]+:[\w.-]+")
CLOCK = re.compile(r"\b\d\d:\d\d\b")
AGE = re.compile(r"\b\d+[smhd]\b")


def normalized(line: str) -> str:
    line = AGENT.sub("AGENT", line)
    line = CLOCK.sub("HH:MM", line)
    line = AGE.sub("AGE", line)
    return re.sub(r"\s+", " ", line).strip()


def quick_start() -> list[tuple[str, str, list[str]]]:
    """(terminal, command, expected output lines) from the README's quick start."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            command, _, comment = line[2:].partition("#")
            terminal = "bob" if "terminal 2" in comment or "another clone" in comment \
                or (steps and steps[-1][0] == "bob" and "terminal 1" not in comment) else "alice"
            steps.append((terminal, command.strip(), []))
        elif steps:
            steps[-1][2].append(line)
    return steps


def test_the_quick_start_transcript_is_what_the_tool_prints(make_world) -> None:
    steps = quick_start()
    assert [command for _, command, _ in steps][:2] == ["git claim 640", "git claim 640"]
    world = make_world("path", "libgit2")
    agents = {"alice": world.agent("alice"), "bob": world.agent("bob")}
    for agent in agents.values():  # the default identity, user@host:clone, as a reader has it
        del agent.env["GIT_CLAIM_AGENT"]
    for terminal, command, expected in steps:
        outcome = agents[terminal].cmd(*shlex.split(command)[1:])
        printed = [line for line in (outcome.stdout + outcome.stderr).splitlines() if line]
        # stdout and stderr are captured apart, so their interleaving is not compared
        assert sorted(normalized(line) for line in printed) == \
            sorted(normalized(line) for line in expected), (terminal, command, outcome)


@pytest.mark.parametrize("line, expected", [
    ("git claim: 640 is held by alice@laptop:repo-1a2b since 12:03 (4m ago)",
     "git claim: 640 is held by AGENT since HH:MM (AGE ago)"),
    ("*641    live   bob@laptop:repo-77c1     10s  -          19m",
     "*641 live AGENT AGE - AGE"),
])
def test_normalizing_puts_aside_only_names_and_times(line: str, expected: str) -> None:
    assert normalized(line) == expected
