"""The fault harness: real servers on 127.0.0.1, with faults injected on command.

- `FaultProxy`: a TCP proxy of ours in front of `git daemon` or the HTTP
  server. It passes traffic, refuses connections, cuts every open connection
  at once, cuts a push after the server's advertisement and before the
  client's upload, or delays the server's replies.
- `ServerGate`: a hook in the served repository that stops the server at a
  chosen step until the test lets it go. With `reference-transaction` and
  state `committed`, git has updated the ref and not yet reported to the
  client; with `pre-receive`, nothing is applied yet.
- `process_tree`: a client and all it started (the `git` wrapper, the tool,
  the command under `git claim run`), to freeze, resume or check on.
- Shifted clocks come from GIT_CLAIM_CLOCK_OFFSET; steps inside the tool come
  from its pause points (GIT_CLAIM_TEST_PAUSE, see `agents.PausePoint`).
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from agents import Agent, Outcome, remote_refs
from servers import ServedRepo

HOST = "127.0.0.1"
GATE_TIMEOUT = 60  # seconds a gated server waits at most (never hang the suite)
CHUNK = 65536


# --------------------------------------------------------------------------
# the proxy


class _Link:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.head = b""  # the first bytes the client sent (git://: its request)
        self.receive_pack = False  # git://: the client asked for git-receive-pack
        self.server_spoke = False  # the server has sent something (its advertisement)
        self.closed = False
        self.lock = threading.Lock()

    def close(self, *, reset: bool) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            try:
                if reset:  # close with RST, not FIN: the peer sees "connection reset"
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # wakes our pump blocked on this socket; SHUT_RD sends nothing to the peer
                sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that forwards to `target_port`, with faults on command.

    Modes: "pass" forwards; "refuse" resets every new connection at once;
    "cut-upload" lets the next push receive the server's advertisement, then
    resets the connection when the client starts its upload (the server sees
    no commands: nothing is applied), and returns to "pass".
    `cut()` resets every connection open now. `delay` holds each chunk the
    server sends for that many seconds.
    """

    def __init__(self, target_port: int) -> None:
        self.target = (HOST, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.mode = "pass"
        self.delay = 0.0
        self.events: list[str] = []  # what the proxy did, for assertions and failure reports
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    # control ----------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        assert mode in ("pass", "refuse", "cut-upload"), mode
        with self._lock:
            self.mode = mode

    def cut(self, *, then: str | None = None) -> int:
        """Reset every open connection (after switching to mode `then`); how many were cut."""
        with self._lock:
            if then is not None:
                self.mode = then
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.close(reset=True)
        self._event(f"cut {len(links)}")
        return len(links)

    def stop(self) -> None:
        """Stop accepting, wait for the accepting thread to end, then cut every link.

        The thread must be gone before the listener's descriptor is closed: a
        thread still in (or about to retry) accept() on that number would
        otherwise accept on whatever socket the number is given to next, such
        as the next test's proxy, and forward its clients to this proxy's
        server.
        """
        self._stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() in progress
        except OSError:
            pass
        self._acceptor.join(timeout=10)
        assert not self._acceptor.is_alive(), "the proxy's accepting thread did not end"
        try:
            self.listener.close()
        except OSError:
            pass
        self.cut()

    def url_for(self, url: str) -> str:
        """The served repository's URL with this proxy's port in place of the server's."""
        return re.sub(r"^(\w+://127\.0\.0\.1:)\d+", rf"\g<1>{self.port}", url)

    # internals --------------------------------------------------------------

    def _event(self, what: str) -> None:
        with self._lock:
            self.events.append(what)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._stopped:
                client.close()
                return
            with self._lock:
                mode = self.mode
            if mode == "refuse":
                self._event("refused")
                _Link(client, socket.socket()).close(reset=True)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
                self.events.append("accept")
            threading.Thread(target=self._pump_up, args=(link,), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(link,), daemon=True).start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _pump_up(self, link: _Link) -> None:
        """Client to server; where a push is cut before its upload."""
        try:
            while True:
                data = link.client.recv(CHUNK)
                if not data:
                    link.upstream.shutdown(socket.SHUT_WR)
                    return
                if len(link.head) < 256:
                    link.head += data[:256]
                    if not link.head.startswith((b"GET ", b"POST ")) \
                            and b"git-receive-pack " in link.head and not link.receive_pack:
                        link.receive_pack = True  # git://: the advertisement comes next
                        self._event("receive-pack")
                # git://: anything the client sends once the server has advertised its
                # refs is the upload; smart HTTP: the upload is a POST to git-receive-pack
                upload = (link.receive_pack and link.server_spoke) or (
                    data.startswith(b"POST ") and b"git-receive-pack" in data.split(b"\r\n", 1)[0])
                if upload:
                    with self._lock:
                        armed = self.mode == "cut-upload"
                        if armed:
                            self.mode = "pass"
                    if armed:
                        self._event("cut-upload")
                        self._forget(link)
                        link.close(reset=True)
                        return
                link.upstream.sendall(data)
        except OSError:
            pass
        finally:
            if link.closed:
                self._forget(link)
            if not link.receive_pack and not link.head.startswith((b"GET ", b"POST ")):
                self._event(f"other: {link.head[:48]!r}")

    def _pump_down(self, link: _Link) -> None:
        """Server to client, optionally delayed."""
        try:
            while True:
                data = link.upstream.recv(CHUNK)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                link.server_spoke = True
                link.client.sendall(data)
        except OSError:
            pass
        self._forget(link)
        link.close(reset=False)


def through(agent: Agent, proxy: FaultProxy) -> Agent:
    """Point the agent's origin at the proxy; the world's other agents stay direct."""
    agent.git("remote", "set-url", "origin", proxy.url_for(agent.repo.url))
    return agent


# --------------------------------------------------------------------------
# server-side gates (hooks in the served repository)


class ServerGate:
    """Hold the server inside one of its hooks until the test says go.

    `reference-transaction` with state `committed`: git runs it after it
    has updated the refs and before receive-pack reports to the client.
    `pre-receive`: before anything is applied; `verdict` chooses its exit.
    The gate is one-shot: it holds the first update of `ref` (by `op`:
    create, delete, update or any) after `arm()`, then lets everything pass.
    """

    def __init__(self, repo: ServedRepo, folder: Path, ref: str, *, hook: str =
                 "reference-transaction", state: str = "committed", op: str = "any") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.hook_path = repo.path / "hooks" / hook
        zero = "0" * 40
        ops = {"create": f'[ "$old" = {zero} ]', "delete": f'[ "$new" = {zero} ]',
               "update": f'[ "$old" != {zero} ] && [ "$new" != {zero} ]', "any": "true"}
        state_check = f'[ "$1" = "{state}" ] || exit 0\n' if hook == "reference-transaction" else ""
        f = str(folder)
        self.hook_path.write_text(
            "#!/bin/sh\n"
            f"{state_check}"
            "hit=\n"
            "while read old new ref; do\n"
            f'  if [ "$ref" = "{ref}" ] && {ops[op]}; then hit=1; fi\n'
            "done\n"
            f'[ -n "$hit" ] && [ -e "{f}/armed" ] || exit 0\n'
            f'rm -f "{f}/armed"\n'
            f'touch "{f}/reached"\n'
            "n=0\n"
            f'while [ ! -e "{f}/go" ] && [ $n -lt {GATE_TIMEOUT * 100} ]; do\n'
            "  sleep 0.01; n=$((n+1))\n"
            "done\n"
            f'exit "$(cat "{f}/go" 2>/dev/null || echo 0)"\n')
        self.hook_path.chmod(0o755)

    def arm(self) -> None:
        for name in ("reached", "go"):
            (self.folder / name).unlink(missing_ok=True)
        (self.folder / "armed").write_text("")

    def wait_reached(self, process: subprocess.Popen[str] | None = None,
                     timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.folder / "reached").exists():
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the client ended before the server reached the gate:"
                                     f" {process.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not reach the gate in {timeout}s")
            time.sleep(0.01)

    def go(self, verdict: int = 0) -> None:
        (self.folder / "go").write_text(str(verdict))

    def remove(self) -> None:
        self.go()
        self.hook_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# processes


