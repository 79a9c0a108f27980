"""Agents for tests: clones of a served repository that run the installed commands.

Every command runs as a separate process through the real executables on
PATH (`git claim`, `git release`, `git reap`), exactly as a user or an agent
runner would, so the tests exercise what `pip install .` installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import ServedRepo


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.code}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass
class Agent:
    """One clone with its own identity and environment."""

    name: str
    workdir: Path
    env: dict[str, str]
    repo: ServedRepo
    extra: dict[str, str] = field(default_factory=dict)

    def git(self, *args: str, check: bool = True, input: str | None = None) -> Outcome:
        completed = subprocess.run(["git", *args], cwd=self.workdir, env=self.env,
                                   capture_output=True, text=True, input=input, timeout=120)
        outcome = Outcome(completed.returncode, completed.stdout, completed.stderr)
        if check and completed.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {outcome}")
        return outcome

    def cmd(self, *args: str, input: str | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> Outcome:
        """Run `git <args>` (e.g. "claim", "640") and return its outcome, never raising."""
        completed = subprocess.run(["git", *args], cwd=self.workdir, env=env or self.env,
                                   capture_output=True, text=True, input=input, timeout=timeout)
        return Outcome(completed.returncode, completed.stdout, completed.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["git", *args], cwd=self.workdir, env=env or self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    def claim(self, *args: str) -> Outcome:
        return self.cmd("claim", *args)

    def release(self, *args: str) -> Outcome:
        return self.cmd("release", *args)


def remote_refs(repo: ServedRepo) -> dict[str, str]:
    """The served repository's refs, read on the server side with the git CLI."""
    completed = subprocess.run(["git", "--git-dir", str(repo.path), "for-each-ref",
                                "--format=%(objectname) %(refname)"],
                               capture_output=True, text=True, check=True)
    refs = {}
    for line in completed.stdout.splitlines():
        oid, name = line.split(" ", 1)
        refs[name] = oid
    return refs


def remote_refs_bytes(repo: ServedRepo) -> bytes:
    """Every ref and the packed-refs file, byte for byte, to prove nothing changed."""
    completed = subprocess.run(["git", "--git-dir", str(repo.path), "for-each-ref"],
                               capture_output=True, check=True)
    packed = repo.path / "packed-refs"
    return completed.stdout + (packed.read_bytes() if packed.exists() else b"")


def tag_message(repo: ServedRepo, oid: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo.path), "cat-file", "-p", oid],
                          capture_output=True, text=True, check=True).stdout


def base_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GIT_", "SSH_AUTH_SOCK", "PRE_COMMIT"))
           and key != "PYTHONDONTWRITEBYTECODE"}  # the commands start as installed: compiled
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_EDITOR": "false",
        "NO_COLOR": "1",
        "LC_ALL": "C.UTF-8",
    })
    return env


class PausePoint:
    """Drive the tool's test pause points (GIT_CLAIM_TEST_PAUSE) from a test."""

    def __init__(self, folder: Path, point: str) -> None:
        self.folder = folder
        self.point = point
        self.name = point.replace(":", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".reached", ".go"):
            (folder / f"{self.name}{suffix}").unlink(missing_ok=True)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "GIT_CLAIM_TEST_PAUSE": self.point,
                "GIT_CLAIM_TEST_PAUSE_DIR": str(self.folder)}

    def wait_reached(self, process: subprocess.Popen[str] | None = None,
                     timeout: float = 60) -> None:
        import time

        deadline = time.monotonic() + timeout
        marker = self.folder / f"{self.name}.reached"
        while not marker.exists():
            if process is not None and process.poll() is not None:
                raise AssertionError(f"process ended before {self.point}: "
                                     f"{process.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.point} not reached in {timeout}s")
            time.sleep(0.01)

    def go(self) -> None:
        (self.folder / f"{self.name}.go").write_text("")

    def kill(self, process: subprocess.Popen[str]) -> None:
        """SIGKILL the tool's own process (git runs it as a child), then its git parent."""
        import os
        import signal

        pid = int((self.folder / f"{self.name}.reached").read_text())
        os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


def with_env(agent: Agent, **values: str) -> dict[str, str]:
    return {**agent.env, **values}


def notes_log(repo: ServedRepo, ticket: str) -> list[str]:
    completed = subprocess.run(["git", "--git-dir", str(repo.path), "log", "--format=%s",
                                f"refs/notes/claims/{ticket}"], capture_output=True, text=True)
    return completed.stdout.split("\n")[:-1] if completed.returncode == 0 else []


