"""Group-shared bare repositories over a path remote (core.sharedRepository).

git gives what it creates in a shared repository the modes the setting names;
libgit2 does not, and the first user's claim once left `refs/claims/` and new
object directories writable by that user alone. The expected modes here are
not written down by hand: each test has git itself create the same kinds of
paths (a fan-out directory and loose object, ref directories, a ref file, a
reflog, a rewritten packed-refs) in a twin repository under the same umask,
and compares.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ObjectType

from agents import base_env
from git_claim.errors import GitError
from git_claim.gateway.shared_perms import shared_writes

Modes = dict[str, int]  # "dir", "object" (a loose object) or "file" (refs, logs) -> st_mode bits


def _under_umask(umask: str, argv: list[str]) -> list[str]:
    return ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *argv]


def _run(argv: list[str], *, umask: str = "022", cwd: Path | None = None,
         input: str | None = None) -> str:
    completed = subprocess.run(_under_umask(umask, argv), cwd=cwd, input=input, check=False,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, f"{argv}: {completed.stderr}{completed.stdout}"
    return completed.stdout


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root`: its inode and mode (a replaced file has a new inode)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            status = path.lstat()
            found[str(path.relative_to(root))] = (status.st_ino, status.st_mode)
    return found


def _created(before: dict[str, tuple[int, int]],
             after: dict[str, tuple[int, int]]) -> dict[str, int]:
    return {path: mode for path, (inode, mode) in after.items()
            if path not in before or before[path][0] != inode}


def _kind(path: str, mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    return "object" if path.startswith("objects/") else "file"


def _modes_by_kind(created: dict[str, int]) -> dict[str, set[int]]:
    kinds: dict[str, set[int]] = {}
    for path, mode in created.items():
        if "pack/" in path or path.endswith(".lock"):
            continue
        kinds.setdefault(_kind(path, mode), set()).add(stat.S_IMODE(mode))
    return kinds


def _init_bare(path: Path, sharing: str | None, umask: str) -> None:
    """A bare repository as `git init --bare --shared=<sharing>` makes it."""
    if sharing is None:  # a `sharedRepository` line without a value: git reads it as true
        _run(["git", "init", "-q", "--bare", "-b", "main", str(path)], umask=umask)
        with open(path / "config", "a") as config:
            config.write("[core]\n\tsharedRepository\n")
    else:
        _run(["git", "init", "-q", "--bare", f"--shared={sharing}", "-b", "main", str(path)],
             umask=umask)
    _run(["git", "--git-dir", str(path), "config", "core.logAllRefUpdates", "always"])


def git_modes(where: Path, sharing: str | None, umask: str) -> Modes:
    """The modes git itself gives what it creates in a repository shared so."""
    twin = where / "git-twin.git"
    _init_bare(twin, sharing, umask)
    before = _snapshot(twin)
    git = ["git", "--git-dir", str(twin)]
    blob = _run([*git, "hash-object", "-w", "--stdin"], umask=umask, input="twin\n").strip()
    _run([*git, "update-ref", "-m", "twin", "refs/twin/a/b", blob], umask=umask)
    _run([*git, "update-ref", "-m", "twin", "refs/twin/a/c", blob], umask=umask)
    _run([*git, "pack-refs", "--all"], umask=umask)
    _run([*git, "update-ref", "-d", "refs/twin/a/b"], umask=umask)  # rewrites packed-refs
    _run([*git, "update-ref", "-m", "twin", "refs/twin/a/d", blob], umask=umask)  # a loose ref
    kinds = _modes_by_kind(_created(before, _snapshot(twin)))
    assert all(len(modes) == 1 for modes in kinds.values()), kinds
    assert set(kinds) == {"dir", "object", "file"}, kinds
    return {kind: modes.pop() for kind, modes in kinds.items()}


@pytest.mark.parametrize(("sharing", "umask", "scheme"),
                         [("group", "022", "path"), ("0640", "077", "file")])
def test_what_the_tool_creates_in_a_shared_bare_repo_has_gits_modes(
        tmp_path: Path, sharing: str, umask: str, scheme: str) -> None:
    expected = git_modes(tmp_path, sharing, umask)
    if (sharing, umask) == ("group", "022"):
        assert expected == {"dir": 0o2775, "file": 0o664, "object": 0o444}
    bare = tmp_path / "shared.git"
    _init_bare(bare, sharing, umask)
    seed = tmp_path / "seed"
    _run(["git", "init", "-q", "-b", "main", str(seed)])
    (seed / "README").write_text("seed\n")
    _run(["git", "-C", str(seed), "add", "README"])
    _run(["git", "-C", str(seed), "commit", "-qm", "seed"])
    _run(["git", "-C", str(seed), "push", "-q", str(bare), "main"], umask=umask)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", bare.as_uri() if scheme == "file" else str(bare), str(clone)])
    before = _snapshot(bare)

    for command in (["claim", "1"], ["claim", "heartbeat", "1"], ["release", "1"],
                    ["claim", "1"], ["release", "1"]):
        _run(["git", *command], cwd=clone, umask=umask)
    _run(["git", "--git-dir", str(bare), "pack-refs", "--all"], umask=umask)
    packed = (bare / "packed-refs").stat().st_ino
    for command in (["claim", "2"], ["claim", "1"], ["claim", "heartbeat", "1"],
                    ["claim", "compact"]):
        _run(["git", *command], cwd=clone, umask=umask)

    created = _created(before, _snapshot(bare))
    # compaction deleted the packed, superseded refs/claims/1@2 (1@3 is in force,
    # and the first claim is kept)
    assert (bare / "packed-refs").stat().st_ino != packed
    assert "refs/claims/1@2" not in (bare / "packed-refs").read_text()
    for path in ("refs/claims", "refs/claims/2", "refs/notes/claims/1", "logs/refs/claims/2",
                 "logs/refs/notes/claims", "packed-refs"):
        assert path in created, sorted(created)
    assert any(_kind(path, mode) == "object" for path, mode in created.items())
    wrong = {path: f"{stat.S_IMODE(mode):o}, git gives {expected[_kind(path, mode)]:o}"
             for path, mode in created.items()
             if stat.S_IMODE(mode) != expected[_kind(path, mode)]}
    assert not wrong


SPELLINGS = [(None, "022"), ("true", "022"), ("yes", "077"), ("1", "022"), ("2", "077"),
             ("8", "022"), ("all", "027"), ("world", "022"), ("everybody", "077"),
             ("0660", "022"), ("0600", "022"), ("0664", "077"), ("false", "022"), ("0", "022"),
             ("umask", "022"), ("group", "077"), ("group", "002")]


@pytest.mark.parametrize(("sharing", "umask"), SPELLINGS,
                         ids=[f"{value}-{umask}" for value, umask in SPELLINGS])
def test_each_spelling_of_the_setting_means_what_it_means_to_git(
        tmp_path: Path, sharing: str | None, umask: str) -> None:
    """The writes a claim makes, made through the gateway, beside git's own."""
    expected = git_modes(tmp_path, sharing, umask)
    bare = tmp_path / "ours.git"
    _init_bare(bare, sharing, umask)
    repo = pygit2.Repository(str(bare))
    before = _snapshot(bare)
    previous = os.umask(int(umask, 8))
    try:
        with shared_writes(repo, ["refs/ours/a/b"]):
            blob = repo.odb.write(ObjectType.BLOB, b"ours\n")
            repo.references.create("refs/ours/a/b", blob)
    finally:
        os.umask(previous)
    kinds = _modes_by_kind(_created(before, _snapshot(bare)))
    assert kinds == {kind: {stat.S_IMODE(mode)} for kind, mode in expected.items()}


