"""The server-side guard, and agents that have only the rights it leaves them.

With `git claim guard install` on the served repository, no push may
delete or rewrite a claim, create one out of turn, or rewind a notes ref.
The whole agent loop must still work there (claim, beat, release free,
done and blocked, reopen, reap, `run --next`), and a `git push --mirror`
from a stale clone must lose nothing. Judged from the remote's refs and the
commands' own output. (A path remote written with libgit2 bypasses hooks:
there the git CLI transport runs them, as `git push` does.)
"""

from __future__ import annotations

import subprocess

import pytest

from agents import remote_refs, remote_refs_bytes, ticket_state, with_env

LOOP_SETUPS = [("path", "git"), ("git", "libgit2"), ("git", "git"), ("http", "libgit2"),
               ("http", "git")]


def guarded_world(make_world, scheme, transport):
    world = make_world(scheme, transport)
    admin = world.agent("admin")
    installed = admin.claim("guard", "install", str(world.repo.path))
    assert installed.code == 0, installed
    assert (world.repo.path / "hooks" / "pre-receive").exists()
    return world


def git_in(repo_path, *args, check=True):
    return subprocess.run(["git", "--git-dir", str(repo_path), *args], capture_output=True,
                          text=True, check=check)


@pytest.mark.parametrize("scheme,transport", LOOP_SETUPS,
                         ids=[f"{s}-{t}" for s, t in LOOP_SETUPS])
def test_the_whole_loop_with_create_only_rights(make_world, tmp_path, scheme, transport):
    world = guarded_world(make_world, scheme, transport)
    alice, bob, reaper = world.agent("alice"), world.agent("bob"), world.agent("reaper")
    reaper.git("config", "claim.heartbeat", "1s")

    assert alice.claim("1").code == 0
    assert bob.claim("1").code == 1
    assert alice.claim("heartbeat", "1").code == 0
    assert alice.release("1").code == 0  # free: the next claim is epoch 2
    second = bob.claim("1")
    assert second.code == 0 and "refs/claims/1@2" in second.stdout, second
    assert bob.release("1", "--blocked", "--reason", "needs a key").code == 0
    blocked = alice.claim("1")
    assert blocked.code == 1 and "blocked" in blocked.stderr, blocked
    assert alice.claim("reopen", "1").code == 0
    assert alice.claim("1").code == 0
    assert alice.release("1", "--done").code == 0
    assert "done" in bob.claim("1").stderr

    assert bob.claim("2").code == 0  # bob crashes: the reaper frees it
    reaped = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0", "--json",
                        env=with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reaped.code == 0, reaped
    assert [e["ticket"] for e in reaped.json()["reaped"]] == ["2"]
    assert bob.claim("heartbeat", "2").code == 1
    assert alice.claim("2").code == 0

    backlog = tmp_path / "backlog.txt"
    backlog.write_text("3\n4\n")
    run = bob.claim("run", "--next", "--from", str(backlog), "--", "true")
    assert run.code == 0, run

    refs = remote_refs(world.repo)
    # nothing under the claim namespace was ever deleted or rewritten
    assert {"refs/claims/1", "refs/claims/1@2", "refs/claims/1@3", "refs/claims/2",
            "refs/claims/2@2"} <= set(refs)
    listed = git_in(world.repo.path, "for-each-ref", "refs/claims/").stdout
    assert listed.count("\n") >= 6


def test_a_mirror_push_from_a_stale_clone_loses_nothing(make_world, tmp_path):
    world = guarded_world(make_world, "git", "git")
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("1").code == 0
    assert alice.claim("2").code == 0
    stale = tmp_path / "stale.git"
    subprocess.run(["git", "clone", "-q", "--mirror", world.repo.url, str(stale)], check=True,
                   capture_output=True, env=world.env)
    assert alice.release("1").code == 0
    assert bob.claim("1").code == 0  # 1@2, which the stale clone lacks
    assert alice.claim("heartbeat", "2").code == 0
    before = remote_refs_bytes(world.repo)
    pushed = subprocess.run(["git", "--git-dir", str(stale), "push", "--mirror", world.repo.url],
                            capture_output=True, text=True, env=world.env)
    assert pushed.returncode != 0
    assert "git-claim guard: refused" in pushed.stderr
    assert remote_refs_bytes(world.repo) == before
    forced = subprocess.run(["git", "--git-dir", str(stale), "push", "--force", world.repo.url,
                             "refs/claims/1:refs/claims/1@3", "refs/claims/2:refs/claims/2",
                             "refs/notes/claims/2:refs/notes/claims/2"],
                            capture_output=True, text=True, env=world.env)
    assert forced.returncode != 0
    assert remote_refs_bytes(world.repo) == before
    assert bob.claim("heartbeat", "1").code == 0 and alice.claim("heartbeat", "2").code == 0


