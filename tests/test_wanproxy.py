"""The bench's delaying proxy: bytes pass intact both ways, and it counts what a
link would see (connections; turns, the server answering the client).

The only timing checked is a lower bound on the proxy's own delay: a round
trip through it cannot be faster than the handshake and the round trip it
adds. Nothing here times git-claim.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # bench/ is not installed; after site-packages, to shadow nothing

from bench.wanproxy import WanProxy  # noqa: E402


class Upstream:
    """A server on 127.0.0.1 answering every message with its bytes reversed.

    Messages are length-prefixed (4 bytes) so that the test knows where one
    ends whatever the chunks the proxy forwards; a zero length means: do not
    answer this one.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn: socket.socket) -> None:
        with conn:
            while True:
                head = _read_exactly(conn, 4)
                if head is None:
                    return
                size = int.from_bytes(head, "big")
                if size == 0:
                    continue
                body = _read_exactly(conn, size)
                if body is None:
                    return
                conn.sendall(head + body[::-1])

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _ask(sock: socket.socket, body: bytes) -> bytes:
    sock.sendall(len(body).to_bytes(4, "big") + body)
    head = _read_exactly(sock, 4)
    assert head is not None, "the connection closed before the answer"
    answer = _read_exactly(sock, int.from_bytes(head, "big"))
    assert answer is not None
    return answer


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def _settle(proxy: WanProxy) -> None:
    """The proxy counts what it receives; the last answer left the server just now."""
    time.sleep(proxy.rtt / 2 + 0.2)


def test_bytes_pass_intact_both_ways_and_are_counted(upstream: Upstream) -> None:
    with WanProxy(("127.0.0.1", upstream.port), rtt_ms=0) as proxy:
        big = os.urandom(300_000)  # several chunks of the proxy's 64 KiB reads
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            assert _ask(sock, big) == big[::-1]
            assert _ask(sock, b"small") == b"llams"
        _settle(proxy)
        counts = proxy.reset()
    assert counts.bytes_up == counts.bytes_down == len(big) + 5 + 2 * 4
    assert counts.connections == 1


def test_turns_are_answers_and_a_trailing_message_is_none(upstream: Upstream) -> None:
    with WanProxy(("127.0.0.1", upstream.port), rtt_ms=0) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            for word in (b"one", b"two", b"three"):
                assert _ask(sock, word) == word[::-1]
            sock.sendall((0).to_bytes(4, "big"))  # a last word nobody answers (a flush-pkt)
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            assert _ask(sock, b"again") == b"niaga"
        _settle(proxy)
        counts = proxy.reset()
        assert (counts.connections, counts.turns) == (2, 4)
        # reset() started new counts
        assert proxy.counts().connections == 0 and proxy.counts().turns == 0


def test_a_round_trip_costs_at_least_the_handshake_and_the_rtt(upstream: Upstream) -> None:
    rtt = 0.1
    with WanProxy(("127.0.0.1", upstream.port), rtt_ms=rtt * 1000) as proxy:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            assert _ask(sock, b"ping") == b"gnip"
            first = time.monotonic() - started
            again = time.monotonic()
            assert _ask(sock, b"pong") == b"gnop"
            second = time.monotonic() - again
    # lower bounds only: the proxy holds the bytes at least this long
    assert first >= 2 * rtt * 0.95  # the handshake's round trip and the exchange's
    assert second >= rtt * 0.95


def test_stop_ends_the_accepting_thread(upstream: Upstream) -> None:
    proxy = WanProxy(("127.0.0.1", upstream.port), rtt_ms=0)
    proxy.start()
    proxy.stop()
    proxy._accepting.join(5)
    assert not proxy._accepting.is_alive()
