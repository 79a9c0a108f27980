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

# path, git:// and HTTP, each transport on a network server; the rest with -m slow
LOOP_SETUPS = [("path", "git"), ("git", "libgit2"), ("http", "git"),
               pytest.param("git", "git", marks=pytest.mark.slow),
               pytest.param("http", "libgit2", marks=pytest.mark.slow)]


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
                         ids=["path-git", "git-libgit2", "http-git", "git-git", "http-libgit2"])
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
    # superseded, yet kept: a claimer whose view predates every claim of 5 creates
    # the bare ref with no other check, and would win beside the newest were it gone
    first = push(":refs/claims/5")
    assert first.code != 0 and "first claim of a ticket is kept" in first.stderr, first
    assert alice.release("5").code == 0
    assert alice.claim("5").code == 0  # 5@3
    compacted = push(":refs/claims/5@2")  # superseded by 5@3: history may go
    assert compacted.code == 0, compacted
    refs = remote_refs(world.repo)
    assert "refs/claims/5@2" not in refs
    assert "refs/claims/5" in refs and "refs/claims/5@3" in refs
    assert ticket_state(world.repo, "5").ref == "refs/claims/5@3"
    assert push(":refs/notes/claims/5").code != 0
    assert push("refs/heads/main:refs/heads/other").code == 0  # other refs pass

    assert alice.claim("9").code == 0
    assert alice.release("9", "--done").code == 0
    while_done = push("refs/tags/mine:refs/claims/9@2")  # an outcome in force is not ended
    assert while_done.code != 0 and "has not ended" in while_done.stderr, while_done
    assert alice.claim("reopen", "9").code == 0
    assert push("refs/tags/mine:refs/claims/9@2").code == 0


class Scratch:
    """A plain clone (not an agent's) that writes the served repo's notes by hand."""

    def __init__(self, world, folder):
        self.world, self.folder = world, folder
        subprocess.run(["git", "clone", "-q", world.repo.url, str(folder)], check=True,
                       capture_output=True, env=world.env)

    def git(self, *args, check=True, input=None):
        done = subprocess.run(["git", *args], cwd=self.folder, capture_output=True, text=True,
                              env=self.world.env, input=input)
        assert not check or done.returncode == 0, done
        return done

    def fetch_notes(self, ticket):
        self.git("fetch", "-q", "origin", f"+refs/notes/claims/{ticket}:refs/notes/claims/{ticket}",
                 f"+refs/claims/{ticket}:refs/seen/{ticket}")
        return self.git("rev-parse", f"refs/seen/{ticket}").stdout.strip()

    def note(self, ticket, tag, text):
        """One notes commit on top of the served tip setting the note on `tag` to `text`."""
        self.fetch_notes(ticket)
        self.git("notes", f"--ref=claims/{ticket}", "add", "-f", "-m", text, tag)
        return self.push_notes(ticket)

    def push_notes(self, ticket):
        return self.git("push", "origin", f"refs/notes/claims/{ticket}", check=False)

    def commit_tree(self, ticket, entries):
        """A notes commit on the local notes tip whose tree holds `entries` {path: blob}."""
        def tree(level):
            lines, subdirs = [], {}
            for path, blob in level.items():
                head, _, rest = path.partition("/")
                if rest:
                    subdirs.setdefault(head, {})[rest] = blob
                else:
                    lines.append(f"100644 blob {blob}\t{head}\n")
            for name, inner in subdirs.items():
                lines.append(f"040000 tree {tree(inner)}\t{name}\n")
            return self.git("mktree", input="".join(lines)).stdout.strip()

        ref = f"refs/notes/claims/{ticket}"
        commit = self.git("commit-tree", tree(entries), "-p", ref, "-m", "by hand").stdout.strip()
        self.git("update-ref", ref, commit)
        return self.push_notes(ticket)


def note_text(event, outcome=""):
    return (f"Claim-Event: {event}\nClaim-Time: 2030-01-01T00:00:00Z\nClaim-Agent: mallory\n"
            + (f"Claim-Outcome: {outcome}\n" if outcome else "") + "Claim-Version: 1\n")


