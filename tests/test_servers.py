"""Smoke tests for the test git servers (tests/servers.py).

Everything goes through the real git CLI (and, in a few tests, pygit2) in a
hermetic environment: a temporary HOME, no system config, fixed identities.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from servers import (
        DaemonServer,
        GitServer,
        HttpServer,
        ServedRepo,
        SshServer,
        free_port,
        install_ssh_client_home,
        start_server,
    )
except ImportError:  # tests/ made into a package
    from tests.servers import (  # type: ignore[no-redef]
        DaemonServer,
        GitServer,
        HttpServer,
        ServedRepo,
        SshServer,
        free_port,
        install_ssh_client_home,
        start_server,
    )

HTTP_USER = "alice"
HTTP_PASSWORD = "s3cret pass"

ssh_available = SshServer.available() and shutil.which("ssh") is not None
needs_ssh = pytest.mark.skipif(not ssh_available, reason="OpenSSH server/client not installed")

SCHEMES = [
    "path",
    "file",
    "git",
    "http",
    "http-auth",
    pytest.param("ssh", marks=needs_ssh),
]


# --------------------------------------------------------------------------
# fixtures


def _new_server(kind: str, root: Path) -> GitServer:
    if kind == "http-auth":
        server = HttpServer(root, username=HTTP_USER, password=HTTP_PASSWORD)
        server.start()
        return server
    return start_server(kind, root)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Module-wide servers, started lazily, one per kind."""
    started: dict[str, GitServer] = {}

    def get(kind: str) -> GitServer:
        if kind not in started:
            started[kind] = _new_server(kind, tmp_path_factory.mktemp(f"srv-{kind}"))
        return started[kind]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture(params=SCHEMES)
def kind(request) -> str:
    return request.param


@pytest.fixture
def server(servers, kind) -> GitServer:
    return servers(kind)


def _hermetic_env(home: Path) -> dict[str, str]:
    drop = ("GIT_", "SSH_AUTH_SOCK", "SSH_ASKPASS", "XDG_CONFIG_HOME", "EMAIL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        LC_ALL="C",
        LANG="C",
    )
    return env


@dataclass
class Client:
    """The git CLI in a private HOME."""

    home: Path
    env: dict[str, str]

    def git(self, *args: str, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"git {' '.join(args)} failed ({proc.returncode}):\n"
                        f"{proc.stdout}\n{proc.stderr}")
        return proc

    def config(self, key: str, value: str) -> None:
        self.git("config", "--global", key, value)

    def use_credentials(self, username: str, password: str) -> None:
        # A shell-function credential helper, as a user would configure it.
        self.config("credential.helper",
                    f"!f() {{ echo username={username}; echo password='{password}'; }}; f")


def make_client(home: Path, server: GitServer, kind: str) -> Client:
    home.mkdir(parents=True, exist_ok=True)
    client = Client(home, _hermetic_env(home))
    client.config("init.defaultBranch", "main")
    if kind == "http-auth":
        client.use_credentials(HTTP_USER, HTTP_PASSWORD)
    if kind == "ssh":
        assert isinstance(server, SshServer)
        install_ssh_client_home(home, server)
        client.env["GIT_SSH_COMMAND"] = server.ssh_command(home)
    return client


@pytest.fixture
def client(tmp_path, server, kind) -> Client:
    return make_client(tmp_path / "client-home", server, kind)


