"""Completion as a new user gets it: `pip install`, then `git claim completion install SHELL`.

The package is built and installed into a fresh venv (not editable), whose
bin/ is on PATH as a user has it; nothing else of the test environment is:
HOME is empty, XDG_DATA_DIRS and the other search paths are unset (Debian's
defaults), so the venv's share/ is on no shell's path, which is why the
install command exists. Then bash (with bash-completion, as Debian's
~/.bashrc loads it), zsh (with the ~/.zshrc line the command asks for) and
fish complete `git claim ` and `git release ` in a repository with claims on a
real remote: subcommands including take, and only our live claims. The TABs
are those of shells.py, as in test_completion.py; only the setup differs.

click and pygit2 come from the test's own environment through a .pth file,
so that the fresh venv needs no download of them; the package itself is a
wheel built from this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from agents import base_env
from shells import available, bash_tab, fish_tab, zsh_tab

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("git_claim", "completions", "man", "setup.cfg", "pyproject.toml", "README.md")
SUBCOMMANDS = {"take", "list", "reopen", "heartbeat", "verify", "log", "hook", "run", "gc",
               "compact", "guard", "completion"}
LIVE = {"640"}  # 650 is reaped, 660 released: both ours once, neither may be offered
TYPED = ["git claim ", "git claim t", "git release ", "git-release "]  # then TAB, in each shell


class User(NamedTuple):
    root: Path
    venv: Path
    home: Path
    repo: Path
    env: dict[str, str]


def _build_venv(root: Path) -> Path:
    source = root / "source"
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, source / name)
    wheels = root / "wheels"
    built = None
    for isolation in ([], ["--no-build-isolation"]):
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                                *isolation, "-w", str(wheels), str(source)],
                               capture_output=True, text=True, timeout=300)
        if built.returncode == 0:
            break
    if built is None or built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr[-500:] if built else ''}")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wheel = next(wheels.glob("git_claim-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> User:
    root = tmp_path_factory.mktemp("newuser")
    venv = _build_venv(root)
    home = root / "home"
    home.mkdir()
    env = base_env(home)
    for key in list(env):
        if key.startswith(("XDG_", "BASH_COMPLETION", "fish_", "ZDOTDIR", "FPATH", "VIRTUAL_ENV")):
            del env[key]
    env.update(PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", SHELL="/bin/bash",
               TERM="xterm")
    installed = subprocess.run(["git-claim", "--version"], env=env, capture_output=True,
                               text=True, timeout=60)
    assert installed.returncode == 0 and shutil.which("git-claim", path=env["PATH"]) == \
        str(venv / "bin" / "git-claim"), installed.stderr

    remote, repo = root / "remote.git", root / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], env=env, check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", str(remote)], env=env,
                   check=True)
    for argv in (["claim", "640"], ["claim", "650"], ["claim", "660"], ["release", "660"]):
        _run(repo, env, "git", *argv)
    time.sleep(1.1)  # 650: silent for over a second, stale under --ttl 1s
    _run(repo, env, "git", "reap", "--ttl", "1s", "--max-skew", "0s", "--force", "--ticket", "650")
    return User(root, venv, home, repo, env)


def _run(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done


def _install(user: User, shell: str) -> str:
    first = _run(user.repo, user.env, "git", "claim", "completion", "install", shell).stdout
    again = _run(user.repo, user.env, "git", "claim", "completion", "install", shell).stdout
    assert "wrote" not in again and "up to date:" in again, again  # idempotent
    return first


def _assert_offered(offered: list[list[str]]) -> None:
    """What a user must see after TAB on each of TYPED, in any shell."""
    claim, claim_t, release, release_direct = (set(candidates) for candidates in offered)
    assert claim >= SUBCOMMANDS, claim
    assert claim_t == {"take"}
    assert release == LIVE and release_direct == LIVE


# -- bash: bash-completion, loaded as Debian's ~/.bashrc does -----------------------------

@pytest.mark.skipif(not available("bash"), reason="bash-completion is not installed")
def test_bash_after_pip_install(user: User) -> None:
    before = set(bash_tab(["git claim "], env=user.env, cwd=user.repo)[0])
    assert "take" not in before  # the venv's share/ is on no path: this is what install fixes
    said = _install(user, "bash")
    target = user.home / ".local" / "share" / "bash-completion" / "completions"
    for name in ("git-claim", "git-release", "git-reap"):
        assert f"wrote {target / name}" in said, said
    _assert_offered(bash_tab(TYPED, env=user.env, cwd=user.repo))


@pytest.mark.skipif(not available("bash"), reason="bash-completion is not installed")
def test_bash_after_a_pipx_style_install(user: User, tmp_path: Path) -> None:
    """pipx keeps its venv off PATH and links the commands into ~/.local/bin: the one
    command sets completion up from there as well."""
    home = tmp_path / "home"
    links = home / ".local" / "bin"
    links.mkdir(parents=True)
    for name in ("git-claim", "git-release", "git-reap"):
        (links / name).symlink_to(user.venv / "bin" / name)
    env = dict(user.env, HOME=str(home), PATH=f"{links}:/usr/local/bin:/usr/bin:/bin")
    assert shutil.which("git-claim", path=env["PATH"]) == str(links / "git-claim")
    said = _run(user.repo, env, "git", "claim", "completion", "install", "bash").stdout
    target = home / ".local" / "share" / "bash-completion" / "completions"
    assert f"wrote {target / 'git-claim'}" in said, said
    _assert_offered(bash_tab(TYPED, env=env, cwd=user.repo))


# -- zsh: compsys, with the line the install asks for in ~/.zshrc -------------------------

@pytest.mark.skipif(not available("zsh"), reason="zsh is not installed")
def test_zsh_after_pip_install(user: User) -> None:
    said = _install(user, "zsh")
    assert f"wrote {user.home / '.zfunc' / '_git-claim'}" in said, said
    assert "fpath=(~/.zfunc $fpath)" in said, said  # ~/.zshrc does not say it yet
    (user.home / ".zshrc").write_text("fpath=(~/.zfunc $fpath)\nautoload -Uz compinit\n"
                                      "compinit -u\n")
    assert "fpath" not in _install(user, "zsh").replace("up to date", "")
    _assert_offered(zsh_tab(TYPED, env=user.env, cwd=user.repo, interactive_rc=True))


# -- fish ----------------------------------------------------------------------------------

@pytest.mark.skipif(not available("fish"), reason="fish is not installed")
def test_fish_after_pip_install(user: User) -> None:
    said = _install(user, "fish")
    assert f"wrote {user.home / '.config' / 'fish' / 'completions' / 'git-claim.fish'}" in said
    _assert_offered(fish_tab(TYPED, env=user.env, cwd=user.repo))


# -- the install command itself -------------------------------------------------------------

def test_install_leaves_a_file_that_is_not_ours(user: User, tmp_path: Path) -> None:
    env = dict(user.env, HOME=str(tmp_path))
    target = tmp_path / ".config" / "fish" / "completions" / "git-claim.fish"
    target.parent.mkdir(parents=True)
    target.write_text("# my own\n")
    refused = subprocess.run(["git", "claim", "completion", "install", "fish", "--json"],
                             env=env, cwd=user.repo, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert str(target) in json.loads(refused.stdout)["error"]["message"]
    assert target.read_text() == "# my own\n"
    assert not (tmp_path / ".config" / "fish" / "functions").exists()  # nothing half-done
    forced = subprocess.run(["git", "claim", "completion", "install", "fish", "--force", "--json"],
                            env=env, cwd=user.repo, capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr
    actions = {item["path"]: item["action"] for item in json.loads(forced.stdout)["files"]}
    assert actions[str(target)] == "replaced"
    assert actions[str(target.with_name("git-release.fish"))] == "wrote"
    unknown = subprocess.run(["git", "claim", "completion", "install"],
                             env=dict(env, SHELL="/bin/tcsh"), cwd=user.repo,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "which shell?" in unknown.stderr


def test_install_follows_the_shells_own_variables(tmp_path: Path) -> None:
    from git_claim.completion_install import user_dirs

    home = str(tmp_path)
    assert user_dirs("bash", {"HOME": home}) == \
        {"bash": tmp_path / ".local/share/bash-completion/completions"}
    assert user_dirs("bash", {"HOME": home, "XDG_DATA_HOME": "/d"}) == \
        {"bash": Path("/d/bash-completion/completions")}
    assert user_dirs("bash", {"HOME": home, "XDG_DATA_HOME": "/d",
                              "BASH_COMPLETION_USER_DIR": "/b"}) == {"bash": Path("/b/completions")}
    assert user_dirs("fish", {"HOME": home, "XDG_CONFIG_HOME": "/c"})[
        "fish/vendor_completions.d"] == Path("/c/fish/completions")
    assert user_dirs("zsh", {"HOME": home}) == {"zsh": tmp_path / ".zfunc"}


def test_completion_json_prints_the_script(user: User) -> None:
    done = _run(user.repo, user.env, "git", "claim", "completion", "bash", "--json")
    document = json.loads(done.stdout)
    plain = _run(user.repo, user.env, "git", "claim", "completion", "bash").stdout
    assert document == {"ok": True, "shell": "bash", "script": plain}


# -- -h: click, with no pygit2 ---------------------------------------------------------------

@pytest.mark.parametrize("program", ["git-claim", "git-release", "git-reap"])
def test_help_imports_no_pygit2(user: User, program: str) -> None:
    done = subprocess.run([str(user.venv / "bin" / "python"), "-X", "importtime",
                           str(user.venv / "bin" / program), "-h"], env=user.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "click" in imported
    heavy = {name for name in imported
             if name.split(".")[0] == "pygit2" or name in ("git_claim.session", "git_claim.lock",
                                                           "git_claim.claims")}
    assert not heavy, heavy


# -- a remote that does not answer ----------------------------------------------------------

def test_a_silent_remote_never_hangs_a_tab(user: User, tmp_path: Path) -> None:
    """The remote read is bounded: with the server stopped, a TAB answers within the
    timeout from what is known (our records, less the claims seen ended)."""
    from git_claim.live_claims import READ_TIMEOUT
    from servers import start_server

    server = start_server("git", tmp_path / "served")
    try:
        served = server.create_repo("silent")
        repo = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", served.url, str(repo)], env=user.env, check=True,
                       capture_output=True)
        for argv in (["claim", "800"], ["claim", "801"], ["release", "801"]):
            _run(repo, user.env, "git", *argv)
        assert _complete(repo, user.env) == ["800"]  # read from the remote
        time.sleep(5.1)  # past the cache
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            offered = _complete(repo, user.env)
            took = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert offered == ["800"]
        assert took < READ_TIMEOUT + 3, took  # the bound, and a loaded machine's start-up
    finally:
        server.stop()


def _complete(repo: Path, env: dict[str, str]) -> list[str]:
    done = _run(repo, env, "git-claim", "--complete", "release", "")
    return done.stdout.split()
