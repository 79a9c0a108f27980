"""Everything one command needs about where it runs: repository, settings, remote.

Built once per command; the transport is opened lazily so that commands that
never touch the remote never import libgit2's network code. This module
itself loads no pygit2: `open_session` starts git's discovery first and loads
libgit2 while git runs (the two take about as long, on two processors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .gateway.discovery import Location
from .gateway.discovery import start as start_discovery
from .ownership import OwnershipStore
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .gateway.localrepo import LocalRepo
    from .gateway.transport import Transport


@dataclass
class Session:
    location: Location
    config: dict[str, list[str]]
    settings: Settings
    local: LocalRepo = field(init=False)

    def __post_init__(self) -> None:
        from .gateway.localrepo import LocalRepo

        self.local = LocalRepo(self.location)

    @cached_property
    def transport(self) -> Transport:
        from .gateway.remote import open_transport

        return open_transport(self.local, self.config, self.settings.remote,
                              self.settings.transport)

    @cached_property
    def remote_url(self) -> str:
        """The remote's URL without credentials: what local records may keep."""
        from .gateway.credentials import safe_url
        from .gateway.remote import remote_url

        return safe_url(remote_url(self.config, self.settings.remote))

    @cached_property
    def store(self) -> OwnershipStore:
        return OwnershipStore(self.location.git_dir)


def open_session(cwd: Path | None = None, **overrides: str | None) -> Session:
    discovery = start_discovery(cwd)  # `git rev-parse` and `git config --list`, side by side
    # Every session reads or writes objects through libgit2: loading it (the slowest
    # import of a command) while the two git processes run takes their time off the
    # command's. (A git error is still raised by result(), after this import.)
    from .gateway import localrepo  # noqa: F401

    location, config = discovery.result()
    return Session(location, config, load_settings(location, config, **overrides))
