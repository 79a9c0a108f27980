"""A delaying TCP proxy on 127.0.0.1 that makes loopback look like a WAN link.

Loopback hides what users pay: every round trip to GitHub or a team server
costs 20-200 ms. The proxy delays every chunk by half the round-trip time in
its own direction, through one queue per direction, so both directions flow
at once (a chunk waits for its own due time, never behind the other
direction's). Opening a connection costs one more round trip: the first chunk
from the client is held until one RTT after the accept, as the TCP handshake
would hold it.

It also counts what a link would see: connections, and the *turns* of each
connection: the server answering after the client spoke. Each turn is one
request-response round trip the client waited for; bytes the client sends
last, with no answer (the flush-pkt libgit2 sends after a push's report, or
`git ls-remote` before it hangs up), cost it no wait and are no turn.

Run standalone for a manual check:
``python -m bench.wanproxy --listen 0 --to 127.0.0.1:9418 --rtt 80``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass
class LinkCounts:
    """What the proxy saw since the last reset: the figures a bench reports."""

    connections: int = 0
    turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(order=True)
class _Due:
    at: float
    order: int
    sock: socket.socket = field(compare=False)
    data: bytes = field(compare=False)  # b"" means: shut the write side down


class _DelayLine:
    """One sender thread that writes each chunk to its socket when it is due.

    A single heap for all sockets of one direction keeps the thread count
    small; chunks of one socket stay in order because their due times are
    non-decreasing and the counter breaks ties.
    """

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, at: float, sock: socket.socket, data: bytes) -> None:
        with self._cond:
            heapq.heappush(self._heap, _Due(at, next(self._order), sock, data))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                        not self._heap or self._heap[0].at > time.monotonic()):
                    wait = self._heap[0].at - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                due = heapq.heappop(self._heap)
            try:
                if due.data:
                    due.sock.sendall(due.data)
                else:
                    due.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class WanProxy:
    """Forward 127.0.0.1:<port> to an upstream address with a round-trip delay."""

    def __init__(self, upstream: tuple[str, int], rtt_ms: float, listen_port: int = 0) -> None:
        self.upstream = upstream
        self.rtt = rtt_ms / 1000.0
        self._counts = LinkCounts()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port: int = self._listener.getsockname()[1]
        self._up = _DelayLine()
        self._down = _DelayLine()
        self._stopped = False
        self.trace: list[tuple[float, int, str, int, bytes]] | None = None
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> WanProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._accepting.start()

    def stop(self) -> None:
        self._stopped = True
        try:
            # shutdown, not only close: it wakes the accept() blocked in the
            # other thread (close alone leaves it waiting on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        self._up.close()
        self._down.close()

    def set_rtt(self, rtt_ms: float) -> None:
        self.rtt = rtt_ms / 1000.0

    def reset(self) -> LinkCounts:
        """Return the counts so far and start new ones."""
        with self._lock:
            counts, self._counts = self._counts, LinkCounts()
        return counts

    def counts(self) -> LinkCounts:
        with self._lock:
            return LinkCounts(**vars(self._counts))

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        accepted = time.monotonic()
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._counts.connections += 1
        state = {"last": "down"}  # a turn is the server answering the client
        # The handshake: the client's connect() returns one RTT after it
        # began, and its first bytes take half an RTT more to arrive.
        first_due = accepted + self.rtt
        up = threading.Thread(target=self._pump, daemon=True,
                              args=(client, server, self._up, "up", state, first_due))
        down = threading.Thread(target=self._pump, daemon=True,
                                args=(server, client, self._down, "down", state, 0.0))
        up.start()
        down.start()
        up.join()
        down.join()
        # Let the delayed tail drain before closing both ends.
        time.sleep(self.rtt / 2 + 0.05)
        client.close()
        server.close()

    def _pump(self, source: socket.socket, sink: socket.socket, line: _DelayLine,
              direction: str, state: dict[str, str], not_before: float) -> None:
        last_due = 0.0
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            due = max(max(time.monotonic(), not_before) + self.rtt / 2, last_due)
            last_due = due
            if not data:
                line.put(due, sink, b"")
                return
            if self.trace is not None:
                self.trace.append((time.monotonic(), id(source), direction, len(data),
                                   data[:60]))
            with self._lock:
                if direction == "up":
                    self._counts.bytes_up += len(data)
                else:
                    self._counts.bytes_down += len(data)
                    if state["last"] == "up":
                        self._counts.turns += 1
                state["last"] = direction
            line.put(due, sink, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--to", required=True, help="HOST:PORT upstream")
    parser.add_argument("--rtt", type=float, default=80.0, help="round trip, ms")
    args = parser.parse_args()
    host, _, port = args.to.rpartition(":")
    proxy = WanProxy((host, int(port)), args.rtt, args.listen)
    proxy.start()
    print(f"127.0.0.1:{proxy.port} -> {args.to} at RTT {args.rtt:g} ms", flush=True)
    try:
        while True:
            time.sleep(5)
            print(proxy.counts(), flush=True)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
