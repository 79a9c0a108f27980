"""Fixtures: hermetic environments, real servers, and agents (clones) on them.

Servers start once per pytest-xdist worker and scheme; each test gets fresh
repositories on them. The `transport` parameter runs scenarios with both of
the tool's transports: libgit2 and the git CLI.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agents import Agent, base_env
from servers import GitServer, ServedRepo, SshServer, install_ssh_client_home, start_server

SCHEMES = ["path", "file", "git", "http", "ssh"]
TRANSPORTS = ["libgit2", "git"]
_names = itertools.count()


def _bin_dir() -> Path:
    return Path(sys.executable).parent


# A suite started in the background of a non-interactive shell (`pytest ... &`, a
# CI step run that way) inherits SIGINT ignored, and so would every process the
# tests start: `git claim run` keeps a signal ignored that it was started with
# ignoring (as nohup asks), so the tests that send SIGINT would see it ignored.
# They model a user whose Ctrl-C reaches the tool: give the processes we start
# SIGINT at its default (a caught signal is reset to the default across exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config: pytest.Config) -> None:
    if shutil.which("git-claim", path=str(_bin_dir())) is None \
            and shutil.which("git-claim") is None:
        raise pytest.UsageError("git-claim is not installed: run `pip install .` first")


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean HOME and git config for every test, and no inherited git variables."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith(("GIT_", "PRE_COMMIT")) or key == "SSH_AUTH_SOCK":
            monkeypatch.delenv(key)
    for key, value in base_env(home).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", f"{_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
    return home


@pytest.fixture(autouse=True)
def hermetic_libgit2(hermetic: Path) -> Iterator[None]:
    """libgit2 in this process reads no system config, and only the test's HOME.

    GIT_CONFIG_NOSYSTEM does not reach libgit2, and libgit2 took its global
    and XDG paths from $HOME when pygit2 was first imported, before the test
    set HOME: so its search paths are set here, and put back afterwards.
    """
    import pygit2
    from pygit2.enums import ConfigLevel

    paths = pygit2.settings.search_path
    wanted = {ConfigLevel.SYSTEM: "", ConfigLevel.PROGRAMDATA: "",
              ConfigLevel.XDG: str(hermetic / ".config" / "git"),
              ConfigLevel.GLOBAL: str(hermetic)}
    saved = {level: paths[level] for level in wanted}
    for level, path in wanted.items():
        paths[level] = path
    yield
    for level, path in saved.items():
        paths[level] = path


_servers: dict[str, GitServer] = {}


@pytest.fixture(scope="session")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


def get_server(scheme: str, root: Path) -> GitServer:
    if scheme == "ssh" and not SshServer.available():
        pytest.skip("sshd is not installed")
    if scheme not in _servers:
        _servers[scheme] = start_server(scheme, root / scheme)
    return _servers[scheme]


@pytest.fixture(scope="session", autouse=True)
def _stop_servers() -> Iterator[None]:
    yield
    for server in _servers.values():
        server.stop()
    _servers.clear()


class World:
    """One served repository and the agents that clone it."""

    def __init__(self, scheme: str, transport: str, server: GitServer, root: Path) -> None:
        self.scheme = scheme
        self.transport = transport
        self.server = server
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.repo: ServedRepo = server.create_repo(f"r{os.getpid()}-{next(_names)}")
        self.env = base_env(self.home)
        self.env["PATH"] = os.environ["PATH"]
        if scheme == "ssh":
            assert isinstance(server, SshServer)
            install_ssh_client_home(self.home, server)
            self.env["GIT_SSH_COMMAND"] = server.ssh_command(self.home)
        self._seed()

    def _seed(self) -> None:
        seed = self.root / "seed"
        subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], env=self.env, check=True)
        (seed / "README").write_text("seed\n")
        subprocess.run(["git", "-C", str(seed), "add", "README"], env=self.env, check=True)
        subprocess.run(["git", "-C", str(seed), "commit", "-qm", "seed"], env=self.env, check=True)
        subprocess.run(["git", "-C", str(seed), "push", "-q", self.repo.url, "main"],
                       env=self.env, check=True, capture_output=True)

    def agent(self, name: str | None = None, *, transport: str | None = None) -> Agent:
        name = name or f"agent-{next(_names)}"
        workdir = self.root / name
        subprocess.run(["git", "clone", "-q", self.repo.url, str(workdir)], env=self.env,
                       check=True, capture_output=True)
        env = dict(self.env)
        env["GIT_CLAIM_AGENT"] = name
        subprocess.run(["git", "-C", str(workdir), "config", "claim.transport",
                        transport or self.transport], env=env, check=True)
        return Agent(name, workdir, env, self.repo)


@pytest.fixture(params=SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_world(server_root: Path, tmp_path: Path) -> Callable[..., World]:
    counter = itertools.count()

    def make(scheme: str, transport: str = "libgit2") -> World:
        server = get_server(scheme, server_root)
        return World(scheme, transport, server, tmp_path / f"world{next(counter)}")

    return make


@pytest.fixture
def world_on() -> Callable[..., World]:
    """World itself, for a test that starts its own server (tests import no conftest by name)."""
    return World


@pytest.fixture
def world(make_world: Callable[..., World], scheme: str, transport: str) -> World:
    """Every server scheme with both transports: for the compare-and-swap scenarios."""
    return make_world(scheme, transport)


# Each scheme once and each transport on several schemes: for scenarios whose
# transport-specific part is already covered by the full matrix above.
SAMPLED = [("path", "libgit2"), ("file", "git"), ("git", "libgit2"), ("http", "git"),
           ("ssh", "libgit2")]


@pytest.fixture(params=SAMPLED, ids=[f"{s}-{t}" for s, t in SAMPLED])
def sampled_world(make_world: Callable[..., World], request: pytest.FixtureRequest) -> World:
    scheme, transport = request.param
    return make_world(scheme, transport)
