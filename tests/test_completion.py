"""Shell completion, in real bash, zsh and fish, from one table.

Each shell completes every line of ROWS as on a TAB: bash through
bash-completion and git's completion (the completion function called with
COMP_WORDS as readline splits the line), zsh through compsys in a zpty (a
widget records what compadd receives), fish through `complete -C`: the
harness of shells.py. Each runs twice: with completions/ installed where
setup.cfg installs it, and with the script of `git claim completion SHELL` set
up by hand. The candidates come from the installed git-claim, in a repository
with claims of ours and a backlog cache. A shell that is not installed is
skipped.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from agents import base_env, wait_until
from shells import BASH_COMPLETION, available, bash_tab, fish_quote, fish_tab, zsh_tab

ROOT = Path(__file__).resolve().parent.parent
HELD = {"640", "PROJ-7"}  # live claims of ours; 641 is pending (not won yet), 650 was
# reaped and 660 released: each has (or had) a record of ours, none is held by us
BACKLOG = {"700", "701"}  # the backlog cache also lists 640, which we hold
SUBCOMMANDS = {"take", "list", "reopen", "heartbeat", "verify", "log", "hook", "run", "gc",
               "compact", "guard", "completion"}


class Row(NamedTuple):
    line: str  # the command line up to the cursor
    want: set[str]  # candidates that must be offered
    exact: bool = False  # ... and nothing else
    absent: frozenset[str] = frozenset()  # candidates that must not be offered


ROWS = [
    Row("git claim ", SUBCOMMANDS | BACKLOG, absent=frozenset({"640", "641", "--json"})),
    Row("git-claim ", SUBCOMMANDS | BACKLOG, absent=frozenset({"640"})),
    Row("git claim t", {"take"}, exact=True),
    Row("git claim take ", BACKLOG, exact=True),
    Row("git claim --json l", {"list", "log"}, exact=True),
    Row("git claim --remote origin hea", {"heartbeat"}, exact=True),
    Row("git claim li", {"list"}, exact=True),
    Row("git claim h", {"heartbeat", "hook"}, exact=True),
    Row("git claim 7", BACKLOG, exact=True),
    Row("git claim 700 ", {"701"}, exact=True),
    Row("git claim -- ", BACKLOG, exact=True),
    Row("git claim --", {"--json", "--remote", "--agent", "--version", "--help"}),
    Row("git claim --json 70", BACKLOG, exact=True),
    Row("git claim --next 70", set(), exact=True),
    Row("git claim --remote ", {"origin", "upstream"}, exact=True),
    Row("git claim --next ", {"take", "run"}, exact=True),  # the subcommands that take --next
    Row("git claim --next --", {"--from", "--label", "--exclude-label", "--no-gate"},
        absent=frozenset({"--next"})),
    Row("git claim --next --from ", {"gh", "-", "tickets.json"}),
    Row("git claim --next --label x --", {"--label", "--exclude-label"}),
    Row("git claim list ", set(), exact=True),
    Row("git claim heartbeat ", HELD, exact=True),
    Row("git claim verify P", {"PROJ-7"}, exact=True),
    Row("git claim log ", HELD, exact=True),
    Row("git claim heartbeat --", {"--json", "--remote", "--agent", "--help"}),
    Row("git claim hook ", {"install", "uninstall", "pre-push"}, exact=True),
    Row("git claim hook install --j", {"--json"}, exact=True),
    Row("git claim run ", BACKLOG, exact=True),
    Row("git claim run 700 -- git-cl", {"git-claim"}),
    Row("git claim run 700 -- make ti", {"tickets.json"}),
    Row("git claim run --next -- git-cl", {"git-claim"}),
    Row("git claim run --on-failure ", {"blocked", "release", "keep"}, exact=True),
    Row("git claim run --worktree ", BACKLOG, exact=True),  # a path only as --worktree=PATH
    Row("git claim gc --", {"--dry-run", "--json", "--remote"}),
    Row("git claim completion ", {"bash", "zsh", "fish", "install"}, exact=True),
    Row("git claim completion install ", {"bash", "zsh", "fish"}, exact=True),
    Row("git claim completion bash --", {"--json", "--help"}, exact=True),
    Row("git release ", HELD, exact=True),
    Row("git-release ", HELD, exact=True),
    Row("git release 640 ", set(), exact=True),
    Row("git release --", {"--done", "--blocked", "--reason", "--force", "--json", "--remote"}),
    Row("git release --done --", {"--reason", "--force"}, absent=frozenset({"--done"})),
    Row("git release --reason ", set(), exact=True),
    Row("git reap --", {"--ttl", "--max-skew", "--dry-run", "--ticket", "--force", "--json"}),
    Row("git reap --ttl ", {"5m", "15m", "30m", "1h"}, exact=True),
    Row("git-reap --max-skew 1", {"15m", "1h"}, exact=True),
    Row("git reap --ttl=1", {"--ttl=15m", "--ttl=1h"}, exact=True),
    Row("git-reap --ttl 30m --dry-run --", {"--max-skew", "--ticket"},
        absent=frozenset({"--ttl", "--dry-run"})),
    Row("git cl", {"claim"}),
    Row("git re", {"release", "reap"}),
    Row("git -C ../other release ", {"900"}, exact=True),
]

SETUPS = ("installed", "manual")
# The manual setup loads the same code another way: these rows show it is all there.
MANUAL_ROWS = {"git claim ", "git-claim ", "git claim heartbeat ", "git claim --next --from ",
               "git release ", "git-release ", "git reap --ttl=1", "git-reap --max-skew 1",
               "git cl", "git re", "git -C ../other release "}


# -- the scene: a repository with claims, the installed files, the manual scripts ---------

class Scene(NamedTuple):
    root: Path
    home: Path
    repo: Path
    prefix: Path  # the install prefix: <prefix>/share/...
    env: dict[str, str]


def _bin_dir() -> Path:
    return Path(sys.executable).parent


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    from git_claim.cli.completion_cmd import INSTALL_DIRS, shipped_files

    root = tmp_path_factory.mktemp("completion")
    home = root / "home"
    home.mkdir()
    env = base_env(home)
    for key in ("BASH_COMPLETION_USER_DIR", "XDG_DATA_HOME", "fish_complete_path", "FPATH"):
        env.pop(key, None)
    env["PATH"] = f"{_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    env["TERM"] = "xterm"
    env["SHELL"] = "/bin/sh"

    probe = subprocess.run(["git-claim", "--complete", "claim", "li"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert probe.stdout == "list\n", (
        "git-claim does not answer completion requests: its console script must be"
        f" git_claim.entry:claim\n{probe.stderr}")

    repo = _clone(root, "repo", env)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "upstream",
                    "https://example.invalid/upstream"], env=env, check=True)
    (repo / "tickets.json").write_text("[]\n")
    # ours and live: 640, PROJ-7; ours no longer: 650 (reaped), 660 (released)
    for ticket in ("640", "PROJ-7", "650", "660"):
        _git_claim(repo, env, "git", "claim", ticket)
    _git_claim(repo, env, "git", "release", "660")
    time.sleep(1.1)  # silent for over a second: stale under --ttl 1s
    _git_claim(repo, env, "git", "reap", "--ttl", "1s", "--max-skew", "0s", "--force",
               "--ticket", "650")
    _own(repo, {"641": True})
    subprocess.run(["git", "-C", str(repo), "config", "claim.source", "gh"], env=env, check=True)
    (repo / ".git" / "git-claim" / "owned" / "broken.json").write_text("{not json")
    cache = json.dumps([{"id": "700", "title": "Fix the login page"},
                        {"id": "701", "title": "Colour \x1b[31mred"},
                        {"id": "640", "title": "held by us already"}, {"id": "not valid!"}])
    (repo / ".git" / "git-claim" / "backlog-cache.json").write_text(cache)
    other = _clone(root, "other", env)  # `git -C ../other`: other claims, no backlog source
    _git_claim(other, env, "git", "claim", "900")
    (other / ".git" / "git-claim" / "backlog-cache.json").write_text(cache)

    _learn_what_ended(repo, env)

    prefix = root / "prefix"
    for relative in shipped_files():
        folder, name = relative.rsplit("/", 1)
        target = prefix / INSTALL_DIRS[folder] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "completions" / relative, target)
    return Scene(root, home, repo, prefix, env)


def _learn_what_ended(repo: Path, env: dict[str, str]) -> None:
    """One TAB, and its reading of the remote through: 650 is known ended.

    A TAB waits 1.5 s for the remote and then answers from our records, less
    the claims the remote was last seen to have ended. On a loaded machine the
    rows below may get that answer: after this first reading it leaves out
    650 as well, as it would for a user, whose first TAB after the reap may
    still offer 650 when the remote is slow. (660 was released here: its
    record is gone.)
    """
    cache = repo / ".git" / "git-claim" / "completion-live.json"

    def learned() -> bool:
        # a TAB each time: one whose reading failed or was cut short (a loaded
        # machine) is read again once its answer is older than the cache's 5 s
        subprocess.run(["git-claim", "--complete", "release", ""], env=env, cwd=repo,
                       capture_output=True, text=True, timeout=60)
        try:
            found = json.loads(cache.read_text())
        except (OSError, ValueError):
            return False
        return (not found.get("failed") and found.get("live") == ["640", "PROJ-7"]
                and len(found.get("ended", [])) == 1)  # 650's claim (660's record is gone)

    wait_until(learned, 120, "the first TAB's reading of the remote never finished", 0.5)


def _clone(root: Path, name: str, env: dict[str, str]) -> Path:
    """A repository whose origin is a bare repository of its own (a path remote)."""
    remote, repo = root / f"{name}-remote.git", root / name
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], env=env, check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", str(remote)], env=env,
                   check=True)
    return repo


def _git_claim(repo: Path, env: dict[str, str], *argv: str) -> None:
    done = subprocess.run(argv, env=env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)


def _own(repo: Path, tickets: dict[str, bool]) -> None:
    """Ownership records as git_claim.ownership writes them: {ticket: pending}."""
    owned = repo / ".git" / "git-claim" / "owned"
    owned.mkdir(parents=True, exist_ok=True)
    for ticket, pending in tickets.items():
        (owned / f"{ticket}.json").write_text(json.dumps(
            {"ticket": ticket, "ref": f"refs/claims/{ticket}", "remote_url": "x", "tag": "0" * 40,
             "nonce": "n", "agent": "me", "claimed_at": 0.0, "pending": pending}))


def _manual_script(scene: Scene, shell: str) -> Path:
    """What `git claim completion SHELL` prints, saved as the manual setup says."""
    printed = subprocess.run(["git", "claim", "completion", shell], env=scene.env, cwd=scene.repo,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    path = scene.root / f"manual-{shell}"
    path.write_text(printed.stdout)
    return path


def _shell_env(scene: Scene, setup: str) -> dict[str, str]:
    env = dict(scene.env)
    system = "/usr/local/share:/usr/share"
    env["XDG_DATA_DIRS"] = f"{scene.prefix / 'share'}:{system}" if setup == "installed" else system
    env["XDG_CONFIG_HOME"] = str(scene.root / f"config-{setup}")
    return env


# -- the drivers: each completes every row in one shell process ---------------------------

def _rows(setup: str) -> list[Row]:
    assert {row.line for row in ROWS} >= MANUAL_ROWS
    return [row for row in ROWS if setup == "installed" or row.line in MANUAL_ROWS]


def _run_bash(scene: Scene, setup: str) -> list[list[str]]:
    preamble = ([f"source {shlex.quote(str(_manual_script(scene, 'bash')))}"]
                if setup == "manual" else [])
    return bash_tab([row.line for row in _rows(setup)], env=_shell_env(scene, setup),
                    cwd=scene.repo, preamble=preamble)


def _run_zsh(scene: Scene, setup: str) -> list[list[str]]:
    """Installed: the site-functions folder on fpath. Manual: the printed script,
    sourced after compinit as the script's own header says."""
    site = scene.prefix / "share" / "zsh" / "site-functions"
    dump = shlex.quote(str(scene.root / f"zcompdump-{setup}"))
    init_lines = [f"autoload -Uz compinit && compinit -u -d {dump}"]
    if setup == "installed":
        init_lines.insert(0, f"fpath=({shlex.quote(str(site))} $fpath)")
    else:
        init_lines.append(f"source {shlex.quote(str(_manual_script(scene, 'zsh')))}")
    return zsh_tab([row.line for row in _rows(setup)], env=_shell_env(scene, setup),
                   cwd=scene.repo, init_lines=init_lines)


