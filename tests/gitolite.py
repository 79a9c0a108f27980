"""A real gitolite3 host for tests: gitolite under a private HOME, behind sshd.

``GitoliteServer`` is an :class:`servers.SshServer` whose keys run
``gitolite-shell`` instead of a shell: gitolite is set up for the current
user with its home (``.gitolite.rc``, ``.gitolite/``, ``repositories/``)
inside the server's private state directory, two ssh keys are known to it,
``agent`` and ``maintainer``, and every repository it serves gets the rules
docs/hosting.md gives for gitolite, plus what agents need for branches::

    @agents = agent
    repo @projects
        RW+CD   refs/claims/         = maintainer
        RWC     refs/claims/         = @agents
        RWC     refs/notes/claims/   = @agents
        RW+C    refs/heads/          = @agents

(With any ``C`` rule in a repository gitolite asks for ``C`` to create any
ref, so the branch rule needs it too; with any ``D`` rule, deletes need
``D``. The branch rule names ``refs/heads/``: a bare ``RW+ = @all`` means
``refs/.*`` and would let agents rewind claims and notes.) The configuration
is compiled with ``gitolite setup``, later with ``gitolite compile`` and the
``POST_COMPILE`` trigger, exactly as a change pushed to gitolite-admin would
be. Each key's authorized_keys line is::

    command="env HOME=<gitolite home> <.../gitolite-shell> agent",restrict <key>

URLs are ``ssh://<user>@127.0.0.1:<port>/<name>.git``. The agent key is the
server's ``client_key``, so ``install_ssh_client_home`` and ``ssh_command``
give a client the agent's identity; ``install_gitolite_client_home(home,
server, "maintainer")`` and ``ssh_command(home, "maintainer")`` the
maintainer's. ``stop`` stops sshd by its PID and removes everything.

``gitolite_server`` is a module-scoped fixture that skips (with the reason)
when gitolite3 or OpenSSH is not installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import (
    HOST,
    ServedRepo,
    ServerError,
    SshServer,
    _git,
    _keygen,
    _server_env,
    install_ssh_client_home,
)

__all__ = ["GitoliteServer", "gitolite_server", "gitolite_missing", "install_gitolite_client_home"]

GITOLITE = shutil.which("gitolite") or "/usr/bin/gitolite"


def _gitolite_shell() -> str:
    """Debian's gitolite3 keeps it in /usr/share/gitolite3; an install from
    source links `gitolite` to its src directory, next to gitolite-shell."""
    for candidate in (Path("/usr/share/gitolite3/gitolite-shell"),
                      Path(GITOLITE).resolve().parent / "gitolite-shell"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return "/usr/share/gitolite3/gitolite-shell"


GITOLITE_SHELL = _gitolite_shell()
KEYS = ("agent", "maintainer")

RULES = """\
@agents = agent
{groups}
repo @projects
    RW+CD   refs/claims/         = maintainer
    RWC     refs/claims/         = @agents
    RWC     refs/notes/claims/   = @agents
    RW+C    refs/heads/          = @agents
