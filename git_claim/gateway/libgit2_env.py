"""pygit2 for the gateway, with libgit2 reading the configuration git would read.

git skips the system configuration (/etc/gitconfig) when GIT_CONFIG_NOSYSTEM
is true. libgit2 reads no such variable: left alone, our libgit2 transport
would read a system file that the git CLI beside it ignores (a URL rewrite,
a proxy, a credential helper), so one command could see two configurations.
Every gateway module imports pygit2 from here, so libgit2's system and
ProgramData search paths are blanked before any repository or remote is
opened, and only when git itself would skip them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pygit2
from pygit2.enums import ConfigLevel

__all__ = ["honour_nosystem", "pygit2"]

NOSYSTEM = "GIT_CONFIG_NOSYSTEM"
_TRUE = {"true", "yes", "on"}
_FALSE = {"", "false", "no", "off"}


def _git_bool(value: str) -> bool:
    """A boolean as git reads an environment variable: words or an integer.

    A value git cannot parse makes git refuse to run; here it counts as true,
    the side that reads less configuration.
    """
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    try:
        return int(word) != 0
    except ValueError:
        return True


def honour_nosystem(environ: Mapping[str, str] = os.environ) -> bool:
    """Blank libgit2's system-wide config search paths when git would skip them.

    Returns whether it did. The setting is process-wide and stays for the
    process's life, as GIT_CONFIG_NOSYSTEM does for git.
    """
    value = environ.get(NOSYSTEM)
    if value is None or not _git_bool(value):
        return False
    paths = pygit2.settings.search_path
    paths[ConfigLevel.SYSTEM] = ""
    paths[ConfigLevel.PROGRAMDATA] = ""
    return True


honour_nosystem()