def _run_fish(scene: Scene, setup: str) -> list[list[str]]:
    env = _shell_env(scene, setup)
    if setup == "manual":
        conf = Path(env["XDG_CONFIG_HOME"]) / "fish" / "conf.d" / "git-claim.fish"
        conf.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_manual_script(scene, "fish"), conf)
    return fish_tab([row.line for row in _rows(setup)], env=env, cwd=scene.repo)


DRIVERS = {"bash": _run_bash, "zsh": _run_zsh, "fish": _run_fish}


@pytest.fixture(scope="module")
def completions(scene: Scene) -> dict[tuple[str, str], dict[str, list[str]]]:
    """Every (shell, setup) run once, side by side: {(shell, setup): {line: candidates}}."""
    runs = [(shell, setup) for shell in DRIVERS if available(shell) for setup in SETUPS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {run: pool.submit(DRIVERS[run[0]], scene, run[1]) for run in runs}
        return {run: dict(zip((row.line for row in _rows(run[1])), future.result(), strict=True))
                for run, future in futures.items()}


@pytest.mark.parametrize("shell, setup, row", [
    pytest.param(shell, setup, row, id=f"{shell}-{setup}-{row.line}")
    for shell in DRIVERS for setup in SETUPS for row in _rows(setup)])
def test_completion(completions, shell: str, setup: str, row: Row) -> None:
    if not available(shell):
        pytest.skip(f"{shell} is not installed")
    got = set(completions[shell, setup][row.line])
    if row.exact:
        assert got == row.want, f"{shell} ({setup}): {row.line!r}"
    else:
        assert row.want <= got, f"{shell} ({setup}): {row.line!r} misses {row.want - got}"
    assert not got & row.absent, f"{shell} ({setup}): {row.line!r} offers {got & row.absent}"


# -- bash as typed: readline itself, in tmux ----------------------------------------------

@pytest.mark.skipif(shutil.which("tmux") is None or not available("bash"),
                    reason="tmux or bash-completion is not installed")
def test_bash_readline_edits_the_line(scene: Scene) -> None:
    """What TAB does to the line: insert a unique candidate (also after `=`), and
    no file name where none is an argument (git's completion falls back to them)."""
    rc = scene.root / "bashrc"
    rc.write_text(f"source {shlex.quote(str(BASH_COMPLETION))}\nPS1='$ '\n"
                  f"cd {shlex.quote(str(scene.repo))}\n")
    tmux = ["tmux", "-L", f"git-claim-test-{os.getpid()}", "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-x", "150", "-y", "20",
                    f"bash --noprofile --rcfile {shlex.quote(str(rc))} -i"],
                   env=_shell_env(scene, "installed"), check=True)

    def line() -> str:
        """The line being edited (tmux drops the trailing spaces)."""
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "0"], check=True,
                                capture_output=True, text=True).stdout
        return ([row for row in screen.splitlines() if row.startswith("$")] or [""])[-1]

    def wait_for(text: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while line() != text and time.monotonic() < deadline:
            time.sleep(0.1)
        return line()

    try:
        assert wait_for("$", 30) == "$"
        # X typed after the TAB shows whether a space followed the completed word
        for typed, expected in (("git claim li", "git claim list X"),
                                ("git reap --ttl=15", "git reap --ttl=15m X"),
                                ("git-release P", "git-release PROJ-7 X"),
                                ("git release 640 t", "git release 640 tX")):
            subprocess.run([*tmux, "send-keys", "-t", "0", typed, "Tab", "X"], check=True)
            assert wait_for(f"$ {expected}", 30) == f"$ {expected}"
            subprocess.run([*tmux, "send-keys", "-t", "0", "C-u"], check=True)
            assert wait_for("$", 30) == "$"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


@pytest.mark.skipif(not available("fish"), reason="fish is not installed")
def test_fish_shows_backlog_titles_made_safe(scene: Scene) -> None:
    done = subprocess.run(["fish", "-c",
                           f"cd {fish_quote(str(scene.repo))}; complete -C 'git claim 70'"],
                          env=_shell_env(scene, "installed"), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.splitlines() == ["700\tFix the login page", "701\tColour ?[31mred"]


# -- the candidate path: the click tree, without pygit2 ---------------------------------

def test_a_completion_request_imports_no_pygit2(scene: Scene) -> None:
    """The candidates come from the click commands (click is imported), and our claims
    are checked on the remote by a child process: pygit2 stays out of the TAB itself."""
    env = dict(scene.env, PYTHONPROFILEIMPORTTIME="1")
    done = subprocess.run(["git-claim", "--complete", "release", ""], env=env, cwd=scene.repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and set(done.stdout.split()) == HELD, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "click" in imported
    assert not {name for name in imported if name.split(".")[0] == "pygit2"}


def test_candidates_outside_a_repository_and_from_broken_files(
        scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from git_claim.cli.tab import command_table
    from git_claim.completion import complete

    table = command_table()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert complete(["release", ""], table) == []
    assert complete(["claim", "li"], table) == ["list"]
    monkeypatch.chdir(scene.repo)
    assert sorted(complete(["release", ""], table)) == sorted(HELD)  # broken.json is skipped
    assert complete(["claim", "70"], table) == ["700\tFix the login page", "701\tColour ?[31mred"]
    assert complete(["claim", "#70"], table)[0].startswith("#700\t")
    monkeypatch.chdir(scene.root / "other")  # a cache, but no source configured any more
    assert complete(["claim", "70"], table) == [] and complete(["release", ""], table) == ["900"]
    assert complete(["nonsense", ""], table) == [] and complete([], table) == []


# -- the table is the click tree ----------------------------------------------------------

def test_the_table_is_read_from_the_click_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command or option added to the click tree is completed with no other change."""
    import click

    from git_claim.cli.claim_cmd import claim_group
    from git_claim.cli.reap_cmd import reap_command
    from git_claim.cli.tab import command_table
    from git_claim.completion import complete

    frob = click.Command("frobnicate", params=[
        click.Option(["--wobble"], type=click.Choice(["low", "high"])),
        click.Option(["--quiet"], is_flag=True)])
    monkeypatch.setitem(claim_group.commands, "frobnicate", frob)
    monkeypatch.setattr(reap_command, "params",
                        [*reap_command.params, click.Option(["--older-than"])])
    table = command_table()
    assert complete(["claim", "fro"], table) == ["frobnicate"]
    assert complete(["claim", "frobnicate", "--"], table) == ["--wobble", "--quiet", "--help"]
    assert complete(["claim", "frobnicate", "--wobble", ""], table) == ["low", "high"]
    assert complete(["claim", "frobnicate", "--wobble=h"], table) == ["--wobble=high"]
    assert "--older-than" in complete(["reap", "--o"], table)


def test_what_the_table_adds_names_commands_and_options_that_exist() -> None:
    """The only words completion keeps beside click: which commands take our tickets,
    and suggested values of free-form options. Each must name something click has."""
    from git_claim.cli.tab import command_table
    from git_claim.completion import TICKET_KINDS, VALUE_HINTS

    table = command_table()
    assert set(TICKET_KINDS) <= set(table)
    for path in TICKET_KINDS:
        assert not table[path].subcommands and table[path].arguments is None, path
    for option in VALUE_HINTS:
        assert any(option in command.value_options for command in table.values()), option
        assert not any(option in command.flags for command in table.values()), option
        assert not any(option in command.choices for command in table.values()), option


# -- the shipped files, the install layout, and `git claim completion` --------------------

def test_completions_dir_holds_the_generated_files() -> None:
    from git_claim.cli.completion_cmd import shipped_files

    on_disk = {str(path.relative_to(ROOT / "completions")): path.read_text()
               for path in (ROOT / "completions").rglob("*") if path.is_file()}
    assert on_disk == shipped_files(), (
        "completions/ is stale: python -c 'from git_claim.cli.completion_cmd import write_files;"
        " write_files(\"completions\")'")


def test_setup_cfg_installs_the_files_where_the_shells_look() -> None:
    from git_claim.cli.completion_cmd import INSTALL_DIRS, shipped_files

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config.has_section("options.data_files"), "setup.cfg has no [options.data_files]"
    installed = {(target, source.strip())
                 for target, sources in config["options.data_files"].items()
                 for source in sources.split() if source.strip().startswith("completions/")}
    wanted = {(INSTALL_DIRS[relative.rsplit("/", 1)[0]], f"completions/{relative}")
              for relative in shipped_files()}
    assert installed == wanted


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_git_claim_completion_prints_the_script(scene: Scene, shell: str) -> None:
    from git_claim.cli.completion_cmd import script

    printed = subprocess.run(["git", "claim", "completion", shell], env=scene.env, cwd=scene.repo,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0 and printed.stdout == script(shell), printed.stderr
    if shutil.which(shell) and shell != "fish":
        checked = subprocess.run([shell, "-n", "-c", printed.stdout], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, checked.stderr
    elif shutil.which(shell):
        checked = subprocess.run([shell, "--no-execute", "-c", printed.stdout],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_agents_sharing_a_checkout_are_offered_their_own_claims(make_world) -> None:
    """Agents in one checkout, named by GIT_CLAIM_AGENT, by --agent on the line, by
    claim.agent or by default: each TAB after `git release` offers only what that agent
    may release, right after another agent's TAB too (the cached answer is the other's),
    and offline; `list` stars only those."""
    world = make_world("path", "libgit2")
    shared = world.agent("shared")
    base = {key: value for key, value in shared.env.items() if key != "GIT_CLAIM_AGENT"}
    alice = dict(base, GIT_CLAIM_AGENT="alice")
    bob = dict(base, GIT_CLAIM_AGENT="bob")
    assert shared.cmd("claim", "101", env=alice).code == 0
    assert shared.cmd("claim", "202", env=bob).code == 0
    assert shared.cmd("claim", "303", env=base).code == 0  # the default name
    assert shared.cmd("-c", "claim.agent=carol", "claim", "404", env=base).code == 0

    def offered(env: dict[str, str], *words: str) -> list[str]:
        done = subprocess.run(["git-claim", "--complete", "release", *words, ""], env=env,
                              cwd=shared.workdir, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    carol = dict(base, GIT_CONFIG_PARAMETERS="'claim.agent'='carol'")  # as `git -c` passes it
    for _ in range(2):  # the second round: from the cache, each agent after another
        assert offered(bob) == ["202"]
        assert offered(alice) == ["101"]
        assert offered(base) == ["303"]
        assert offered(carol) == ["404"]
        assert offered(base, "--agent", "alice") == ["101"]
        assert offered(bob, "--agent=alice") == ["101"]
    listed = shared.cmd("claim", "list", "--json", env=bob)
    assert listed.code == 0, listed
    starred = {row["ticket"] for row in json.loads(listed.stdout) if row["ours"]}
    assert starred == {"202"}, listed.stdout
    assert shared.cmd("release", "101", env=bob).code != 0  # not offered: not releasable
    # offline: the remote cannot be read; each agent is still offered only its own claims
    from git_claim.live_claims import CACHE_SECONDS

    served = world.repo.path
    served.rename(served.with_name(served.name + ".away"))
    try:
        time.sleep(CACHE_SECONDS)  # past the cached answers
        assert offered(base) == ["303"]
        assert offered(bob) == ["202"]
        assert offered(base, "--agent", "alice") == ["101"]
    finally:
        served.with_name(served.name + ".away").rename(served)