"""


def gitolite_missing() -> str | None:
    """Why a gitolite host cannot run here, or None when it can."""
    if not os.access(GITOLITE_SHELL, os.X_OK) or not os.access(GITOLITE, os.X_OK):
        return f"gitolite3 is not installed ({GITOLITE_SHELL}, {GITOLITE})"
    if not SshServer.available() or shutil.which("ssh") is None:
        return "OpenSSH server or client is not installed"
    return None


class GitoliteServer(SshServer):
    scheme = "gitolite"

    def __init__(self, root: Path | str):
        # `root` is only a working directory: the repositories live in
        # gitolite's home, inside the private state directory
        super().__init__(root)
        self.repos: list[str] = []

    # files in the state directory -------------------------------------------

    @property
    def gitolite_home(self) -> Path:
        assert self.state_dir is not None, "server not started"
        return self.state_dir / "gitolite-home"

    def key(self, name: str) -> Path:
        assert self.state_dir is not None, "server not started"
        if name not in KEYS:
            raise ValueError(f"unknown key {name!r}; expected one of {KEYS}")
        return self.state_dir / f"{name}_ed25519"

    @property
    def client_key(self) -> Path:
        return self.key("agent")

    @property
    def client_pubkey(self) -> Path:
        return self.client_key.with_name(self.client_key.name + ".pub")

    def pubkey(self, name: str) -> Path:
        return self.key(name).with_name(self.key(name).name + ".pub")

    # setup ------------------------------------------------------------------

    def _gitolite_env(self) -> dict[str, str]:
        env = _server_env(self.gitolite_home, USER=self.user)
        env.pop("XDG_CONFIG_HOME", None)
        return env

    def gitolite(self, *args: str) -> str:
        """Run ``gitolite <args>`` as the host's administrator would."""
        proc = subprocess.run([GITOLITE, *args], env=self._gitolite_env(), cwd=self.gitolite_home,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServerError(f"gitolite {' '.join(args)} failed ({proc.returncode}):\n"
                              f"{proc.stdout}{proc.stderr}")
        return proc.stdout + proc.stderr

    def conf_text(self) -> str:
        groups = "".join(f"@projects = {name}\n" for name in self.repos)
        return RULES.format(groups=groups)

    def _write_conf(self) -> None:
        conf = self.gitolite_home / ".gitolite" / "conf" / "gitolite.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(self.conf_text())

    def _prepare(self) -> None:
        if gitolite_missing():
            raise ServerError(gitolite_missing())
        super()._prepare()  # host key, the agent key (client_key), authorized_keys
        _keygen(self.key("maintainer"), "maintainer")
        home = self.gitolite_home
        home.mkdir()
        if '"' in str(home) or "\\" in str(home):
            raise ServerError(f"cannot quote {home} in authorized_keys")
        # gitolite's own `git init --bare` and its setup commit read this
        (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[user]\n"
                                         "\tname = gitolite\n\temail = gitolite@localhost\n")
        keydir = home / ".gitolite" / "keydir"
        keydir.mkdir(parents=True)
        (home / ".gitolite" / "logs").mkdir()
        for name in KEYS:
            shutil.copyfile(self.pubkey(name), keydir / f"{name}.pub")
        self._write_conf()
        self.gitolite("setup", "-a", "admin")
        # sshd's own authorized_keys: each key runs gitolite-shell as its user
        lines = []
        for name in KEYS:
            command = f"env HOME={shlex.quote(str(home))} {GITOLITE_SHELL} {name}"
            lines.append(f'command="{command}",restrict {self.pubkey(name).read_text().strip()}\n')
        authorized = self.state_dir / "authorized_keys"
        authorized.write_text("".join(lines))
        authorized.chmod(0o600)

    # repositories -------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        super().repo_path(name)  # validates the name
        return self.gitolite_home / "repositories" / f"{name}.git"

    def url_for(self, name: str) -> str:
        self.repo_path(name)
        return f"ssh://{self.user}@{HOST}:{self._require_port()}/{name}.git"

    def create_repo(self, name: str) -> ServedRepo:
        """Add ``name`` to ``@projects`` and compile: gitolite creates the repository."""
        path, url = self.repo_path(name), self.url_for(name)
        if name in self.repos or path.exists():
            raise FileExistsError(path)
        self.repos.append(name)
        self._write_conf()
        self.gitolite("compile")
        self.gitolite("trigger", "POST_COMPILE")
        if not (path / "hooks" / "update").exists():
            raise ServerError(f"gitolite did not create {path} with its update hook")
        _git("--git-dir", str(path), "symbolic-ref", "HEAD", "refs/heads/main",
             env=self._gitolite_env())
        return ServedRepo(path=path, url=url)

    def ssh_command(self, home: Path | str, key: str = "agent") -> str:
        """A ``GIT_SSH_COMMAND`` that logs in with ``key`` ("agent" or "maintainer")."""
        command = super().ssh_command(home)
        agent_key = f"-i {shlex.quote(str(self.client_key))}"
        assert agent_key in command, command
        return command.replace(agent_key, f"-i {shlex.quote(str(self.key(key)))}")


def install_gitolite_client_home(home: Path | str, server: GitoliteServer,
                                 key: str = "agent") -> None:
    """``<home>/.ssh`` for ``key``'s identity: ``id_ed25519`` and ``known_hosts``
    (what libgit2 reads; the git CLI gets ``server.ssh_command(home, key)``)."""
    install_ssh_client_home(home, server)
    ssh_dir = Path(home) / ".ssh"
    (ssh_dir / "id_ed25519").write_bytes(server.key(key).read_bytes())
    (ssh_dir / "id_ed25519.pub").write_bytes(server.pubkey(key).read_bytes())


@pytest.fixture(scope="module")
def gitolite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitoliteServer]:
    missing = gitolite_missing()
    if missing:
        pytest.skip(missing)
    server = GitoliteServer(tmp_path_factory.mktemp("gitolite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
