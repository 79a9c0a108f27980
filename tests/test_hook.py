"""The pre-push fence's installer: chains existing hooks, writes only the repository's own.

Every push here is a real `git push` to a real remote, so the installed hook
script runs as git runs it; global and system configs are files of the test's
own (GIT_CONFIG_GLOBAL, GIT_CONFIG_SYSTEM), never the machine's.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest

from agents import remote_refs, with_env
from git_claim.fence import HOOK_SCRIPT


def test_install_chains_an_existing_hook_and_uninstall_restores_it(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    hooks = alice.workdir / ".git" / "hooks"
    marker = alice.workdir / "chained-ran"
    (hooks / "pre-push").write_text(f"#!/bin/sh\ncat > '{marker}'\nexit 0\n")
    (hooks / "pre-push").chmod(0o755)
    installed = alice.claim("hook", "install", "--json")
    assert installed.code == 0, installed
    assert installed.json()["chained"].endswith("pre-push.pre-git-claim")
    assert alice.claim("hook", "install").code == 0  # again: recognised as ours
    assert alice.claim("640").code == 0
    alice.git("checkout", "-q", "-b", "claim/640")
    pushed = alice.git("push", "-q", "origin", "claim/640", check=False)
    assert pushed.code == 0, pushed
    assert "refs/heads/claim/640" in marker.read_text()  # the chained hook saw git's input
    # tags, HEAD and deletions pass the fence
    alice.git("tag", "v1")
    assert alice.git("push", "-q", "origin", "v1", check=False).code == 0
    assert alice.git("push", "-q", "origin", "HEAD:refs/heads/other", check=False).code == 0
    assert alice.release("640", "--force").code == 0
    assert alice.git("push", "-q", "origin", ":claim/640", check=False).code == 0
    assert alice.claim("hook", "uninstall").code == 0
    assert "cat >" in (hooks / "pre-push").read_text()


def test_install_respects_core_hooks_path_inside_the_git_dir(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    # a global hooks directory overridden by the repository's own, relative to the work tree
    global_config = world.root / "global.gitconfig"
    alice.env["GIT_CONFIG_GLOBAL"] = str(global_config)
    alice.git("config", "--global", "core.hooksPath", str(world.home / ".githooks"))
    alice.git("config", "--local", "core.hooksPath", ".git/my-hooks")
    custom = alice.workdir / ".git" / "my-hooks"
    installed = alice.claim("hook", "install", "--json")
    assert installed.code == 0, installed
    assert installed.json()["path"] == str(custom / "pre-push")
    assert (custom / "pre-push").exists()
    assert not (alice.workdir / ".git" / "hooks" / "pre-push").exists()
    assert not (world.home / ".githooks").exists()
    # a branch named like a claim we do not hold is refused
    alice.git("checkout", "-q", "-b", "claim/999")
    refused = alice.git("push", "origin", "claim/999", check=False)
    assert refused.code != 0 and "you hold no claim on 999 here" in refused.stderr


def _shared_config(alice, world, scope: str) -> None:
    """core.hooksPath in a global or system config of the test's own, never the real one."""
    config = world.root / f"{scope}.gitconfig"
    if scope == "global":
        alice.env["GIT_CONFIG_GLOBAL"] = str(config)
    else:
        alice.env.pop("GIT_CONFIG_NOSYSTEM", None)
        alice.env["GIT_CONFIG_SYSTEM"] = str(config)
        alice.env["GIT_CONFIG_GLOBAL"] = str(world.root / "empty.gitconfig")
    subprocess.run(["git", "config", "--file", str(config), "core.hooksPath",
                    str(world.home / ".githooks")], check=True)


