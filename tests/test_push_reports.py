"""Push outcomes as the host reports them: git's porcelain, a hook's own words.

The git CLI transport reads every ref's outcome from `git push --porcelain`,
so a write costs one `git push` and no `git ls-remote`; a listing is left for
what the report cannot settle. The `git` that the tool runs is the real one
behind a wrapper on PATH that only writes down each command, so these tests
count the commands (round trips) that each outcome costs.

A strict host refuses with a hook; the refusal the user sees carries the
hook's words, on both transports, cleaned of escape sequences.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents import Agent, Outcome, remote_refs
from git_claim.gateway.gitcli_transport import GitCliTransport
from git_claim.gateway.localrepo import LocalRepo, locate
from git_claim.gateway.transport import Guard, RefUpdate, UpdateStatus

NETWORK = ["git", "http"]

# A host rule: nothing under refs/claims/9*, in the host's own words (coloured,
# with a carriage return, as hooks print them).
REFUSE = r"""#!/bin/sh
status=0
while read old new ref; do
  case "$ref" in refs/claims/9*|refs/notes/claims/9*|refs/x/refused*)
    printf 'policy: \033[1;31mtickets 900-999 are frozen\033[0m for the 7.1 release\r\n' >&2
    echo "ask #release-desk to unfreeze $ref" >&2
    status=1;;
  esac
done
exit $status
"""


@dataclass
class GitLog:
    """The real git behind a PATH wrapper that writes down each command it runs."""

    folder: Path
    log: Path

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PATH": f"{self.folder}{os.pathsep}{base['PATH']}"}

    def commands(self) -> list[str]:
        """The git subcommands run so far (options before the subcommand skipped)."""
        found = []
        text = self.log.read_text() if self.log.exists() else ""
        for record in text.split("\036")[:-1]:
            words = record.split("\037")[:-1]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in ("--git-dir", "-C", "-c") else words[1:]
            if words:
                found.append(words[0])
        return found

    def network(self) -> dict[str, int]:
        """How many pushes, listings and fetches since the last call."""
        commands = self.commands()
        self.log.unlink(missing_ok=True)
        return {name: commands.count(name) for name in ("push", "ls-remote", "fetch")}


@pytest.fixture
def git_log(tmp_path: Path) -> GitLog:
    real = shutil.which("git")
    assert real is not None
    folder = tmp_path / "counting-git"
    folder.mkdir()
    log = tmp_path / "git-commands.log"
    wrapper = folder / "git"
    # each command: its words ended by US (\037), the command ended by RS (\036)
    wrapper.write_text("#!/bin/sh\n"
                       "{ for word in \"$@\"; do printf '%s\\037' \"$word\"; done;"
                       f" printf '\\036'; }} >> {shlex.quote(str(log))}\n"
                       f"exec {shlex.quote(real)} \"$@\"\n")
    wrapper.chmod(0o755)
    return GitLog(folder, log)


def refuse_with_a_hook(world) -> None:
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text(REFUSE)
    hook.chmod(0o755)


def counted(agent: Agent, git_log: GitLog, command: str, *args: str) -> tuple[Outcome, dict]:
    """Run `git-<command>` itself (`git <command>` would put git's own directory first
    on PATH, before the wrapper) and count the commands it ran."""
    completed = subprocess.run([f"git-{command}", *args], check=False, cwd=agent.workdir,
                               env=git_log.env(agent.env), capture_output=True, text=True,
                               timeout=120)
    return Outcome(completed.returncode, completed.stdout, completed.stderr), git_log.network()


# --------------------------------------------------------------------------
# the transport itself, against real servers


@pytest.fixture
def cli(make_world, git_log, monkeypatch, request):
    """A git CLI transport on a clone of a served repository; its git commands counted."""
    world = make_world(request.param, "git")
    alice = world.agent("alice")
    for key, value in git_log.env(alice.env).items():
        monkeypatch.setenv(key, value)
    transport = GitCliTransport(LocalRepo(locate(alice.workdir)), "origin", world.repo.url)
    return world, alice, transport, git_log


def commits(agent: Agent, count: int) -> list[str]:
    """`count` new commits in the agent's clone (none of them on the remote yet)."""
    made = []
    parent = agent.git("rev-parse", "HEAD").stdout.strip()
    for number in range(count):
        parent = agent.git("commit-tree", "HEAD^{tree}", "-p", parent, "-m",
                           f"c{number}").stdout.strip()
        made.append(parent)
    return made