@pytest.mark.parametrize("sharing", ["0400", "Group", "10"])
def test_a_setting_git_rejects_is_refused_before_anything_is_written(
        tmp_path: Path, sharing: str) -> None:
    bare = tmp_path / "bad.git"
    _run(["git", "init", "-q", "--bare", str(bare)])
    with open(bare / "config", "a") as config:
        config.write(f"[core]\n\tsharedRepository = {sharing}\n")
    refused = subprocess.run(["git", "--git-dir", str(bare), "hash-object", "-w", "--stdin"],
                             input="x\n", capture_output=True, text=True, check=False)
    assert refused.returncode != 0  # git's own verdict
    repo = pygit2.Repository(str(bare))
    before = _snapshot(bare)
    with (pytest.raises(GitError, match="core.sharedRepository"),
          shared_writes(repo, ["refs/x"])):
        raise AssertionError("wrote into a repository git refuses to write")
    assert _snapshot(bare) == before


# --------------------------------------------------------------------------
# two real users of one group


class Users:
    """Two users of one new group, removed again however the test ends."""

    def __init__(self, base: Path) -> None:
        tag = secrets.token_hex(4)
        self.group = f"gcs{tag}"
        self.names = [f"gcs{tag}a", f"gcs{tag}b"]
        self.base = base
        self.created: list[str] = []
        self.group_created = False
        self.caps: list[str] = []

    def create(self) -> None:
        subprocess.run(["groupadd", self.group], check=True, capture_output=True)
        self.group_created = True
        for name in self.names:
            home = self.home(name)
            home.mkdir()
            subprocess.run(["useradd", "-M", "-N", "-g", self.group, "-d", str(home),
                            "-s", "/usr/sbin/nologin", name], check=True, capture_output=True)
            self.created.append(name)
            shutil.chown(home, name, self.group)

    def remove(self) -> None:
        for name in self.created:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        if self.group_created:
            subprocess.run(["groupdel", self.group], capture_output=True, check=False)

    def home(self, name: str) -> Path:
        return self.base / f"home-{name}"

    def argv(self, name: str, argv: list[str], *, caps: list[str] | None = None) -> list[str]:
        caps = self.caps if caps is None else caps
        return ["setpriv", f"--reuid={name}", f"--regid={self.group}", "--init-groups", *caps,
                "--", *_under_umask("022", argv)]

    def run(self, name: str, *argv: str, caps: list[str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        home = self.home(name)
        env = base_env(home)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        env["GIT_CLAIM_AGENT"] = name
        completed = subprocess.run(self.argv(name, list(argv), caps=caps), cwd=home, env=env,
                                   capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert completed.returncode == 0, (
                f"{name}: {' '.join(argv)}: exit {completed.returncode}\n"
                f"{completed.stderr}{completed.stdout}")
        return completed


_PROBE = "import sys, git_claim, pygit2; print(sys.base_prefix)"
_READ_SEARCH = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


def _interpreter_for(users: Users, name: str) -> list[str] | None:
    """How a user can run the installed tool: plainly, else past a private parent directory.

    When the interpreter lives under a directory only root may enter, the
    users get CAP_DAC_READ_SEARCH: they may then read and search past it,
    but every write (what this test is about) is still checked against their
    own uid and groups; a plain git run without it reads the repository back.
    An interpreter that starts but finds another standard library does not count.
    """
    for caps in ([], _READ_SEARCH):
        probe = users.run(name, sys.executable, "-c", _PROBE, caps=caps, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == sys.base_prefix:
            return caps
    return None


@pytest.fixture
def users() -> Iterator[Users]:
    if os.geteuid() != 0:
        pytest.skip("creating users needs root")
    missing = [tool for tool in ("useradd", "userdel", "groupadd", "groupdel", "setpriv")
               if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    base = Path(tempfile.mkdtemp(prefix="git-claim-shared-"))
    base.chmod(0o755)  # the users reach their homes and the repository through it
    made = Users(base)
    try:
        made.create()
        yield made
    finally:
        made.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_two_users_of_a_group_share_one_bare_repo(users: Users) -> None:
    first, second = users.names
    caps = _interpreter_for(users, first)
    if caps is None:
        pytest.skip("the test's Python is not usable by another user, even with read access")
    users.caps = caps
    srv = users.base / "srv"
    srv.mkdir()
    shutil.chown(srv, group=users.group)
    srv.chmod(0o2775)
    bare = srv / "team.git"
    for name in users.names:  # git's rule for a repository someone else owns
        users.run(name, "git", "config", "--global", "safe.directory", str(bare))

    users.run(first, "git", "init", "-q", "--bare", "--shared=group", "-b", "main", str(bare))
    users.run(first, "git", "init", "-q", "-b", "main", "seed")
    users.run(first, "git", "-C", "seed", "commit", "-q", "--allow-empty", "-m", "seed")
    users.run(first, "git", "-C", "seed", "push", "-q", str(bare), "main")
    for name in users.names:
        users.run(name, "git", "clone", "-q", str(bare), "work")

    def tool(name: str, *argv: str) -> None:
        users.run(name, "git", "-C", "work", *argv)

    tool(first, "claim", "1")  # creates refs/claims/ and object directories
    tool(second, "claim", "2")  # writes into them
    tool(second, "claim", "heartbeat", "2")  # creates refs/notes/claims/
    tool(first, "claim", "heartbeat", "1")  # writes into that
    tool(first, "release", "1")
    tool(second, "release", "2", "--done")
    tool(second, "claim", "1")  # the next epoch of the first user's ticket: 1@2
    tool(second, "release", "1")

    refs = users.run(second, "git", "--git-dir", str(bare), "for-each-ref",
                     "--format=%(refname)", "refs/claims/", caps=[]).stdout.split()
    assert refs == ["refs/claims/1", "refs/claims/1@2", "refs/claims/2"]  # claims stay
    for name in users.names:  # each reads every object and ref without any capability
        users.run(name, "git", "--git-dir", str(bare), "fsck", "--no-dangling", caps=[])
    owners = {path.stat().st_uid for path in bare.rglob("*")}
    assert len(owners) == 2  # both users created paths
    for path in [bare, *bare.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            assert mode & 0o2070 == 0o2070, f"{path}: {stat.filemode(mode)}"
        else:
            assert mode & 0o040, f"{path}: {stat.filemode(mode)}"