@pytest.mark.parametrize("scope", ["global", "system"])
def test_install_refuses_a_hooks_path_every_repository_shares(make_world, scope):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    _shared_config(alice, world, scope)
    shared = world.home / ".githooks"
    shared.mkdir()
    (shared / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    refused = alice.claim("hook", "install")
    assert refused.code == 2, refused
    assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1, refused
    assert f"core.hooksPath comes from {'your global' if scope == 'global' else 'the system'}"\
        in refused.stderr
    assert "git config --local core.hooksPath " in refused.stderr
    assert (shared / "pre-push").read_text() == "#!/bin/sh\nexit 0\n"
    assert sorted(p.name for p in shared.iterdir()) == ["pre-push"]
    assert not (alice.workdir / ".git" / "hooks" / "pre-push").exists()
    as_json = alice.claim("hook", "install", "--json").json()
    assert as_json["exit_code"] == 2 and as_json["error"]["kind"] == "shared-hooks"
    assert as_json["scope"] == scope
    # the advice works: hooks of the repository's own, and the global ones stay untouched
    advised = refused.stderr.split("git config --local core.hooksPath ")[1]
    alice.git("config", "--local", "core.hooksPath",
              shlex.split(advised.split(") and install again")[0])[0])
    assert alice.claim("hook", "install").code == 0
    assert (alice.workdir / ".git" / "hooks" / "pre-push").exists()
    assert sorted(p.name for p in shared.iterdir()) == ["pre-push"]


def test_uninstall_takes_an_earlier_fence_out_of_a_shared_hooks_dir(make_world):
    """What an older version installed there is ours to remove, and only that."""
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    _shared_config(alice, world, "global")
    shared = world.home / ".githooks"
    shared.mkdir()
    (shared / "pre-push").write_text(HOOK_SCRIPT)
    (shared / "pre-push.pre-git-claim").write_text("#!/bin/sh\nexit 0\n")
    refused = alice.claim("hook", "install")
    assert refused.code == 2 and "`git claim hook uninstall` removes" in refused.stderr, refused
    assert alice.claim("hook", "uninstall").code == 0
    assert sorted(p.name for p in shared.iterdir()) == ["pre-push"]
    assert (shared / "pre-push").read_text() == "#!/bin/sh\nexit 0\n"
    assert alice.claim("hook", "uninstall").code == 1  # a foreign hook is never removed
    assert (shared / "pre-push").exists()


@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
def test_install_refuses_a_hooks_dir_inside_the_work_tree(make_world, track):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    hooks = alice.workdir / ".githooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-push").chmod(0o755)
    if track:
        alice.git("add", ".githooks")
        alice.git("commit", "-qm", "team hooks")
    alice.git("config", "core.hooksPath", ".githooks")
    before = alice.git("status", "--porcelain", "--untracked-files=all").stdout
    refused = alice.claim("hook", "install")
    assert refused.code == 2, refused
    assert len(refused.stderr.splitlines()) == 1
    assert f"is inside the work tree {alice.workdir}" in refused.stderr
    assert "git config --local core.hooksPath " in refused.stderr
    assert alice.git("status", "--porcelain", "--untracked-files=all").stdout == before
    assert sorted(p.name for p in hooks.iterdir()) == ["pre-push"]
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\nexit 0\n"