def test_the_guard_judges_each_change(make_world):
    world = guarded_world(make_world, "git", "git")
    alice = world.agent("alice")
    assert alice.claim("5").code == 0
    url = world.repo.url

    def push(*specs):
        return alice.git("push", url, *specs, check=False)

    alice.git("tag", "-a", "-m", "agent=mallory nonce=1", "mine", "HEAD")
    out_of_turn = push("refs/tags/mine:refs/claims/5@2")
    assert out_of_turn.code != 0 and "has not ended" in out_of_turn.stderr, out_of_turn
    rewritten = push("+refs/tags/mine:refs/claims/5")
    assert rewritten.code != 0 and "never rewritten" in rewritten.stderr, rewritten
    assert alice.claim("heartbeat", "5").code == 0
    assert alice.claim("heartbeat", "5").code == 0  # two notes commits: one to rewind
    alice.git("fetch", "-q", url, "refs/notes/claims/5:refs/notes/seen")
    older = alice.git("rev-parse", "refs/notes/seen~1").stdout.strip()
    rewound = push(f"+{older}:refs/notes/claims/5")
    assert rewound.code != 0 and "only move forward" in rewound.stderr, rewound
    gap = push("refs/tags/mine:refs/claims/6@2")
    assert gap.code != 0 and "the next claim of 6 is epoch 1" in gap.stderr, gap
    lightweight = push("HEAD:refs/claims/7")
    assert lightweight.code != 0 and "annotated tag" in lightweight.stderr
    newest = push(":refs/claims/5")
    assert newest.code != 0 and "never deleted" in newest.stderr
    assert push("refs/tags/mine:refs/claims/8").code == 0  # a hand-made claim is a create

    assert alice.release("5").code == 0
    assert alice.claim("5").code == 0  # 5@2
    compacted = push(":refs/claims/5")  # superseded by 5@2: history may go
    assert compacted.code == 0, compacted
    assert "refs/claims/5" not in remote_refs(world.repo)
    assert "refs/claims/5@2" in remote_refs(world.repo)
    assert push(":refs/notes/claims/5").code != 0
    assert push("refs/heads/main:refs/heads/other").code == 0  # other refs pass

    assert alice.claim("9").code == 0
    assert alice.release("9", "--done").code == 0
    while_done = push("refs/tags/mine:refs/claims/9@2")  # an outcome in force is not ended
    assert while_done.code != 0 and "has not ended" in while_done.stderr, while_done
    assert alice.claim("reopen", "9").code == 0
    assert push("refs/tags/mine:refs/claims/9@2").code == 0


def test_install_never_replaces_a_foreign_hook(make_world):
    world = make_world("path", "git")
    hook = world.repo.path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    admin = world.agent("admin")
    refused = admin.claim("guard", "install", str(world.repo.path))
    assert refused.code == 3, refused
    assert "guard pre-receive" in refused.stderr and refused.stderr.count("\n") == 1
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"


def test_the_guard_as_an_update_hook(make_world, tmp_path):
    """A host whose own update hook calls `git-claim guard update "$1" "$2" "$3"`: each
    ref is judged alone, so a stale mirror push loses no claim and rewinds no notes."""
    world = make_world("git", "git")
    hook = world.repo.path / "hooks" / "update"
    hook.write_text('#!/bin/sh\nexec git-claim guard update "$1" "$2" "$3"\n')
    hook.chmod(0o755)
    alice, bob = world.agent("alice"), world.agent("bob")
    assert alice.claim("1").code == 0
    assert alice.claim("heartbeat", "1").code == 0
    stale = tmp_path / "stale.git"
    subprocess.run(["git", "clone", "-q", "--mirror", world.repo.url, str(stale)], check=True,
                   capture_output=True, env=world.env)
    assert alice.release("1").code == 0
    taken = bob.claim("1", "--json")
    assert taken.code == 0 and taken.json()["ref"] == "refs/claims/1@2", taken
    assert bob.claim("heartbeat", "1").code == 0
    claims_before = git_in(world.repo.path, "for-each-ref", "refs/claims/", "refs/notes/").stdout
    pushed = subprocess.run(["git", "--git-dir", str(stale), "push", "--mirror", world.repo.url],
                            capture_output=True, text=True, env=world.env)
    assert pushed.returncode != 0 and "git-claim guard: refused" in pushed.stderr, pushed
    assert git_in(world.repo.path, "for-each-ref", "refs/claims/", "refs/notes/").stdout \
        == claims_before
    on_remote = ticket_state(world.repo, "1")
    assert on_remote.in_force == taken.json()["tag"] and on_remote.state == "held", on_remote
    assert bob.claim("heartbeat", "1").code == 0
    assert bob.release("1", "--blocked", "--reason", "waits").code == 0
    assert alice.claim("1").code == 1
    assert alice.claim("reopen", "1").code == 0
    assert alice.claim("1").code == 0
    assert ticket_state(world.repo, "1").ref == "refs/claims/1@3"


def test_configured_and_nested_prefixes_are_judged_by_their_own_pair(make_world):
    """A server with its own claim.refPrefix (nested under the default) and notesPrefix:
    each claim ref belongs to the longest prefix it starts with, and its end is read
    from that prefix's notes, whatever order Python's hashing would give."""
    world = make_world("path", "git")  # a local push runs the hook with our environment
    for key, value in (("claim.refPrefix", "refs/claims/team/"),
                       ("claim.notesPrefix", "refs/notes/team/")):
        git_in(world.repo.path, "config", key, value)
    admin = world.agent("admin")
    assert admin.claim("guard", "install", str(world.repo.path)).code == 0
    alice = world.agent("alice")
    alice.git("config", "claim.refPrefix", "refs/claims/team/")
    alice.git("config", "claim.notesPrefix", "refs/notes/team/")
    for seed in range(6):
        env = with_env(alice, PYTHONHASHSEED=str(seed))
        claimed = alice.cmd("claim", "9", env=env)
        assert claimed.code == 0, (seed, claimed)
        assert alice.cmd("release", "9", env=env).code == 0
        other = alice.cmd("claim", f"1{seed}", env=env)
        assert other.code == 0, (seed, other)
    refs = remote_refs(world.repo)
    assert "refs/claims/team/9@6" in refs and "refs/claims/team/15" in refs
