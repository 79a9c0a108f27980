"""A strict host: rules that refuse some of the protocol's steps.

A careful admin protects the claim namespace (no delete, no rewind) or the
notes namespace. Whatever a rule refuses, no command may report success,
and each says why in the host's own words: scripts and agent loops branch
on the exit code (5: recorded but not finished; 3: refused), people read
the line. Judged from the remote's refs and the commands' own output.
"""

from __future__ import annotations

import pytest

from agents import remote_refs, with_env

POLICY = "DENIED-BY-POLICY"

# Agents may create claims but neither delete nor rewind them.
NO_DELETE_NO_REWIND = f"""#!/bin/sh
zero=0000000000000000000000000000000000000000
status=0
while read old new ref; do
  case "$ref" in refs/claims/*)
    if [ "$new" = "$zero" ]; then echo "{POLICY}: delete of $ref" >&2; status=1; fi
    if [ "$old" != "$zero" ] && [ "$new" != "$zero" ]; then
      echo "{POLICY}: rewind of $ref" >&2; status=1
    fi;;
  esac
done
exit $status
"""

# No writes at all under the notes namespace.
NO_NOTES = f"""#!/bin/sh
status=0
while read old new ref; do
  case "$ref" in refs/notes/claims/*) echo "{POLICY}: notes $ref" >&2; status=1;; esac
done
exit $status
"""


def install_policy(world, script: str) -> None:
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text(script)
    hook.chmod(0o755)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_a_refused_delete_or_rewind_is_never_a_success(make_world, transport):
    world = make_world("git", transport)
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    install_policy(world, NO_DELETE_NO_REWIND)
    assert alice.claim("1").code == 0

    released = alice.release("1")
    assert released.code == 5, released
    line = one_line(released.stderr)
    assert POLICY in line and "delete refs/claims/1" in line, line
    assert "next git claim" not in line  # no promise that cannot be kept
    assert "refs/claims/1" in remote_refs(world.repo)

    again = alice.release("1", "--done", "--json")
    assert again.code == 5, again
    document = again.json()
    assert document["ok"] is False and document["exit_code"] == 5
    assert document["error"]["kind"] == "incomplete"
    assert document["pending"]["needs"] == "delete refs/claims/1"
    assert POLICY in document["pending"]["host_message"]

    board = bob.claim("list")
    assert board.code == 0
    assert "ending" in board.stdout
    assert "needs the right to delete refs/claims/1" in board.stdout
    rows = {r["ticket"]: r for r in bob.claim("list", "--json").json()}
    assert rows["1"]["state"] == "ending"
    assert rows["1"]["ending"]["needs"] == "delete refs/claims/1"

    taken = bob.claim("1")
    assert taken.code == 3, taken
    line = one_line(taken.stderr)
    assert POLICY in line and "attempts" not in line, line

    run = alice.claim("run", "2", "--", "true")
    assert run.code == 5, run
    assert POLICY in run.stderr and "force-update (rewind) refs/claims/2" in run.stderr

    reap = carol.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--force", "--json",
                     env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reap.code == 5, reap
    report = reap.json()
    assert report["ok"] is False and report["exit_code"] == 5
    assert sorted(e["ticket"] for e in report["undone"]) == ["1", "2"]
    assert all(POLICY in e["reason"] for e in report["undone"])
    assert report["reaped"] == []
    assert {"refs/claims/1", "refs/claims/2"} <= set(remote_refs(world.repo))


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_refused_notes_fail_every_beat_and_release(make_world, transport):
    world = make_world("git", transport)
    alice = world.agent("alice")
    assert alice.claim("50").code == 0
    install_policy(world, NO_NOTES)

    beat = alice.claim("heartbeat", "50")
    assert beat.code == 3, beat
    assert POLICY in one_line(beat.stderr)

    released = alice.release("50")
    assert released.code == 3, released
    assert POLICY in one_line(released.stderr)

    run = alice.claim("run", "51", "--", "true")
    assert run.code == 3, run
    assert POLICY in run.stderr

    carol = world.agent("carol")
    reap = carol.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--force",
                     env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reap.code == 5, reap
    assert POLICY in reap.stderr
    assert {"refs/claims/50", "refs/claims/51"} <= set(remote_refs(world.repo))