def test_uninstall_leaves_a_fence_the_repository_tracks(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    hooks = alice.workdir / ".githooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text(HOOK_SCRIPT)
    alice.git("add", ".githooks")
    alice.git("commit", "-qm", "a fence for everyone")
    alice.git("config", "core.hooksPath", ".githooks")
    refused = alice.claim("hook", "uninstall")
    assert refused.code == 2 and "tracked by the repository" in refused.stderr, refused
    assert (hooks / "pre-push").read_text() == HOOK_SCRIPT
    assert alice.git("status", "--porcelain").stdout == ""


def _path_without_git_claim() -> str:
    """git's directory and the basic tools a hook needs, and no git-claim."""
    folders: list[str] = []
    for tool in ("git", "sh", "cat", "printf"):
        found = shutil.which(tool)
        if found and os.path.dirname(found) not in folders:
            folders.append(os.path.dirname(found))
    path = os.pathsep.join(folders)
    assert shutil.which("git-claim", path=path) is None, path
    return path


def test_a_push_without_git_claim_on_path_warns_and_goes_through(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    marker = alice.workdir / "chained-ran"
    hooks = alice.workdir / ".git" / "hooks"
    (hooks / "pre-push").write_text(f"#!/bin/sh\ncat > '{marker}'\nexit 0\n")
    (hooks / "pre-push").chmod(0o755)
    assert alice.claim("hook", "install").code == 0
    alice.git("checkout", "-q", "-b", "claim/999")  # a claim we do not hold
    bare_path = with_env(alice, PATH=_path_without_git_claim())
    pushed = alice.cmd("push", "-q", "origin", "claim/999", env=bare_path)
    assert pushed.code == 0, pushed
    assert "git-claim is not on PATH; pushing without the fence" in pushed.stderr
    assert "refs/heads/claim/999" in remote_refs(alice.repo)
    assert "refs/heads/claim/999" in marker.read_text()  # the chained hook still ran
    # with git-claim on PATH the fence decides, and a failing fence still blocks
    alice.git("checkout", "-q", "-b", "claim/998")
    refused = alice.git("push", "origin", "claim/998", check=False)
    assert refused.code != 0 and "you hold no claim on 998 here" in refused.stderr, refused
    alice.git("config", "claim.remote", "nowhere")
    broken = alice.git("push", "origin", "claim/998", check=False)
    assert broken.code != 0 and "git claim hook pre-push:" in broken.stderr, broken
    assert "refs/heads/claim/998" not in remote_refs(alice.repo)


def test_pre_commit_framework_manifest():
    import pathlib

    text = (pathlib.Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text()
    assert "stages: [pre-push]" in text and "entry: git-claim hook pre-push" in text


def test_the_fence_refuses_a_command_of_an_earlier_claim(make_world, tmp_path):
    """The fencing token: `run` hands its command the claim's epoch (GIT_CLAIM_EPOCH), and a
    process left from an earlier claim of the same agent may not push for the current one."""
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    assert alice.claim("hook", "install").code == 0
    alice.git("checkout", "-q", "-b", "claim/650")
    seen = tmp_path / "seen"

    def commit(text: str) -> str:
        (alice.workdir / "work.txt").write_text(text)
        alice.git("add", "work.txt")
        alice.git("commit", "-qm", text)
        return alice.git("rev-parse", "HEAD").stdout.strip()

    def on_remote() -> str | None:
        return remote_refs(alice.repo).get("refs/heads/claim/650")

    first = commit("first claim's work")
    script = (f'printf "%s %s" "$GIT_CLAIM_TICKET" "$GIT_CLAIM_EPOCH" > "{seen}"'
              ' && git push -q origin claim/650 && exit 7')
    ran = alice.cmd("claim", "run", "650", "--on-failure", "release", "--", "sh", "-c", script)
    assert ran.code == 7, ran  # released free: the ticket's next claim is epoch 2
    assert seen.read_text() == "650 1"
    assert on_remote() == first  # the first claim's command pushed its work
    again = alice.claim("650", "--json")
    assert again.code == 0 and again.json()["ref"] == "refs/claims/650@2", again

    second = commit("late work of the first claim")
    leftover = with_env(alice, GIT_CLAIM_TICKET="650", GIT_CLAIM_EPOCH="1")
    refused = alice.cmd("push", "origin", "claim/650", env=leftover)
    assert refused.code != 0, refused
    assert "works on claim 1 of 650, and the claim in force is 2" in refused.stderr, refused
    assert on_remote() == first

    current = alice.cmd("claim", "run", "650", "--", "sh", "-c",
                        script.replace("&& exit 7", "&& exit 0"))
    assert current.code == 0, current
    assert seen.read_text() == "650 2"  # the same claim of alice's, taken up by run
    assert on_remote() == second
