"""A strict host: rules that refuse some writes under the claim namespaces.

A careful admin protects the claim namespace (no delete, no rewind) or the
notes namespace. Agents only create claim refs and fast-forward notes refs,
so the first rule costs them nothing: every command works. Whatever a rule
does refuse, no command may report success, and each says why in the host's
own words: scripts and agent loops branch on the exit code (3: refused;
5: `git reap` left claims in place), people read the line. Judged from the
remote with ticket_state and from the commands' own output.
"""

from __future__ import annotations

import pytest

from agents import remote_refs, ticket_state, with_env

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


def succeeds(outcome):
    """Exit 0, and no word of the host's policy: nothing the agents sent was refused."""
    assert outcome.code == 0, outcome
    assert POLICY not in outcome.stdout + outcome.stderr, outcome
    return outcome


@pytest.mark.parametrize("transport", ["libgit2", "git"])
def test_no_delete_no_rewind_refuses_nothing_the_agents_do(make_world, transport):
    """Claim, beat, release free, done and blocked, reopen, run and reap: none deletes
    or rewinds a claim ref, so all of them succeed on a host that refuses both."""
    world = make_world("git", transport)
    alice, bob, carol = world.agent("alice"), world.agent("bob"), world.agent("carol")
    install_policy(world, NO_DELETE_NO_REWIND)
    claims = {}

    succeeds(alice.claim("1"))
    claims[1] = ticket_state(world.repo, "1").in_force
    succeeds(alice.claim("heartbeat", "1"))
    succeeds(alice.release("1"))
    assert ticket_state(world.repo, "1").state == "free"

    succeeds(bob.claim("1"))
    succeeds(bob.release("1", "--done"))
    state = ticket_state(world.repo, "1")
    assert (state.state, state.epoch, state.agent) == ("done", 2, "bob"), state
    claims[2] = state.tag
    succeeds(carol.claim("reopen", "1"))
    assert ticket_state(world.repo, "1").state == "free"

    succeeds(alice.claim("1"))
    succeeds(alice.release("1", "--blocked", "--reason", "needs API key"))
    state = ticket_state(world.repo, "1")
    assert (state.state, state.epoch, state.reason) == ("blocked", 3, "needs API key"), state
    claims[3] = state.tag
    succeeds(bob.claim("reopen", "1"))
    assert ticket_state(world.repo, "1").state == "free"

    succeeds(alice.claim("run", "2", "--", "true"))
    assert ticket_state(world.repo, "2").state == "done"

    succeeds(bob.claim("3"))
    reap = succeeds(carol.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--force", "--json",
                              env=with_env(carol, GIT_CLAIM_CLOCK_OFFSET="100")))
    report = reap.json()
    assert [e["ticket"] for e in report["reaped"]] == ["3"], report
    assert report.get("undone", []) == []
    state = ticket_state(world.repo, "3")
    assert (state.state, state.event) == ("free", "reaped"), state
    assert ticket_state(world.repo, "1").state == "free"  # reopened: not reaped again

    # every claim ever made is still on the remote as it was created
    assert ticket_state(world.repo, "1").claims == claims
    # and the rule is in force: a delete or a rewind by hand is refused in its words
    refs = remote_refs(world.repo)
    deleted = alice.git("push", "origin", ":refs/claims/1", check=False)
    assert deleted.code != 0 and f"{POLICY}: delete of refs/claims/1" in deleted.stderr
    rewound = alice.git("push", "--force", "origin", "HEAD:refs/claims/1", check=False)
    assert rewound.code != 0 and f"{POLICY}: rewind of refs/claims/1" in rewound.stderr
    assert remote_refs(world.repo) == refs


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
    assert [ticket_state(world.repo, t).state for t in ("50", "51")] == ["held", "held"]
