"""Everything one command needs about where it runs: repository, settings, remote.

Built once per command; the transport is opened lazily so that commands that
never touch the remote never import libgit2's network code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .gateway.localrepo import LocalRepo, Location, locate, read_config
from .gateway.remote import open_transport, remote_url
from .gateway.transport import Transport
from .ownership import OwnershipStore
from .settings import Settings, load_settings


@dataclass
class Session:
    location: Location
    config: dict[str, list[str]]
    settings: Settings
    local: LocalRepo = field(init=False)

    def __post_init__(self) -> None:
        self.local = LocalRepo(self.location)

    @cached_property
    def transport(self) -> Transport:
        return open_transport(self.local, self.config, self.settings.remote,
                              self.settings.transport)

    @cached_property
    def remote_url(self) -> str:
        """The remote's URL without credentials: what local records may keep."""
        from .gateway.credentials import safe_url

        return safe_url(remote_url(self.config, self.settings.remote))

    @cached_property
    def store(self) -> OwnershipStore:
        return OwnershipStore(self.location.git_dir)


def open_session(cwd: Path | None = None, **overrides: str | None) -> Session:
    location = locate(cwd)
    config = read_config(location)
    return Session(location, config, load_settings(location, config, **overrides))
