"""Fixtures of the fault tests; the harness itself is in faultkit.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultkit import FaultProxy


@pytest.fixture
def proxy_for() -> Iterator:
    """`proxy_for(world)`: a FaultProxy in front of the world's network server."""
    proxies: list[FaultProxy] = []

    def make(world) -> FaultProxy:
        port = getattr(world.server, "port", None)
        assert port, f"{world.scheme} has no network server to put a proxy in front of"
        proxy = FaultProxy(port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
