"""Bad remotes: exit 3, one line on stderr, never a traceback.

With `--json` the same failure is one JSON object on stdout whose exit_code
is 3. Every case runs with both transports (libgit2 and the git CLI):
unreachable remotes, a wrong HTTP password, a changed ssh host key, no
repository at all, and a remote name that does not exist.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agents import Agent, Outcome, base_env, remote_refs, remote_refs_bytes
from servers import HttpServer, SshServer, free_port, install_ssh_client_home, start_server

HTTP_USER = "claimant"
RIGHT_PASSWORD = "right-Pw-5d8e71c0"
WRONG_PASSWORD = "wrong-Pw-a2f94b36"
_names = itertools.count()


# --------------------------------------------------------------------------
# helpers


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> Outcome:
    completed = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=120)
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def assert_one_line_error(outcome: Outcome) -> str:
    """Exit 3 with exactly one line on stderr and nothing on stdout; returns the line."""
    assert outcome.code == 3, outcome
    assert "Traceback" not in outcome.stderr, outcome
    assert outcome.stderr.count("\n") == 1 and outcome.stderr.endswith("\n"), outcome
    assert len(outcome.stderr.splitlines()) == 1, outcome
    assert "internal error" not in outcome.stderr, outcome
    assert outcome.stdout == "", outcome
    return outcome.stderr.strip()


def assert_json_error(outcome: Outcome) -> str:
    """Exit 3 with one JSON object on stdout (exit_code 3); returns its message."""
    assert outcome.code == 3, outcome
    assert "Traceback" not in outcome.stderr, outcome
    assert len(outcome.stdout.splitlines()) == 1, outcome
    document = json.loads(outcome.stdout)
    assert isinstance(document, dict), outcome
    assert document["exit_code"] == 3, outcome
    assert document["ok"] is False, outcome
    message = document["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message, outcome
    assert "internal error" not in message, outcome
    return message


def fails_both_ways(run_args: Callable[..., Outcome], *args: str) -> tuple[str, str]:
    """Run a command plainly and with --json; both must be clean exit-3 failures."""
    plain = assert_one_line_error(run_args(*args))
    as_json = assert_json_error(run_args(*args, "--json"))
    return plain, as_json


def seeded_clone(server, root: Path, transport: str, *,
                 prepare_home: Callable[[Path, dict[str, str]], None] | None = None) -> Agent:
    """A served repository with one commit, and a clone of it using `transport`."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(home)
    env["PATH"] = os.environ["PATH"]
    if prepare_home is not None:
        prepare_home(home, env)
    repo = server.create_repo(f"r{os.getpid()}-{next(_names)}")
    seed = root / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], env=env, check=True)
    (seed / "README").write_text("seed\n")
    subprocess.run(["git", "-C", str(seed), "add", "README"], env=env, check=True)
    subprocess.run(["git", "-C", str(seed), "commit", "-qm", "seed"], env=env, check=True)
    subprocess.run(["git", "-C", str(seed), "push", "-q", repo.url, "main"], env=env,
                   check=True, capture_output=True)
    workdir = root / "clone"
    subprocess.run(["git", "clone", "-q", repo.url, str(workdir)], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "-C", str(workdir), "config", "claim.transport", transport],
                   env=env, check=True)
    env["GIT_CLAIM_AGENT"] = "alice"
    return Agent("alice", workdir, env, repo)


# --------------------------------------------------------------------------
# unreachable remotes


def test_unreachable_remotes(make_world, transport):
    alice = make_world("path", transport).agent("alice")
    for scheme in ("git", "http"):
        url = f"{scheme}://127.0.0.1:{free_port()}/x.git"
        alice.git("remote", "set-url", "origin", url)
        plain, as_json = fails_both_ways(alice.cmd, "claim", "640")
        assert plain.startswith("git claim: "), plain
        for message in (plain, as_json):
            assert f"{scheme}://127.0.0.1" in message and "connect" in message.lower(), message
    # the other commands fail the same way
    assert_one_line_error(alice.cmd("claim", "list"))
    assert_one_line_error(alice.release("640"))


