"""The `git` CLI as a transport: everything a user's git honours, for free.

~/.ssh/config host aliases, core.sshCommand, proxies, insteadOf, remote
helpers and credential helpers all work because git itself does the work.
Each update is a `--force-with-lease=<ref>:<expect>` push: git checks the
lease against the advertisement and the server re-checks under its lock.
A guard rides in the same push as `<expect>:<guard ref>` with a lease on
`<expect>`, under `--atomic`: git sends nothing for a ref that already holds
the value ("up to date"), and a guard ref that holds anything else fails its
lease, which fails the whole atomic push before anything is sent. A server
that does not offer atomic pushes (`receive.advertiseAtomic false`) gets the
updates alone, and the guards of the updates that may have been written are
read back right after: an update whose guard no longer holds is reported as
such, even though it was written.

Each push's outcome is read from git's `--porcelain` report, one line per
ref (not `--quiet`, which leaves out the lines of a push that succeeded), so
a write costs one `git push` and no listing. A listing is left to the caller
only where the report cannot settle what it needs: no line for a ref (the
connection dropped: applied or not?), a refusal (the host's rule, or a ref
that moved under the server's lock?), the value that broke a lease (git
does not print it). The host's own words ("remote: ..." lines) travel with
a refusal, so that the user sees why.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import GitError
from ..safetext import clean
from .credentials import safe_url
from .localrepo import LocalRepo, first_line, run_git
from .transport import RefUpdate, Transport, UpdateResult, UpdateStatus, fetch_refspecs

PUSH_TIMEOUT = 120.0
# A refetch repairs a clone's view of a few notes: it must not hold a listing
# for the push timeout (what cannot be read in time stays unknown).
REFETCH_TIMEOUT = 20.0
MAX_LAZY_OBJECTS = 200  # a partial clone fetches each missing blob on its own
NO_ATOMIC = "does not support --atomic"  # git's words for a server without atomic pushes
MESSAGE_LIMIT = 400  # a result's message, the host's words included
HOST_WORDS_LIMIT = 300

# Porcelain flags (git-push(1), OUTPUT): the ref holds the new value afterwards.
APPLIED_FLAGS = frozenset("*+- =")
# A flag and the summary's "[kind] (reason)"; the reason may hold parentheses.
_SUMMARY = re.compile(r"^\[(?P<kind>[^\]]*)\](?: \((?P<reason>.*)\))?$")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_PROGRESS = ("Resolving deltas", "Counting objects", "Compressing objects", "Writing objects",
             "Total ", "Unpacking objects", "Enumerating objects", "Delta compression")


@dataclass(frozen=True)
class Report:
    """One ref's line of `git push --porcelain`: its flag and summary."""

    flag: str
    summary: str

    @property
    def kind(self) -> str:
        match = _SUMMARY.match(self.summary)
        return match.group("kind") if match else self.summary

    @property
    def reason(self) -> str:
        match = _SUMMARY.match(self.summary)
        return (match.group("reason") or "") if match else ""