def board(agent: Agent, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """`git claim list --json` as the agent sees it: the rows by ticket.

    A row's `ours` says whether this checkout made the claim in force (the
    public face of the tool's own records of its claims).
    """
    listed = agent.cmd("claim", "list", "--json", env=env)
    assert listed.code == 0, listed
    return {row["ticket"]: row for row in listed.json()}


def claim_tags_in(git_dir: Path, ticket: str, agent: str) -> list[str]:
    """Every claim tag object (state held) that `agent` made for `ticket` in `git_dir`.

    Read with the git CLI from a repository's object store: in a clone, the
    claim tags it minted (a claim's tag is written locally before its push),
    so a test can tell one nonce reused across retries from a second one.
    """
    listing = subprocess.run(
        ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects",
         "--batch-check=%(objectname) %(objecttype)"], capture_output=True, text=True, check=True)
    tags = [line.split()[0] for line in listing.stdout.splitlines() if line.endswith(" tag")]
    if not tags:
        return []
    bodies = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                            input=("\n".join(tags) + "\n").encode(), capture_output=True,
                            check=True).stdout
    found = []
    for oid in tags:
        header_end = bodies.index(b"\n") + 1
        size = int(bodies[:header_end].split()[2])
        body = bodies[header_end:header_end + size]
        bodies = bodies[header_end + size + 1:]
        if re.search(rb"^Claim-Ticket: " + re.escape(ticket.encode()) + rb"$", body, re.M) and \
                re.search(rb"^Claim-State: held$", body, re.M) and \
                re.search(rb"^Claim-Agent: " + re.escape(agent.encode()) + rb"$", body, re.M):
            found.append(oid)
    return found


def wait_until(condition: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.02) -> Any:
    """Poll `condition` until it returns something true, and return that.

    How a test waits for another process to get somewhere without a test
    point: never a fixed sleep, a deadline that fails with `what` instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class TicketOnRemote:
    """A ticket's state on the served repository, read with the git CLI (an oracle).

    Claims are an append-only log (refs/claims/640, 640@2, ...); the newest
    counts. Its latest note (a release as free, a reap, a reopening) frees
    the ticket; a release as done or blocked puts that outcome in force.
    This reads the remote independently of the tool, so tests judge what is
    on the server rather than what the tool believes.
    """

    ticket: str
    state: str  # free, held, done, blocked, unknown
    epoch: int  # of the newest claim; 0: never claimed
    ref: str | None  # the newest claim's ref
    tag: str | None  # the newest claim's tag
    agent: str  # the holder, or who recorded the outcome
    reason: str
    event: str  # the latest note's event on the newest claim ("" if none)
    claims: dict[int, str]  # every epoch listed: epoch -> tag

    @property
    def in_force(self) -> str | None:
        """The tag of the claim in force (held, done or blocked), None when free."""
        return None if self.state == "free" else self.tag


def _trailers(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Claim-"):
            found.setdefault(key, value.strip())
    return found


def ticket_state(repo: ServedRepo, ticket: str, prefix: str = "refs/claims/",
                 notes_prefix: str = "refs/notes/claims/") -> TicketOnRemote:
    refs = remote_refs(repo)
    claims: dict[int, str] = {}
    for name, oid in refs.items():
        if name == prefix + ticket:
            claims[1] = oid
        elif name.startswith(prefix + ticket + "@") and name.rsplit("@", 1)[1].isdigit():
            claims[int(name.rsplit("@", 1)[1])] = oid
    if not claims:
        return TicketOnRemote(ticket, "free", 0, None, None, "", "", "", claims)
    epoch = max(claims)
    tag = claims[epoch]
    ref = prefix + ticket + ("" if epoch == 1 else f"@{epoch}")
    record = _trailers(tag_message(repo, tag))
    state = {"held": "held", "done": "done", "blocked": "blocked"}.get(
        record.get("Claim-State", ""), "unknown")
    if "Claim-State" not in record and "nonce=" in tag_message(repo, tag):
        state = "held"  # a hand-made claim (`git tag -a claim/T -m "agent=… nonce=…"`)
    agent, reason = record.get("Claim-Agent", ""), record.get("Claim-Reason", "")
    shown = subprocess.run(["git", "--git-dir", str(repo.path), "notes",
                            f"--ref={notes_prefix}{ticket}", "show", tag],
                           capture_output=True, text=True)
    note = _trailers(shown.stdout) if shown.returncode == 0 else {}
    event = note.get("Claim-Event", "")
    outcome = note.get("Claim-Outcome", "")
    if event == "reopened" or (state in ("held", "unknown") and event == "reaped"):
        state = "free"
    elif state in ("held", "unknown") and event == "released":
        if outcome in ("done", "blocked") and state == "held":
            state, agent, reason = outcome, note.get("Claim-Agent", agent), \
                note.get("Claim-Reason", "")
        else:
            state = "free"
    return TicketOnRemote(ticket, state, epoch, ref, tag, agent, reason, event, claims)


def claim_in_force(repo: ServedRepo, ticket: str) -> str | None:
    """The tag of the ticket's claim in force (held, done or blocked), None when free."""
    return ticket_state(repo, ticket).in_force