# --------------------------------------------------------------------------
# a wrong password over smart HTTP


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = start_server("http", tmp_path_factory.mktemp("auth-http"),
                          username=HTTP_USER, password=RIGHT_PASSWORD)
    try:
        assert isinstance(server, HttpServer)
        yield server
    finally:
        server.stop()


def use_password(home: Path, env: dict[str, str], password: str) -> None:
    """A credential helper in ~/.gitconfig that answers `get` with `password`."""
    helper = (f'!f() {{ test "$1" = get || exit 0; echo username={HTTP_USER};'
              f' echo password={password}; }}; f')
    subprocess.run(["git", "config", "--file", str(home / ".gitconfig"), "credential.helper",
                    helper], env=env, check=True)


def test_wrong_http_password(auth_server, tmp_path, transport):
    alice = seeded_clone(auth_server, tmp_path / "w", transport,
                         prepare_home=lambda home, env: use_password(home, env, RIGHT_PASSWORD))
    home = Path(alice.env["HOME"])
    use_password(home, alice.env, WRONG_PASSWORD)
    before = remote_refs_bytes(alice.repo)

    outcomes = [alice.claim("640"), alice.claim("640", "--json")]
    plain = assert_one_line_error(outcomes[0])
    as_json = assert_json_error(outcomes[1])
    for message in (plain, as_json):
        assert "authentication" in message.lower(), message
    assert remote_refs_bytes(alice.repo) == before

    use_password(home, alice.env, RIGHT_PASSWORD)
    won = alice.claim("640")
    outcomes.append(won)
    assert won.code == 0, won
    assert won.stdout.strip() == "claimed 640 (refs/claims/640)"
    assert "refs/claims/640" in remote_refs(alice.repo)
    # the helper in ~/.gitconfig is the only source of the password
    assert any(r["user"] == HTTP_USER and r["status"] == 200 for r in auth_server.requests())

    for outcome in outcomes:
        for secret in (RIGHT_PASSWORD, WRONG_PASSWORD):
            assert secret not in outcome.stdout and secret not in outcome.stderr, outcome


# --------------------------------------------------------------------------
# a changed ssh host key


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[SshServer]:
    """A private sshd: rotating its key must not disturb the shared one."""
    if not SshServer.available():
        pytest.skip("sshd is not installed")
    server = start_server("ssh", tmp_path / "sshd-root")
    try:
        assert isinstance(server, SshServer)
        yield server
    finally:
        server.stop()


def test_changed_ssh_host_key(ssh_server, tmp_path, transport):
    def trust(home: Path, env: dict[str, str]) -> None:
        install_ssh_client_home(home, ssh_server)
        env["GIT_SSH_COMMAND"] = ssh_server.ssh_command(home)

    alice = seeded_clone(ssh_server, tmp_path / "w", transport, prepare_home=trust)
    won = alice.claim("640")
    assert won.code == 0, won
    port = ssh_server.port

    ssh_server.rotate_host_key()
    assert ssh_server.port == port
    before = remote_refs_bytes(alice.repo)
    plain, as_json = fails_both_ways(alice.cmd, "claim", "641")
    if transport == "libgit2":
        for message in (plain, as_json):
            assert "host key" in message, message
    assert remote_refs_bytes(alice.repo) == before
    assert "refs/claims/641" not in remote_refs(alice.repo)

    # the host key was the only problem: trusting the new one fixes it
    install_ssh_client_home(Path(alice.env["HOME"]), ssh_server)
    won = alice.claim("641")
    assert won.code == 0, won


# --------------------------------------------------------------------------
# no repository, no such remote


def test_not_a_git_repository(tmp_path, transport):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ)
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    plain, as_json = fails_both_ways(
        lambda *args: run(["-c", f"claim.transport={transport}", *args], cwd=empty, env=env),
        "claim", "640")
    assert "not a git repository" in plain.lower(), plain
    assert list(empty.iterdir()) == []


def test_remote_that_does_not_exist(make_world, transport):
    world = make_world("path", transport)
    alice = world.agent("alice")
    before = remote_refs_bytes(world.repo)
    plain, as_json = fails_both_ways(alice.cmd, "claim", "640", "--remote", "nosuch")
    assert "nosuch" in plain and "nosuch" in as_json
    assert remote_refs_bytes(world.repo) == before