@pytest.mark.parametrize("cli", ["file", *NETWORK], indirect=True)
def test_each_outcome_is_settled_by_the_report_alone(cli):
    world, alice, transport, git_log = cli
    a, b, c = commits(alice, 3)

    created = transport.push([RefUpdate("refs/x/1", a, None)])
    assert [r.status for r in created] == [UpdateStatus.OK]
    assert remote_refs(world.repo)["refs/x/1"] == a
    assert git_log.network() == {"push": 1, "ls-remote": 0, "fetch": 0}

    lost = transport.push([RefUpdate("refs/x/1", b, None)])  # a lost race to create it
    assert lost[0].status is UpdateStatus.STALE and not lost[0].current_known
    assert git_log.network() == {"push": 1, "ls-remote": 0, "fetch": 0}

    moved = transport.push([RefUpdate("refs/x/1", b, a)])
    again = transport.push([RefUpdate("refs/x/1", b, a)])  # already there: "=" up to date
    assert [moved[0].status, again[0].status] == [UpdateStatus.OK, UpdateStatus.OK]
    stale_delete = transport.push([RefUpdate("refs/x/1", None, c)])
    assert stale_delete[0].status is UpdateStatus.STALE
    assert remote_refs(world.repo)["refs/x/1"] == b
    mixed = transport.push([RefUpdate("refs/x/1", c, a), RefUpdate("refs/x/2", c, None)])
    assert [r.status for r in mixed] == [UpdateStatus.STALE, UpdateStatus.OK]
    deleted = transport.push([RefUpdate("refs/x/2", None, c)])
    assert deleted[0].status is UpdateStatus.OK and "refs/x/2" not in remote_refs(world.repo)
    assert git_log.network() == {"push": 5, "ls-remote": 0, "fetch": 0}

    guarded = transport.push([RefUpdate("refs/x/3", a, None, Guard("refs/x/1", b))])
    assert guarded[0].status is UpdateStatus.OK
    broken = transport.push([RefUpdate("refs/x/3", c, a, Guard("refs/x/1", a))])
    assert broken[0].status is UpdateStatus.GUARD_BROKEN and not broken[0].current_known
    both = transport.push([RefUpdate("refs/x/3", c, b, Guard("refs/x/1", b)),
                           RefUpdate("refs/x/4", c, None, Guard("refs/x/1", b))])
    assert [r.status for r in both] == [UpdateStatus.STALE, UpdateStatus.NOT_TRIED]
    assert remote_refs(world.repo)["refs/x/3"] == a and "refs/x/4" not in remote_refs(world.repo)
    assert git_log.network() == {"push": 3, "ls-remote": 0, "fetch": 0}


@pytest.mark.parametrize("cli", NETWORK, indirect=True)
def test_a_server_without_atomic_pushes_costs_a_listing_only_after_a_write(cli):
    world, alice, transport, git_log = cli
    subprocess.run(["git", "--git-dir", str(world.repo.path), "config",
                    "receive.advertiseAtomic", "false"], check=True)
    a, b = commits(alice, 2)
    assert transport.push([RefUpdate("refs/x/1", a, None)])[0].ok
    git_log.network()

    written = transport.push([RefUpdate("refs/x/2", a, None, Guard("refs/x/1", a))])
    assert written[0].ok
    # the atomic attempt that the server refuses, the update alone, the guard read back
    assert git_log.network() == {"push": 2, "ls-remote": 1, "fetch": 0}
    again = transport.push([RefUpdate("refs/x/2", b, a, Guard("refs/x/1", a))])
    assert again[0].ok
    assert git_log.network() == {"push": 1, "ls-remote": 1, "fetch": 0}  # remembered
    lost = transport.push([RefUpdate("refs/x/2", a, a, Guard("refs/x/1", a))])
    assert lost[0].status is UpdateStatus.STALE  # nothing written: no guard to read back
    assert git_log.network() == {"push": 1, "ls-remote": 0, "fetch": 0}

    main = remote_refs(world.repo)["refs/heads/main"]
    subprocess.run(["git", "--git-dir", str(world.repo.path), "update-ref", "refs/x/1", main],
                   check=True)
    unguarded = transport.push([RefUpdate("refs/x/2", a, b, Guard("refs/x/1", a))])
    assert unguarded[0].status is UpdateStatus.GUARD_BROKEN  # written, and reported so
    assert unguarded[0].current == main and unguarded[0].current_known
    assert git_log.network() == {"push": 1, "ls-remote": 1, "fetch": 0}


