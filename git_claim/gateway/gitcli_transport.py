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
updates alone, and the guards are read back right after: an update whose
guard no longer holds is reported as such, even though it was written.
"""

from __future__ import annotations

import subprocess
from typing import Sequence

from ..errors import GitError
from .credentials import safe_url
from .localrepo import LocalRepo, first_line, run_git
from .transport import RefUpdate, Transport, UpdateResult, UpdateStatus

PUSH_TIMEOUT = 120.0
NO_ATOMIC = "does not support --atomic"  # git's words for a server without atomic pushes


class GitCliTransport(Transport):
    name = "git"

    def __init__(self, local: LocalRepo, remote_name: str, url: str) -> None:
        self.local = local
        self.remote = remote_name
        self.url = url
        self.base_args = ["--git-dir", str(local.location.git_dir)]

    def _git(self, args: list[str], *, timeout: float = PUSH_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            return run_git([*self.base_args, *args], timeout=timeout, check=check)
        except GitError as error:
            raise GitError(f"{safe_url(self.url)}: {error.message}")

    def list_refs(self, prefixes: Sequence[str]) -> dict[str, str]:
        patterns = [prefix + "*" for prefix in prefixes]
        result = self._git(["ls-remote", self.remote, *patterns])
        found: dict[str, str] = {}
        for line in result.stdout.splitlines():
            oid, _, name = line.partition("\t")
            if name.startswith(tuple(prefixes)) and not name.endswith("^{}"):
                found[name] = oid
        return found

    def fetch(self, refspecs: Sequence[str]) -> None:
        if refspecs:
            self._git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                       "--no-auto-maintenance", self.remote, *refspecs])

    def push(self, updates: Sequence[RefUpdate]) -> list[UpdateResult]:
        guards = {u.guard.ref: u.guard.expect for u in updates if u.guard is not None}
        results, stderr = self._push(updates, guards)
        if guards and NO_ATOMIC in stderr:
            results, _ = self._push(updates, {})
            current = self.list_refs(sorted(guards))
            results = [UpdateResult(u.ref, UpdateStatus.GUARD_BROKEN,
                                    f"{u.guard.ref} changed", current.get(u.guard.ref), True)
                       if u.guard is not None and current.get(u.guard.ref) != u.guard.expect
                       else result for u, result in zip(updates, results)]
        return results

    def _push(self, updates: Sequence[RefUpdate],
              guards: dict[str, str]) -> tuple[list[UpdateResult], str]:
        """One `git push`: the per-ref results, and what git said on stderr."""
        args = ["push", "--porcelain", "--no-verify", "--quiet"]
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
        reports = _parse_porcelain(completed.stdout)
        results = []
        for update in updates:
            guard = (reports.get(update.guard.ref)
                     if update.guard is not None and guards else None)
            if guard is not None and guard[0] == "!":
                assert update.guard is not None
                status = (UpdateStatus.GUARD_BROKEN if "stale info" in guard[1]
                          else UpdateStatus.NOT_TRIED)
                results.append(UpdateResult(update.ref, status, f"{update.guard.ref} changed"))
                continue
            report = reports.get(update.ref)
            if report is None:
                # No verdict for this ref: maybe never sent, maybe applied. The
                # protocol re-reads the remote to settle it.
                message = first_line(completed.stderr) or "git push reported nothing for this ref"
                results.append(UpdateResult(update.ref, UpdateStatus.UNKNOWN, message))
                continue
            flag, summary = report
            if flag in ("*", "+", " ", "-", "="):
                results.append(UpdateResult(update.ref, UpdateStatus.OK))
            elif "stale info" in summary:
                results.append(UpdateResult(update.ref, UpdateStatus.STALE, "remote changed"))
            elif "atomic push failed" in summary:
                results.append(UpdateResult(update.ref, UpdateStatus.NOT_TRIED, summary))
            else:
                results.append(UpdateResult(update.ref, UpdateStatus.REJECTED, summary))
        return results, completed.stderr


def _parse_porcelain(stdout: str) -> dict[str, tuple[str, str]]:
    """`<flag>\\t<from>:<to>\\t<summary>` lines -> {to: (flag, summary)}."""
    reports: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            _, _, destination = parts[1].rpartition(":")
            reports[destination] = (parts[0], parts[2])
    return reports

