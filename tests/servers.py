"""Real git servers listening on 127.0.0.1, for tests.

Nothing here mocks git: every server is the real thing (``git daemon``,
``git http-backend`` behind a small smart-HTTP front end, OpenSSH ``sshd``),
or a plain path / ``file://`` URL.

Typical use::

    server = start_server("http", tmp_path / "srv")
    try:
        repo = server.create_repo("project")
        ...  # git remote add origin <repo.url>; push; inspect repo.path
    finally:
        server.stop()

Every network server binds 127.0.0.1 only, picks its own free port and keeps
its state (logs, keys, configs) in a private temporary directory that ``stop``
removes, so several pytest-xdist workers can run servers side by side.

This file doubles as the script that runs the HTTP server in a child process
(``python servers.py --serve-http ...``); that part uses only the standard
library.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hmac
import json
import os
import pwd
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

__all__ = [
    "DaemonServer",
    "FileServer",
    "GitServer",
    "HttpServer",
    "PathServer",
    "ServedRepo",
    "SshServer",
    "ServerError",
    "free_port",
    "install_ssh_client_home",
    "start_server",
    "wait_for",
]

HOST = "127.0.0.1"
GIT = shutil.which("git") or "/usr/bin/git"
SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
START_TIMEOUT = 10.0  # seconds; startup normally takes a few tens of ms
STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 5
_REPO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


class ServerError(RuntimeError):
    """A server failed to start (the message carries the tail of its log)."""


# --------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process can grab it before it is used; the servers below retry
    with a new port when binding fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.005,
) -> None:
    """Poll ``condition`` until it is true; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)


def _server_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for server processes: no inherited GIT_* variables, no
    system or user git configuration (HOME points at a private directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        LC_ALL="C",
        LANG="C",
    )
    env.update(extra)
    return env