# `root` and its live descendants (from /proc): the same walk the tool uses
# to stop a command's whole process tree.
from git_claim.runner import process_tree  # noqa: E402, F401  (used by the tests)


def finish(process: subprocess.Popen[str], timeout: float = 60) -> Outcome:
    out, err = process.communicate(timeout=timeout)
    return Outcome(process.returncode, out, err)


# --------------------------------------------------------------------------
# inspecting the served repository


def claim_refs(repo: ServedRepo) -> dict[str, str]:
    return {ref: oid for ref, oid in remote_refs(repo).items() if ref.startswith("refs/claims/")}


# C0 controls but newline and tab, DEL, C1 controls, and the invisible format
# characters that reorder or hide text (bidi overrides and isolates, zero-width)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2069\ufeff]")


def assert_clean_output(outcome: Outcome, *, allowed: tuple[int, ...] = (0, 1, 3, 5)) -> None:
    """No crash, no raw escape or control character, a documented exit code."""
    text = outcome.stdout + outcome.stderr
    assert outcome.code in allowed, outcome
    assert "Traceback" not in text and "internal error" not in text, outcome
    bad = sorted({hex(ord(c)) for c in _UNSAFE.findall(text)})
    assert not bad, f"raw control characters {bad} in the output: {outcome!r}"