def unique(prefix: str = "repo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def commit_file(client: Client, work: Path, name: str, data: bytes | str, message: str) -> str:
    path = work / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    client.git("add", name, cwd=work)
    client.git("commit", "-q", "-m", message, cwd=work)
    return client.git("rev-parse", "HEAD", cwd=work).stdout.strip()


def ls_remote(client: Client, url: str, *patterns: str) -> dict[str, str]:
    out = client.git("ls-remote", url, *patterns).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def on_disk(repo: ServedRepo, ref: str) -> str | None:
    proc = subprocess.run(
        ["git", "--git-dir", str(repo.path), "rev-parse", "--verify", "-q", ref],
        capture_output=True,
        text=True,
        env=_hermetic_env(repo.path),
    )
    return proc.stdout.strip() or None


def cloned(client: Client, repo: ServedRepo, where: Path) -> Path:
    client.git("clone", "-q", repo.url, str(where))
    return where


# --------------------------------------------------------------------------
# every scheme, real git CLI


def test_clone_commit_push_ls_remote(server, client, tmp_path):
    repo = server.create_repo(unique())
    assert repo.path.is_dir() and (repo.path / "HEAD").is_file()
    assert on_disk(repo, "HEAD") is None  # empty, HEAD -> main
    assert (repo.path / "HEAD").read_text().strip() == "ref: refs/heads/main"

    work = cloned(client, repo, tmp_path / "work")
    sha = commit_file(client, work, "README", "hello\n", "first")
    client.git("push", "-q", "origin", "main", cwd=work)

    assert ls_remote(client, repo.url) == {"HEAD": sha, "refs/heads/main": sha}
    assert on_disk(repo, "refs/heads/main") == sha

    # a second clone sees the commit
    again = cloned(client, repo, tmp_path / "again")
    assert (again / "README").read_text() == "hello\n"


def test_push_custom_ref(server, client, tmp_path):
    repo = server.create_repo(unique())
    work = cloned(client, repo, tmp_path / "work")
    sha = commit_file(client, work, "a.txt", "a\n", "claim")
    client.git("push", "-q", "origin", "HEAD:refs/claims/x", cwd=work)

    assert ls_remote(client, repo.url, "refs/claims/*") == {"refs/claims/x": sha}
    assert on_disk(repo, "refs/claims/x") == sha

    # a non-fast-forward update is refused, deletion works
    client.git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    refused = client.git("push", "origin", "HEAD:refs/claims/x", cwd=work, check=False)
    assert refused.returncode != 0
    assert "rejected" in refused.stderr
    client.git("push", "-q", "origin", ":refs/claims/x", cwd=work)
    assert ls_remote(client, repo.url, "refs/claims/*") == {}
    assert on_disk(repo, "refs/claims/x") is None


def test_urls(server, kind):
    name = unique()
    repo = server.create_repo(name)
    assert repo.path == server.root / f"{name}.git"
    expected = {
        "path": str(repo.path),
        "file": f"file://{repo.path}",
        "git": f"git://127.0.0.1:{getattr(server, 'port', None)}/{name}.git",
        "http": f"http://127.0.0.1:{getattr(server, 'port', None)}/{name}.git",
        "http-auth": f"http://127.0.0.1:{getattr(server, 'port', None)}/{name}.git",
        "ssh": f"ssh://{getattr(server, 'user', None)}@127.0.0.1:"
               f"{getattr(server, 'port', None)}{repo.path}",
    }[kind]
    assert repo.url == expected
    with pytest.raises(FileExistsError):
        server.create_repo(name)


# --------------------------------------------------------------------------
# HTTP specifics


@pytest.mark.parametrize("kind", ["http", "http-auth"])
def test_http_git_pushes_chunked(server, client, tmp_path):
    """git sends bodies above http.postBuffer with Transfer-Encoding: chunked."""
    assert isinstance(server, HttpServer)
    repo = server.create_repo(unique())
    work = cloned(client, repo, tmp_path / "work")
    client.config("http.postBuffer", "65536")  # git's minimum
    sha = commit_file(client, work, "blob.bin", os.urandom(400_000), "big")
    client.git("push", "-q", "origin", "main", cwd=work)
    assert on_disk(repo, "main") == sha

    posts = [
        r
        for r in server.requests()
        if r["method"] == "POST" and r["path"] == f"/{repo.path.name}/git-receive-pack"
        and r["status"] == 200
    ]
    assert any(r["transfer_encoding"] == "chunked" and r["body_bytes"] > 400_000
               for r in posts), posts


def test_http_auth_is_required(servers, tmp_path):
    server = servers("http-auth")
    repo = server.create_repo(unique())

    good = make_client(tmp_path / "good", server, "http-auth")
    work = cloned(good, repo, tmp_path / "work")
    sha = commit_file(good, work, "f", "x\n", "m")
    good.git("push", "-q", "origin", "main", cwd=work)
    assert ls_remote(good, repo.url) == {"HEAD": sha, "refs/heads/main": sha}
    assert {r["user"] for r in server.requests() if r["status"] == 200} == {HTTP_USER}

    wrong = make_client(tmp_path / "wrong", server, "http")
    wrong.use_credentials(HTTP_USER, "not the password")
    proc = wrong.git("ls-remote", repo.url, check=False)
    assert proc.returncode != 0
    assert "Authentication failed" in proc.stderr, proc.stderr
    proc = wrong.git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0

    anonymous = make_client(tmp_path / "anon", server, "http")
    proc = anonymous.git("ls-remote", repo.url, check=False)
    assert proc.returncode != 0
    assert "could not read Username" in proc.stderr, proc.stderr
    assert on_disk(repo, "main") == sha


def _raw_request(port: int, method: str, path: str, body: bytes = b"", headers=None, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunked:
            conn.request(method, path, body=iter([body[:100], body[100:]]), headers=headers or {},
                         encode_chunked=True)
        else:
            conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _pkt(line: str) -> bytes:
    return b"%04x%s" % (len(line) + 4, line.encode())


@pytest.mark.parametrize("kind", ["http"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_http_raw_gzip_request(server, client, tmp_path, chunked):
    """An upload-pack request gzip-encoded (and optionally chunked) by hand."""
    repo = server.create_repo(unique())
    work = cloned(client, repo, tmp_path / "work")
    sha = commit_file(client, work, "f", "x\n", "m")
    client.git("push", "-q", "origin", "main", cwd=work)

    request = _pkt(f"want {sha}\n") + b"0000" + _pkt("done\n")
    status, headers, body = _raw_request(
        server.port,
        "POST",
        f"/{repo.path.name}/git-upload-pack",
        gzip.compress(request),
        {"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        chunked=chunked,
    )
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert int(headers["Content-Length"]) == len(body)
    assert body.startswith(b"0008NAK\n") and b"PACK" in body
    last = [r for r in server.requests() if r["path"] == f"/{repo.path.name}/git-upload-pack"][-1]
    assert last["content_encoding"] == "gzip"
    assert last["transfer_encoding"] == ("chunked" if chunked else None)


def test_http_raw_status_codes(servers):
    anon = servers("http")
    status, _, _ = _raw_request(anon.port, "GET",
                                "/no-such-repo.git/info/refs?service=git-upload-pack")
    assert status == 404

    auth = servers("http-auth")
    repo = auth.create_repo(unique())
    path = f"/{repo.path.name}/info/refs?service=git-receive-pack"
    status, headers, _ = _raw_request(auth.port, "GET", path)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="git"'
    token = base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()
    status, headers, body = _raw_request(auth.port, "GET", path,
                                         headers={"Authorization": f"Basic {token}"})
    assert status == 200
    assert headers["Content-Type"] == "application/x-git-receive-pack-advertisement"
    assert body.startswith(b"001f# service=git-receive-pack\n")


def test_http_keep_alive(servers):
    """Several requests, 401 included, on one persistent connection."""
    server = servers("http-auth")
    repo = server.create_repo(unique())
    path = f"/{repo.path.name}/info/refs?service=git-upload-pack"
    token = base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        statuses = []
        basic = {"Authorization": f"Basic {token}"}
        for headers in ({}, basic, dict(basic)):
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
            assert not resp.will_close
        assert statuses == [401, 200, 200]
    finally:
        conn.close()


# --------------------------------------------------------------------------
# SSH specifics


@needs_ssh
def test_ssh_host_key_rotation(tmp_path):
    server = SshServer(tmp_path / "srv")
    server.start()
    try:
        repo = server.create_repo(unique())
        client = make_client(tmp_path / "client-home", server, "ssh")
        known_hosts = tmp_path / "client-home/.ssh/known_hosts"
        assert known_hosts.read_text() == server.known_hosts_line() + "\n"
        assert ls_remote(client, repo.url) == {}

        port, old_line = server.port, server.known_hosts_line()
        server.rotate_host_key()
        assert server.port == port
        assert server.known_hosts_line() != old_line
        proc = client.git("ls-remote", repo.url, check=False)
        assert proc.returncode != 0
        assert "Host key verification failed" in proc.stderr, proc.stderr

        install_ssh_client_home(client.home, server)  # replaces the stale line
        assert (client.home / ".ssh/known_hosts").read_text() == server.known_hosts_line() + "\n"
        assert ls_remote(client, repo.url) == {}
    finally:
        server.stop()


@needs_ssh
def test_ssh_unknown_key_is_refused(servers, tmp_path):
    server = servers("ssh")
    repo = server.create_repo(unique())
    client = make_client(tmp_path / "client-home", server, "ssh")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    client.env["GIT_SSH_COMMAND"] = server.ssh_command(client.home).replace(
        str(server.client_key), str(other))
    proc = client.git("ls-remote", repo.url, check=False)
    assert proc.returncode != 0
    assert "Permission denied" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# lifecycle


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("scheme", ["git", "http", pytest.param("ssh", marks=needs_ssh)])
def test_start_stop(tmp_path, scheme):
    server = start_server(scheme, tmp_path / "srv")
    pid, port, state = server.pid, server.port, server.state_dir
    assert server.running
    assert state.is_dir()
    assert not _refused("127.0.0.1", port)
    if sys.platform.startswith("linux"):  # bound to 127.0.0.1, not to every address
        assert _refused("127.0.0.2", port)

    server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # (not re-checking the port: another process may take it)
    assert not state.exists()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.create_repo("late")
    assert (tmp_path / "srv").is_dir()  # the repositories stay


def test_misc_api(tmp_path):
    port = free_port()
    assert isinstance(port, int) and 1024 < port < 65536
    with pytest.raises(ValueError):
        start_server("ftp", tmp_path)
    with pytest.raises(ValueError):
        HttpServer(tmp_path, username="only-user")
    daemon = DaemonServer(tmp_path / "d")
    with pytest.raises(RuntimeError):
        daemon.create_repo("not-started")
    with start_server("path", tmp_path / "p") as server:
        for bad in ("../escape", "/abs", "a/../b", ""):
            with pytest.raises(ValueError):
                server.create_repo(bad)
        nested = server.create_repo("group/project")
        assert nested.path == tmp_path / "p" / "group" / "project.git"


# --------------------------------------------------------------------------
# pygit2 (libgit2) as a client


@pytest.fixture
def libgit2_home():
    """libgit2 looks for ~/.ssh/known_hosts in its own home directory, which it
    reads from $HOME once, when it is initialised (at ``import pygit2``), so
    changing $HOME afterwards has no effect: set it through the option."""
    pygit2 = pytest.importorskip("pygit2")
    Option = pygit2.enums.Option
    saved = pygit2.option(Option.GET_HOMEDIR)

    def set_home(home: Path) -> None:
        pygit2.option(Option.SET_HOMEDIR, str(home))

    yield set_home
    pygit2.option(Option.SET_HOMEDIR, saved)


def _pygit2_commit(path: Path):
    import pygit2

    repo = pygit2.init_repository(str(path), initial_head="main")
    sig = pygit2.Signature("Test Author", "author@example.com")
    (path / "data.bin").write_bytes(os.urandom(200_000))
    repo.index.add("data.bin")
    repo.index.write()
    oid = repo.create_commit("HEAD", sig, sig, "from libgit2", repo.index.write_tree(), [])
    return repo, str(oid)


def _callbacks(kind: str, server: GitServer):
    import pygit2

    class Callbacks(pygit2.RemoteCallbacks):
        def __init__(self, credentials=None):
            super().__init__(credentials=credentials)
            self.checks: list[tuple[bool, bytes]] = []

        def certificate_check(self, certificate, valid, host):
            self.checks.append((valid, host))
            return valid

    if kind == "http-auth":
        return Callbacks(pygit2.UserPass(HTTP_USER, HTTP_PASSWORD))
    if kind == "ssh":
        assert isinstance(server, SshServer)
        return Callbacks(pygit2.Keypair(server.user, str(server.client_pubkey),
                                        str(server.client_key), ""))
    return Callbacks()


@pytest.mark.parametrize("kind", ["git", "http", "http-auth", pytest.param("ssh", marks=needs_ssh)])
def test_pygit2_push(server, kind, tmp_path, libgit2_home, monkeypatch):

    home = tmp_path / "client-home"
    home.mkdir()
    if kind == "ssh":
        install_ssh_client_home(home, server)
    monkeypatch.setenv("HOME", str(home))
    libgit2_home(home)

    served = server.create_repo(unique())
    repo, sha = _pygit2_commit(tmp_path / "work")
    remote = repo.remotes.create("origin", served.url)
    callbacks = _callbacks(kind, server)
    remote.push(["refs/heads/main:refs/claims/x"], callbacks=callbacks)
    assert on_disk(served, "refs/claims/x") == sha

    if kind == "ssh":
        assert callbacks.checks == [(True, b"127.0.0.1")]  # known_hosts matched
    if kind.startswith("http"):
        assert isinstance(server, HttpServer)
        posts = [r for r in server.requests()
                 if r["path"] == f"/{served.path.name}/git-receive-pack"]
        assert [r["transfer_encoding"] for r in posts] == ["chunked"]
        assert posts[0]["status"] == 200 and posts[0]["body_bytes"] > 200_000


@needs_ssh
def test_pygit2_ssh_host_key_checking(tmp_path, libgit2_home):
    """libgit2 reports whether the key matched known_hosts as ``valid``; a
    changed key looks exactly like an unknown one (valid=False)."""
    import pygit2

    server = SshServer(tmp_path / "srv")
    server.start()
    try:
        home = tmp_path / "client-home"
        install_ssh_client_home(home, server)
        libgit2_home(home)
        served = server.create_repo(unique())
        repo, sha = _pygit2_commit(tmp_path / "work")
        remote = repo.remotes.create("origin", served.url)

        callbacks = _callbacks("ssh", server)
        remote.push(["refs/heads/main:refs/claims/ok"], callbacks=callbacks)
        assert callbacks.checks == [(True, b"127.0.0.1")]

        server.rotate_host_key()
        callbacks = _callbacks("ssh", server)
        with pytest.raises(pygit2.GitError, match="invalid or unknown remote ssh hostkey"):
            remote.push(["refs/heads/main:refs/claims/changed"], callbacks=callbacks)
        assert callbacks.checks == [(False, b"127.0.0.1")]
        assert on_disk(served, "refs/claims/changed") is None

        (home / ".ssh" / "known_hosts").write_text("")
        callbacks = _callbacks("ssh", server)
        with pytest.raises(pygit2.GitError, match="invalid or unknown remote ssh hostkey"):
            remote.push(["refs/heads/main:refs/claims/unknown"], callbacks=callbacks)
        assert callbacks.checks == [(False, b"127.0.0.1")]

        install_ssh_client_home(home, server)  # known_hosts is re-read per connection
        callbacks = _callbacks("ssh", server)
        remote.push(["refs/heads/main:refs/claims/again"], callbacks=callbacks)
        assert callbacks.checks == [(True, b"127.0.0.1")]
        assert on_disk(served, "refs/claims/again") == sha
    finally:
        server.stop()
