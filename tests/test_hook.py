"""The pre-push fence's installer: chains existing hooks, respects core.hooksPath."""

from __future__ import annotations

import subprocess

from agents import with_env


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


def test_install_respects_core_hooks_path(make_world):
    world = make_world("path", "libgit2")
    alice = world.agent("alice")
    custom = alice.workdir / "my-hooks"
    alice.git("config", "core.hooksPath", str(custom))
    installed = alice.claim("hook", "install", "--json")
    assert installed.code == 0, installed
    assert installed.json()["path"] == str(custom / "pre-push")
    assert (custom / "pre-push").exists()
    assert not (alice.workdir / ".git" / "hooks" / "pre-push").exists()
    # a branch named like a claim we do not hold is refused
    alice.git("checkout", "-q", "-b", "claim/999")
    refused = alice.git("push", "origin", "claim/999", check=False)
    assert refused.code != 0 and "you hold no claim on 999 here" in refused.stderr


def test_pre_commit_framework_manifest():
    import pathlib

    text = (pathlib.Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text()
    assert "stages: [pre-push]" in text and "entry: git-claim hook pre-push" in text