def test_a_notes_fast_forward_may_not_remove_or_replace_a_claims_end(make_world, tmp_path):
    """A notes step is a fast-forward, yet it could drop every note (a done ticket would
    read held again) or put a heartbeat over a release. Only additions, replaced
    heartbeats and a reopening over a release as done or blocked go in; git's fan-out
    layout (ab/cdef…) is no change."""
    world = guarded_world(make_world, "git", "git")
    alice, reaper = world.agent("alice"), world.agent("reaper")
    mallory = Scratch(world, tmp_path / "mallory")

    assert alice.claim("50").code == 0
    assert alice.release("50", "--done").code == 0
    # as the review found it: the claim tag is not in a plain clone, so prune drops its note
    mallory.git("fetch", "-q", "origin", "+refs/notes/claims/50:refs/notes/claims/50")
    mallory.git("notes", "--ref=claims/50", "prune")
    assert mallory.git("notes", "--ref=claims/50", "list").stdout == ""
    pruned = mallory.push_notes("50")
    assert pruned.returncode != 0 and "never removed" in pruned.stderr, pruned
    assert ticket_state(world.repo, "50").state == "done"
    tag = mallory.fetch_notes("50")
    beat = mallory.note("50", tag, note_text("heartbeat"))
    assert beat.returncode != 0 and "only a reopening" in beat.stderr, beat
    freed = mallory.note("50", tag, note_text("released", "free"))
    assert freed.returncode != 0 and "only a reopening" in freed.stderr, freed
    assert ticket_state(world.repo, "50").state == "done"

    # git's fan-out layout holds the same notes: accepted, nothing changes
    mallory.fetch_notes("50")
    blob = mallory.git("rev-parse", f"refs/notes/claims/50:{tag}").stdout.strip()
    fanned = mallory.commit_tree("50", {f"{tag[:2]}/{tag[2:]}": blob})
    assert fanned.returncode == 0, fanned
    assert ticket_state(world.repo, "50").state == "done"
    # where neither git nor git-claim finds it, or twice: refused
    odd = mallory.commit_tree("50", {f"{tag[:3]}/{tag[3:]}": blob})
    assert odd.returncode != 0 and "not a note" in odd.stderr, odd
    mallory.fetch_notes("50")
    twice = mallory.commit_tree("50", {tag: blob, f"{tag[:2]}/{tag[2:]}": blob})
    assert twice.returncode != 0 and "stored twice" in twice.stderr, twice
    assert alice.claim("reopen", "50").code == 0  # a reopening replaces the release
    assert ticket_state(world.repo, "50").state == "free"
    undone = mallory.note("50", tag, note_text("released", "done"))
    assert undone.returncode != 0 and "ended its claim" in undone.stderr, undone
    assert ticket_state(world.repo, "50").state == "free"

    assert alice.claim("51").code == 0
    assert alice.claim("heartbeat", "51").code == 0
    tag51 = mallory.fetch_notes("51")
    assert mallory.note("51", tag51, note_text("heartbeat")).returncode == 0  # beats may go on
    assert alice.release("51").code == 0
    held_again = mallory.note("51", tag51, note_text("heartbeat"))
    assert held_again.returncode != 0 and "ended its claim" in held_again.stderr, held_again
    assert ticket_state(world.repo, "51").state == "free"

    assert alice.claim("52").code == 0
    reaper.git("config", "claim.heartbeat", "1s")
    reaped = reaper.cmd("reap", "--ttl", "1s", "--max-skew", "0",
                        env=with_env(reaper, GIT_CLAIM_CLOCK_OFFSET="100"))
    assert reaped.code == 0, reaped
    tag52 = mallory.fetch_notes("52")
    revived = mallory.note("52", tag52, note_text("heartbeat"))
    assert revived.returncode != 0 and "ended its claim" in revived.stderr, revived
    assert ticket_state(world.repo, "52").state == "free"
    assert alice.claim("52").code == 0  # the next claim, 52@2, still goes in
    assert ticket_state(world.repo, "52").ref == "refs/claims/52@2"


def test_no_ref_may_keep_git_from_creating_the_protocols_own(make_world):
    """A ref that is a folder of, or inside, a name the protocol needs (refs/notes/claims
    beside refs/notes/claims/640, or refs/notes/claims/640/x) makes git unable to create
    that name, so the ticket could never be released. Such refs are refused, and ones
    already there (and other junk under the prefixes) may be deleted by an admin."""
    world = guarded_world(make_world, "git", "git")
    alice = world.agent("alice")
    url = world.repo.url

    def push(*specs):
        return alice.git("push", url, *specs, check=False)

    alice.git("tag", "-a", "-m", "agent=mallory nonce=1", "mine", "HEAD")
    for ref in ("refs/notes/claims/640/x", "refs/notes/claims", "refs/claims", "refs/tags/claim",
                "refs/notes/claims/640@2", "refs/claims/640/x", "refs/notes"):
        blocked = push(f"refs/tags/mine:{ref}")
        assert blocked.code != 0 and "git-claim guard: refused" in blocked.stderr, (ref, blocked)
    assert not [ref for ref in remote_refs(world.repo) if "claim" in ref]
    assert alice.claim("640").code == 0
    assert alice.release("640").code == 0
    assert ticket_state(world.repo, "640").state == "free"

    # junk made on the server before the guard: an admin pushes its deletion
    main = git_in(world.repo.path, "rev-parse", "refs/heads/main").stdout.strip()
    junk = ["refs/notes/claims/641/x", "refs/claims/641/x", "refs/claims/team/x"]
    for ref in junk:
        git_in(world.repo.path, "update-ref", ref, main)
    assert alice.claim("641").code == 3  # git cannot create refs/claims/641
    for ref in junk:
        cleared = push(f":{ref}")
        assert cleared.code == 0, (ref, cleared)
    assert not set(junk) & set(remote_refs(world.repo))
    assert alice.claim("641").code == 0
    assert alice.release("641", "--done").code == 0
    assert ticket_state(world.repo, "641").state == "done"


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