def _git(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [GIT, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServerError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _has_exited(proc: subprocess.Popen) -> bool:
    """True once ``proc`` has exited, *without* reaping it.

    Leaving the zombie in place keeps its PID (== process group id) reserved,
    so a later ``killpg`` can only ever reach processes we started.
    """
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


_SETPRIV = shutil.which("setpriv")


def _spawn(argv: list[str], *, env: dict[str, str], log: Path,
           stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``argv`` as leader of a new process group.

    On Linux, ``setpriv --pdeathsig TERM`` makes the server die with the test
    process even if that one is killed without running its cleanup.  The
    signal fires when the *thread* that started the child ends, so it is only
    used for servers started from the main thread.
    """
    if _SETPRIV and sys.platform.startswith("linux") \
            and threading.current_thread() is threading.main_thread():
        argv = [_SETPRIV, "--pdeathsig", "TERM", "--", *argv]
    with open(log, "ab") as log_file:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )


def _stop_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the process group led by ``proc`` (SIGTERM, then SIGKILL) and reap it."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            wait_for(lambda: _has_exited(proc), timeout, f"pid {proc.pid} to exit")
        except TimeoutError:
            pass
        # The leader is now a zombie (or stuck): its group id cannot have been
        # reused, so sweep whatever is left of the group (forked children).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# Servers still running when the interpreter exits get stopped.
_running: set[GitServer] = set()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_running):
        try:
            server.stop()
        except Exception:
            pass


# --------------------------------------------------------------------------
# public API


@dataclass
class ServedRepo:
    path: Path  # the bare repository on disk
    url: str  # what a client passes to `git remote add origin <url>`


class GitServer:
    """Base class: serves bare repositories kept under ``root``."""

    scheme: ClassVar[str] = ""

    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self._started = False

    # lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        self._started = False

    @property
    def running(self) -> bool:
        return self._started

    def __enter__(self) -> GitServer:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # repositories ----------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        if not _REPO_NAME.fullmatch(name) or ".." in name.split("/"):
            raise ValueError(f"bad repository name {name!r}")
        return self.root / f"{name}.git"

    def url_for(self, name: str) -> str:
        raise NotImplementedError

    def create_repo(self, name: str) -> ServedRepo:
        """Create the bare repository ``<root>/<name>.git`` (initial branch main)."""
        path = self.repo_path(name)
        url = self.url_for(name)  # fails early if the server is not started
        if path.exists():
            raise FileExistsError(path)
        env = _server_env(self.root)
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(path), env=env)
        self._configure_repo(path, env)
        return ServedRepo(path=path, url=url)

    def _configure_repo(self, path: Path, env: dict[str, str]) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme} root={self.root}>"


class PathServer(GitServer):
    """No server at all: the URL is the repository's absolute path."""

    scheme = "path"

    def url_for(self, name: str) -> str:
        return str(self.repo_path(name))


class FileServer(GitServer):
    """No server at all: the URL is ``file:///abs/path``."""

    scheme = "file"

    def url_for(self, name: str) -> str:
        return f"file://{self.repo_path(name)}"


class _ProcessServer(GitServer):
    """A server run as a child process group, with a private state directory."""

    def __init__(self, root: Path | str):
        super().__init__(root)
        self.port: int | None = None
        self.state_dir: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        assert self.state_dir is not None, "server not started"
        return self.state_dir / "server.log"

    def log_text(self) -> str:
        """The server's stderr so far (empty once stopped)."""
        return _tail(self.log_path, 1 << 20) if self.state_dir else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if self._started:
            return
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"git-{self.scheme}-server-")).resolve()
        try:
            self._prepare()
            self._launch()
        except BaseException:
            self.stop()
            raise
        self._started = True
        _running.add(self)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_group(proc)
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
        self._started = False
        _running.discard(self)

    def _require_port(self) -> int:
        if not self._started or self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self.port

    def _prepare(self) -> None:
        """Create files needed before the first launch."""

    def _argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        assert self.state_dir is not None
        home = self.state_dir / "home"
        home.mkdir(exist_ok=True)
        return _server_env(home)

    def _ready_marker(self, port: int) -> bytes:
        """What the server logs once it listens on ``port``.

        Waiting for this line rather than for the port to accept connections
        cannot be fooled by some other process that grabbed the same port.
        """
        raise NotImplementedError

    def _launch(self, port: int | None = None) -> None:
        """Start the process on ``port`` (or on free ports, retrying if taken)."""
        last_error = ""
        for _ in range(_PORT_ATTEMPTS):
            try_port = port or free_port()
            marker = self._ready_marker(try_port)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0

            def ready(log_start: int = log_start, marker: bytes = marker) -> bool:
                with open(self.log_path, "rb") as f:
                    f.seek(log_start)
                    return marker in f.read()

            proc = _spawn(self._argv(try_port), env=self._env(), log=self.log_path)
            try:
                wait_for(
                    lambda proc=proc: _has_exited(proc) or ready(),
                    START_TIMEOUT,
                    f"{self.scheme} server on port {try_port}",
                )
            except TimeoutError as e:
                _stop_group(proc)
                raise ServerError(f"{e}\n--- log ---\n{_tail(self.log_path)}") from None
            if not _has_exited(proc):
                self._proc, self.port = proc, try_port
                return
            _stop_group(proc)
            last_error = _tail(self.log_path)
            if port:
                # fixed port (restart): it may still be held briefly
                time.sleep(0.05)
        raise ServerError(f"{self.scheme} server failed to start\n--- log ---\n{last_error}")


class DaemonServer(_ProcessServer):
    """``git daemon`` with receive-pack enabled; URLs ``git://127.0.0.1:<port>/<name>.git``."""

    scheme = "git"

    def _argv(self, port: int) -> list[str]:
        return [
            GIT,
            "daemon",
            "--reuseaddr",
            f"--listen={HOST}",
            f"--port={port}",
            f"--base-path={self.root}",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            "--verbose",
            str(self.root),
        ]

    def _ready_marker(self, port: int) -> bytes:
        return b"Ready to rumble"

    def url_for(self, name: str) -> str:
        self.repo_path(name)
        return f"git://{HOST}:{self._require_port()}/{name}.git"


class HttpServer(_ProcessServer):
    """Smart HTTP: a small HTTP/1.1 server (child process running this file)
    that hands every request to ``git http-backend`` as CGI.

    Request bodies may be ``Content-Length`` or ``Transfer-Encoding: chunked``;
    ``Content-Encoding: gzip`` is passed on to http-backend.  With
    ``username``/``password`` every request needs HTTP Basic auth (401 with
    ``WWW-Authenticate: Basic realm="git"`` otherwise).  URLs are
    ``http://127.0.0.1:<port>/<name>.git`` (never with credentials).

    Each request is recorded; see :meth:`requests`.
    """

    scheme = "http"

    def __init__(self, root: Path | str, *, username: str | None = None,
                 password: str | None = None):
        super().__init__(root)
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.username = username
        self.password = password

    @property
    def access_log_path(self) -> Path:
        assert self.state_dir is not None, "server not started"
        return self.state_dir / "access.jsonl"

    def requests(self) -> list[dict]:
        """Requests served so far, oldest first.

        Keys: method, path, query, transfer_encoding, content_encoding,
        git_protocol, body_bytes (after de-chunking), authorized user, status.
        """
        if self.state_dir is None:
            return []
        try:
            lines = self.access_log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def _env(self) -> dict[str, str]:
        env = super()._env()
        if self.username is not None:
            env["_GIT_TEST_HTTP_USERNAME"] = self.username
            env["_GIT_TEST_HTTP_PASSWORD"] = self.password or ""
        return env

    def _launch(self, port: int | None = None) -> None:
        # The child binds port 0 itself and reports the port: no race at all.
        argv = [
            sys.executable,
            "-I",
            str(Path(__file__).resolve()),
            "--serve-http",
            "--root",
            str(self.root),
            "--access-log",
            str(self.access_log_path),
        ]
        proc = _spawn(argv, env=self._env(), log=self.log_path, stdout=subprocess.PIPE)
        try:
            line = _read_line(proc, START_TIMEOUT)
        except TimeoutError as e:
            _stop_group(proc)
            raise ServerError(f"http server: {e}\n--- log ---\n{_tail(self.log_path)}") from None
        m = re.fullmatch(rb"LISTENING (\d+)\n", line)
        if not m:
            _stop_group(proc)
            raise ServerError(f"http server failed to start: {line!r}\n"
                              f"--- log ---\n{_tail(self.log_path)}")
        self._proc, self.port = proc, int(m.group(1))

    def _configure_repo(self, path: Path, env: dict[str, str]) -> None:
        # Allow anonymous pushes (authenticated ones are allowed anyway since
        # the server sets REMOTE_USER).  Tests may flip this to false.
        _git("--git-dir", str(path), "config", "http.receivepack", "true", env=env)

    def url_for(self, name: str) -> str:
        self.repo_path(name)
        return f"http://{HOST}:{self._require_port()}/{name}.git"


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    """Read one line from ``proc.stdout`` within ``timeout`` (b"" on EOF)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:.1f}s waiting for the port")
            if sel.select(remaining):
                chunk = os.read(fd, 256)
                if not chunk:
                    break
                buf += chunk
    return buf


class SshServer(_ProcessServer):
    """OpenSSH ``sshd`` on 127.0.0.1 with a fresh ed25519 host key and a
    client key pair; URLs ``ssh://<user>@127.0.0.1:<port>/abs/path/<name>.git``.

    Login is for the current user, public key only (``client_key``).
    """

    scheme = "ssh"

    def __init__(self, root: Path | str):
        super().__init__(root)
        self.user = pwd.getpwuid(os.geteuid()).pw_name

    @classmethod
    def available(cls) -> bool:
        return os.access(SSHD, os.X_OK) and os.access(SSH_KEYGEN, os.X_OK)

    # files in the state directory
    @property
    def host_key(self) -> Path:
        assert self.state_dir is not None, "server not started"
        return self.state_dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        assert self.state_dir is not None, "server not started"
        return self.state_dir / "client_ed25519"

    @property
    def client_pubkey(self) -> Path:
        return self.client_key.with_name("client_ed25519.pub")

    def _prepare(self) -> None:
        if not self.available():
            raise ServerError(f"{SSHD} is not installed")
        if os.geteuid() == 0:
            # privilege separation directory, normally created by the init system
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        assert self.state_dir is not None
        _keygen(self.host_key, "git-test-host")
        _keygen(self.client_key, "git-test-client")
        authorized = self.state_dir / "authorized_keys"
        authorized.write_text("restrict " + self.client_pubkey.read_text())
        authorized.chmod(0o600)
        (self.state_dir / "session-home").mkdir()

    def _config(self, port: int) -> Path:
        assert self.state_dir is not None
        s = self.state_dir
        config = s / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {HOST}:{port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {s / 'sshd.pid'}",
                    f"AuthorizedKeysFile {s / 'authorized_keys'}",
                    "AuthenticationMethods publickey",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "StrictModes no",
                    "UsePAM no",
                    "UseDNS no",
                    "PrintMotd no",
                    "PermitTTY no",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "AllowAgentForwarding no",
                    "MaxStartups 100:30:200",
                    "AcceptEnv GIT_PROTOCOL",
                    # OpenSSH's default post-quantum hybrid key exchange costs
                    # ~0.3 s per connection on slow machines; leave it out
                    "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,"
                    "ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
                    "diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
                    "diffie-hellman-group14-sha256",
                    # the server-side git ignores the real user's configuration
                    f"SetEnv HOME={s / 'session-home'} GIT_CONFIG_NOSYSTEM=1",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        return config

    def _argv(self, port: int) -> list[str]:
        return [SSHD, "-D", "-e", "-f", str(self._config(port))]

    def _ready_marker(self, port: int) -> bytes:
        return f"Server listening on {HOST} port {port}.".encode()

    def rotate_host_key(self) -> None:
        """Restart sshd on the same port with a newly generated host key."""
        port = self._require_port()
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop_group(proc)
        self.host_key.unlink()
        self.host_key.with_name(self.host_key.name + ".pub").unlink()
        try:
            _keygen(self.host_key, "git-test-host")
            self._launch(port)
        except BaseException:
            self.stop()
            raise

    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` of the current host key."""
        public = self.host_key.with_name(self.host_key.name + ".pub")
        key_type, blob = public.read_text().split()[:2]
        return f"{key_type} {blob}"

    def known_hosts_line(self) -> str:
        return f"[{HOST}]:{self._require_port()} {self.host_public_key()}"

    def ssh_command(self, home: Path | str) -> str:
        """A ``GIT_SSH_COMMAND`` for the git CLI, trusting ``<home>/.ssh/known_hosts``."""
        known_hosts = Path(home) / ".ssh" / "known_hosts"
        return " ".join(
            [
                "ssh -F /dev/null",
                f"-i {shlex.quote(str(self.client_key))}",
                f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}",
                "-o GlobalKnownHostsFile=/dev/null",
                "-o StrictHostKeyChecking=yes",
                "-o BatchMode=yes",
                "-o IdentitiesOnly=yes",
            ]
        )

    def url_for(self, name: str) -> str:
        path = self.repo_path(name)
        return f"ssh://{self.user}@{HOST}:{self._require_port()}{path}"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def install_ssh_client_home(home: Path | str, server: SshServer) -> None:
    """Set up ``<home>/.ssh`` to talk to ``server``.

    Writes ``id_ed25519`` / ``id_ed25519.pub`` (copies of the server's client
    key) and adds the server's line to ``known_hosts``, replacing an older line
    for the same ``[127.0.0.1]:<port>``.
    """
    ssh_dir = Path(home) / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    key = ssh_dir / "id_ed25519"
    key.write_bytes(server.client_key.read_bytes())
    key.chmod(0o600)
    pub = ssh_dir / "id_ed25519.pub"
    pub.write_bytes(server.client_pubkey.read_bytes())
    pub.chmod(0o644)
    known_hosts = ssh_dir / "known_hosts"
    line = server.known_hosts_line()
    host = line.split()[0]
    kept = []
    if known_hosts.exists():
        kept = [line for line in known_hosts.read_text().splitlines()
                if line.split()[:1] != [host]]
    known_hosts.write_text("\n".join([*kept, line]) + "\n")
    known_hosts.chmod(0o644)