class GitCliTransport(Transport):
    name = "git"

    def __init__(self, local: LocalRepo, remote_name: str, url: str) -> None:
        self.local = local
        self.remote = remote_name
        self.url = url
        self.base_args = ["--git-dir", str(local.location.git_dir)]
        self.atomic = True  # False once the server said it offers no atomic push

    def _git(self, args: list[str], *, timeout: float = PUSH_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            return run_git([*self.base_args, *args], timeout=timeout, check=check)
        except GitError as error:
            raise GitError(f"{safe_url(self.url)}: {error.message}") from error

    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        patterns = [prefix + "*" for prefix in prefixes]
        result = self._git(["ls-remote", self.remote, *patterns])
        found: dict[str, str] = {}
        for line in result.stdout.splitlines():
            oid, _, name = line.partition("\t")
            if name.startswith(tuple(prefixes)) and not name.endswith("^{}"):
                found[name] = oid
        return found

    def refetch(self, refs: Sequence[str], objects: Sequence[str] = ()) -> None:
        """A fetch, then a read of the objects still missing, within REFETCH_TIMEOUT each.

        In a partial clone (`--filter=blob:none`) the fetch brings no blob:
        the promised ones pass git's connectivity check. Reading them with
        `git cat-file` makes git fetch them from the promisor remote; in a
        full clone it only reports them missing.
        """
        if refs:
            self._git(["fetch", "--dry-run", "--quiet", "--no-tags", "--no-write-fetch-head",
                       "--no-auto-maintenance", self.remote, *fetch_refspecs(refs)],
                      timeout=REFETCH_TIMEOUT)
        wanted = list(objects)[:MAX_LAZY_OBJECTS]
        if wanted:
            run_git([*self.base_args, "cat-file", "--batch-check"],
                    input_text="".join(f"{oid}\n" for oid in wanted), timeout=REFETCH_TIMEOUT,
                    check=False)

    def fetch(self, sources: Sequence[str]) -> None:
        # --dry-run: git transfers and keeps the objects but updates no ref
        # (a pattern refspec must still name a destination)
        if sources:
            self._git(["fetch", "--dry-run", "--quiet", "--no-tags", "--no-write-fetch-head",
                       "--no-auto-maintenance", self.remote, *fetch_refspecs(sources)])

    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        if not updates:
            return []
        guards = {u.guard.ref: u.guard.expect for u in updates if u.guard is not None}
        if guards and self.atomic:
            results, stderr = self._push(updates, guards)
            if NO_ATOMIC not in stderr:
                return results
            self.atomic = False  # remembered: later pushes skip the doomed attempt
        results, _ = self._push(updates, {})
        return self._read_back_guards(updates, results) if guards else results

    def _read_back_guards(self, updates: Sequence[RefUpdate],
                          results: list[UpdateResult]) -> list[UpdateResult]:
        """Guards checked after the fact, for the updates that may have been written."""
        written = [u for u, r in zip(updates, results, strict=True) if u.guard is not None
                   and r.status in (UpdateStatus.OK, UpdateStatus.UNKNOWN)]
        if not written:
            return results  # nothing was written: the report settled every update
        current = self.list_refs(sorted({u.guard.ref for u in written if u.guard}))
        checked = []
        for update, result in zip(updates, results, strict=True):
            guard = update.guard
            if update in written and guard is not None and current.get(guard.ref) != guard.expect:
                result = UpdateResult(update.ref, UpdateStatus.GUARD_BROKEN,
                                      f"{guard.ref} changed", current.get(guard.ref), True)
            checked.append(result)
        return checked

    def _push(self, updates: Sequence[RefUpdate],
              guards: dict[str, str]) -> tuple[list[UpdateResult], str]:
        """One `git push`: the per-ref results, and what git said on stderr."""
        args = ["push", "--porcelain", "--no-verify", "--no-progress"]
        specs = []
        if guards:
            args.append("--atomic")
        for update in updates:
            args.append(f"--force-with-lease={update.ref}:{update.expect or ''}")
            specs.append(f"{update.new}:{update.ref}" if update.new else f":{update.ref}")
        for ref, expect in guards.items():
            args.append(f"--force-with-lease={ref}:{expect}")
            specs.append(f"{expect}:{ref}")
        try:
            completed = self._git([*args, self.remote, *specs], check=False)
        except GitError as error:
            # A timeout: the push may have been applied.
            return [UpdateResult(u.ref, UpdateStatus.UNKNOWN, error.message)
                    for u in updates], error.message
        reports = parse_porcelain(completed.stdout)
        said = host_words(completed.stderr)
        results = []
        for update in updates:
            guard = reports.get(update.guard.ref) if update.guard and guards else None
            if guard is not None and guard.flag not in APPLIED_FLAGS:
                assert update.guard is not None
                status = (UpdateStatus.GUARD_BROKEN if guard.reason == "stale info"
                          else UpdateStatus.NOT_TRIED)
                results.append(UpdateResult(update.ref, status, f"{update.guard.ref} changed"))
                continue
            report = reports.get(update.ref)
            if report is None:
                # No verdict for this ref: maybe never sent, maybe applied. The
                # caller re-reads the remote to settle it.
                message = first_line(completed.stderr) or "git push reported nothing for this ref"
                results.append(UpdateResult(update.ref, UpdateStatus.UNKNOWN,
                                            clean(message, MESSAGE_LIMIT)))
                continue
            results.append(_verdict(update, report, said))
        return results, completed.stderr


def _verdict(update: RefUpdate, report: Report, said: str) -> UpdateResult:
    """One ref's result from its porcelain line and what the host said on the side band."""
    if report.flag in APPLIED_FLAGS:
        return UpdateResult(update.ref, UpdateStatus.OK)
    reason = report.reason or report.kind or report.summary
    if report.kind == "rejected" and reason == "stale info":
        # Our lease broke against the advertisement: nothing was sent. git
        # does not print what the ref held, so the caller reads it if it must.
        return UpdateResult(update.ref, UpdateStatus.STALE, "remote changed")
    if reason in ("atomic push failed", "atomic push failure"):
        # Another ref of the atomic push failed, here or at the server: nothing written.
        return UpdateResult(update.ref, UpdateStatus.NOT_TRIED, reason)
    if report.kind == "remote failure":
        # Sent, and the server's report never came: it may have been applied.
        return UpdateResult(update.ref, UpdateStatus.UNKNOWN, clean(reason, MESSAGE_LIMIT))
    message = f"{reason} ({said})" if said and said not in reason else reason
    return UpdateResult(update.ref, UpdateStatus.REJECTED, clean(message, MESSAGE_LIMIT))


def parse_porcelain(stdout: str) -> dict[str, Report]:
    """`<flag>\\t<from>:<to>\\t<summary>` lines -> {to: Report}; other lines are ignored."""
    reports: dict[str, Report] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            _, _, destination = parts[1].rpartition(":")
            reports[destination] = Report(parts[0], "\t".join(parts[2:]))
    return reports


def host_words(stderr: str) -> str:
    """What the server's side said ("remote: ..." lines: a hook, a policy), as one clean line.

    git relays a hook's stderr with the prefix "remote: " and pads each line
    with spaces where a terminal would get an erase sequence; a hook may
    colour its words or end lines with "\\r". Escape sequences are dropped
    (not shown as '?'), so that the words read as the host wrote them.
    """
    lines = []
    for raw in re.split(r"[\r\n]", _ANSI.sub("", stderr)):
        if not raw.startswith("remote:"):
            continue
        line = raw[len("remote:"):].strip()
        if line and not line.startswith(_PROGRESS):
            lines.append(line)
    return clean("; ".join(lines), HOST_WORDS_LIMIT)