@pytest.mark.parametrize("cli", ["file", *NETWORK], indirect=True)
def test_a_hooks_refusal_is_rejected_with_its_words(cli):
    world, alice, transport, git_log = cli
    refuse_with_a_hook(world)
    a, = commits(alice, 1)
    assert transport.push([RefUpdate("refs/x/1", a, None)])[0].ok
    for updates in ([RefUpdate("refs/x/refused", a, None)],
                    [RefUpdate("refs/x/refused", a, None, Guard("refs/x/1", a))]):
        result = transport.push(updates)[0]
        assert result.status is UpdateStatus.REJECTED, result
        assert result.message.startswith("pre-receive hook declined ("), result
        assert "policy: tickets 900-999 are frozen for the 7.1 release" in result.message
        assert "ask #release-desk to unfreeze refs/x/refused" in result.message
        assert result.message.isprintable() and "?[" not in result.message, result
    assert "refs/x/refused" not in remote_refs(world.repo)
    assert git_log.network() == {"push": 3, "ls-remote": 0, "fetch": 0}


# --------------------------------------------------------------------------
# what the commands cost and say


@pytest.mark.parametrize("scheme", ["file", *NETWORK])
def test_round_trips_of_each_command(make_world, git_log, scheme):
    """The git commands behind each command, with the git CLI transport: a write is one push."""
    world = make_world(scheme, "git")
    alice, bob = world.agent("alice"), world.agent("bob")
    won, cost = counted(alice, git_log, "claim", "640")
    assert won.code == 0, won
    # claims are an append-only log: the claim reads the ticket's refs and notes
    # to pick the next epoch, then creates it
    assert cost == {"push": 1, "ls-remote": 1, "fetch": 0}
    lost, cost = counted(bob, git_log, "claim", "640")
    assert lost.code == 1 and "held by alice" in lost.stderr, lost
    # the read shows alice's claim in force: no push at all
    assert cost == {"push": 0, "ls-remote": 1, "fetch": 1}
    first, cost = counted(alice, git_log, "claim", "heartbeat", "640")
    assert first.code == 0, first
    assert cost == {"push": 1, "ls-remote": 1, "fetch": 0}  # no notes tip known yet: read it
    beat, cost = counted(alice, git_log, "claim", "heartbeat", "640")
    assert beat.code == 0, beat
    assert cost == {"push": 1, "ls-remote": 0, "fetch": 0}
    released, cost = counted(alice, git_log, "release", "640")
    assert released.code == 0, released
    assert cost == {"push": 1, "ls-remote": 1, "fetch": 0}  # one read, one note


@pytest.mark.parametrize(("scheme", "transport"),
                         [("git", "libgit2"), ("http", "libgit2"), ("ssh", "libgit2"),
                          ("path", "git"), ("git", "git"), ("http", "git"), ("ssh", "git")])
def test_a_hooks_refusal_shows_the_hooks_words(make_world, scheme, transport):
    """Hooks run on the server: libgit2 over the network, and the git CLI everywhere
    (the path transport runs none, by design)."""
    world = make_world(scheme, transport)
    refuse_with_a_hook(world)
    alice = world.agent("alice")
    refused = alice.claim("940")
    assert refused.code == 3, refused
    assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    for words in ("policy: ", "tickets 900-999 are frozen", "for the 7.1 release",
                  "ask #release-desk to unfreeze refs/claims/940"):
        assert words in refused.stderr, refused
    assert "\x1b" not in refused.stderr and "\r" not in refused.stderr
    as_json = alice.claim("940", "--json")
    assert as_json.code == 3 and "tickets 900-999 are frozen" in \
        as_json.json()["error"]["message"], as_json
    assert "held by" not in refused.stderr
    assert "refs/claims/940" not in remote_refs(world.repo)
    assert alice.claim("640").code == 0  # the rule is the host's, for 9xx only