SERVERS: dict[str, type[GitServer]] = {
    cls.scheme: cls for cls in (PathServer, FileServer, DaemonServer, HttpServer, SshServer)
}


def start_server(scheme: str, root: Path | str, **kwargs) -> GitServer:
    """Create and start the server for ``scheme`` ("path", "file", "git",
    "http", "ssh"); ``kwargs`` go to the constructor (e.g. HTTP credentials)."""
    try:
        cls = SERVERS[scheme]
    except KeyError:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {sorted(SERVERS)}") from None
    server = cls(root, **kwargs)
    server.start()
    return server


# --------------------------------------------------------------------------
# the HTTP server itself (runs in the child process)


class _BadRequest(Exception):
    pass


def _read_chunked(rfile) -> bytes:
    body = bytearray()
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise _BadRequest("truncated chunk size line")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(f"bad chunk size line {line!r}") from None
        if size < 0:
            raise _BadRequest("negative chunk size")
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) != size:
            raise _BadRequest("truncated chunk")
        body += data
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise _BadRequest("chunk not followed by CRLF")
    while True:  # trailer section
        line = rfile.readline(8192)
        if line in (b"\r\n", b"\n", b""):
            break
    return bytes(body)


def _parse_cgi_output(out: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    headers: list[tuple[str, str]] = []
    status = 200
    pos = 0
    while True:
        nl = out.find(b"\n", pos)
        if nl < 0:
            raise ValueError("CGI output has no end of headers")
        line = out[pos:nl].rstrip(b"\r")
        pos = nl + 1
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ValueError(f"bad CGI header line {line!r}")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    return status, headers, out[pos:]


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    project_root: str
    credentials: tuple[str, str] | None
    access_log: str
    log_lock: threading.Lock


class _GitHTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "git-test-http/1.0"
    timeout = 120  # idle keep-alive connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args) -> None:
        pass  # the JSON access log replaces the default stderr log

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings != ["chunked"]:
                raise _BadRequest(f"unsupported Transfer-Encoding {te!r}")
            return _read_chunked(self.rfile)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise _BadRequest(f"bad Content-Length {length!r}") from None
        if n < 0:
            raise _BadRequest("negative Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise _BadRequest("truncated body")
        return data

    def _authorized_user(self) -> str | None:
        creds = self.server.credentials
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if creds is None or scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        ok = sep and hmac.compare_digest(user.encode(), creds[0].encode())
        ok = hmac.compare_digest(password.encode(), creds[1].encode()) and ok
        return user if ok else None

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        skip = {"content-length", "transfer-encoding", "connection"}
        for name, value in headers:
            if name.lower() not in skip:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _record(self, **entry) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.server.log_lock, open(self.server.access_log, "a") as f:
            f.write(line)

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        entry = dict(
            method=self.command,
            path=path,
            query=query,
            transfer_encoding=self.headers.get("Transfer-Encoding"),
            content_encoding=self.headers.get("Content-Encoding"),
            git_protocol=self.headers.get("Git-Protocol"),
            body_bytes=None,
            user=None,
        )
        try:
            body = self._read_body()
        except _BadRequest as e:
            self.close_connection = True
            self._record(status=400, **entry)
            self._send(400, [("Content-Type", "text/plain")], f"{e}\n".encode())
            return
        entry["body_bytes"] = len(body)

        user = None
        if self.server.credentials is not None:
            user = self._authorized_user()
            if user is None:
                self._record(status=401, **entry)
                self._send(
                    401,
                    [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")],
                    b"authentication required\n",
                )
                return
        entry["user"] = user

        env = {k: v for k, v in os.environ.items() if not k.startswith("_GIT_TEST_HTTP_")}
        env.update(
            GIT_PROJECT_ROOT=self.server.project_root,
            GIT_HTTP_EXPORT_ALL="1",
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL="HTTP/1.1",
            SERVER_SOFTWARE=self.server_version,
            SERVER_NAME=HOST,
            SERVER_PORT=str(self.server.server_address[1]),
            REQUEST_METHOD=self.command,
            PATH_INFO=urllib.parse.unquote(path),
            QUERY_STRING=query,
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR=self.client_address[0],
        )
        optional = {
            "CONTENT_TYPE": self.headers.get("Content-Type"),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding"),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol"),
            "REMOTE_USER": user,
            "AUTH_TYPE": "Basic" if user else None,
        }
        env.update({k: v for k, v in optional.items() if v})

        proc = subprocess.run([GIT, "http-backend"], input=body, env=env, capture_output=True)
        if proc.stderr:
            sys.stderr.buffer.write(proc.stderr)
            sys.stderr.flush()
        try:
            status, headers, out = _parse_cgi_output(proc.stdout)
        except ValueError as e:
            status, headers = 500, [("Content-Type", "text/plain")]
            out = f"http-backend failed (exit {proc.returncode}): {e}\n".encode() + proc.stderr
        # logged before replying, so a client that got its answer finds it logged
        self._record(status=status, **entry)
        self._send(status, headers, out)


def _serve_http(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="servers.py --serve-http")
    parser.add_argument("--root", required=True)
    parser.add_argument("--access-log", required=True)
    args = parser.parse_args(argv)

    server = _GitHTTPServer((HOST, 0), _GitHTTPHandler)
    server.project_root = args.root
    server.access_log = args.access_log
    server.log_lock = threading.Lock()
    username = os.environ.get("_GIT_TEST_HTTP_USERNAME")
    server.credentials = None if username is None else (
        username, os.environ.get("_GIT_TEST_HTTP_PASSWORD", ""))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sys.stdout.write(f"LISTENING {server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-http"]:
        _serve_http(sys.argv[2:])
    else:
        sys.exit("usage: servers.py --serve-http --root DIR --access-log FILE")
