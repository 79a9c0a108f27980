"""How `git claim` reads its command line: no word becomes a claim by accident.

`git claim 640` needs no subcommand word, so every other word is a ticket
unless the group says otherwise. These run the installed executable against a
served remote and read the remote with the git CLI: a refused word must leave
no claim ref there.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from agents import remote_refs, ticket_state

# argv after `git claim` -> the command the refusal says was meant
MISTAKES = {
    ("lsit",): "git claim list",
    ("hearbeat", "640"): "git claim heartbeat",
    ("status",): "git claim list",
    ("ls",): "git claim list",
    ("show",): "git claim list",
    ("reap",): "git reap",
    ("release", "5"): "git release",
    ("LIST",): "git claim list",
    ("#list",): "git claim list",
    ("tkae", "640"): "git claim take",
    ("reopne", "640"): "git claim reopen",
    ("compcat",): "git claim compact",
    ("next",): "git claim --next",
    ("push",): "git push",
    ("640", "list"): "git claim list",
    ("--agent", "bob", "lsit"): "git claim list",
    ("--no-gate", "verfiy", "640"): "git claim verify",
    ("help", "lsit"): "git claim list",
    ("done", "640"): "git release --done",
    ("blocked", "640"): "git release --blocked",
    ("logs", "640"): "git claim log",
    ("install", "bash"): "git claim completion install",
}


def claim_refs(repo) -> list[str]:
    return sorted(name for name in remote_refs(repo) if name.startswith("refs/claims/"))


def run_all(agent, commands):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda argv: agent.cmd("claim", *argv), commands))


def test_mistyped_and_foreign_commands_are_usage_errors_that_claim_nothing(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    assert alice.claim("5").code == 0
    before = claim_refs(world.repo)
    outcomes = run_all(alice, list(MISTAKES))
    for (argv, meant), outcome in zip(MISTAKES.items(), outcomes, strict=True):
        assert outcome.code == 2, (argv, outcome)
        assert outcome.stdout == "", (argv, outcome)
        assert outcome.stderr.count("\n") == 1, (argv, outcome)
        assert f"did you mean `{meant}`?" in outcome.stderr, (argv, outcome)
        word = next(w for w in argv if w not in ("640", "--", "--agent", "bob", "--no-gate",
                                                 "help"))
        assert f"`git claim take {word}`" in outcome.stderr, (argv, outcome)
    assert claim_refs(world.repo) == before == ["refs/claims/5"]
    assert ticket_state(world.repo, "5").state == "held"  # `git claim release 5` left it


def test_a_refusal_under_json_is_the_usage_error_document(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    for argv in (["--json", "lsit"], ["lsit", "--json"], ["--json", "release", "5"]):
        outcome = alice.claim(*argv)
        assert outcome.code == 2, outcome
        assert outcome.stderr == "", outcome
        document = json.loads(outcome.stdout)
        assert document["ok"] is False and document["exit_code"] == 2
        assert document["error"]["kind"] == "usage"
        assert "did you mean" in document["error"]["message"]
        assert document["did_you_mean"] in ("git claim list", "git release")
    assert claim_refs(world.repo) == []


def test_help_is_the_help_never_a_claim(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    group = alice.claim("help")
    assert group.code == 0, group
    assert group.stdout.startswith("Usage: git claim [OPTIONS] TICKET... | COMMAND")
    listing = alice.claim("help", "list")
    assert listing.code == 0, listing
    assert listing.stdout.startswith("Usage: git claim list")
    nested = alice.claim("--json", "help", "hook", "install")
    assert nested.code == 0 and nested.stdout.startswith("Usage: git claim hook install"), nested
    unknown = alice.claim("help", "nope")
    assert unknown.code == 2 and "no such command: 'nope'" in unknown.stderr, unknown
    assert claim_refs(world.repo) == []


def test_options_before_a_subcommand_go_to_it(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    listed = alice.claim("--json", "list")
    assert listed.code == 0, listed
    json.loads(listed.stdout)  # the board, as a document
    assert claim_refs(world.repo) == []

    won = alice.claim("--agent", "bob", "640")
    assert won.code == 0, won
    assert ticket_state(world.repo, "640").agent == "bob"
    assert alice.claim("heartbeat", "640").code == 1  # alice holds nothing: --agent counted
    beat = alice.claim("--agent", "bob", "heartbeat", "640")
    assert beat.code == 0, beat
    assert alice.release("--agent", "bob", "--done", "640").code == 0
    assert ticket_state(world.repo, "640").state == "done"

    nowhere = alice.claim("--remote", "nowhere", "reopen", "640")
    assert nowhere.code == 3 and "nowhere" in nowhere.stderr, nowhere
    reopened = alice.claim("--remote", "origin", "reopen", "640")
    assert reopened.code == 0, reopened
    assert ticket_state(world.repo, "640").state == "free"

    # a value option takes its value with it, even a word that names a command
    as_release = alice.claim("--agent", "release", "--json", "641")
    assert as_release.code == 0, as_release
    assert as_release.json()["ticket"] == "641"
    assert ticket_state(world.repo, "641").agent == "release"
    as_json = alice.claim("--json", "642")
    assert as_json.code == 0 and as_json.json()["ticket"] == "642", as_json
    (alice.workdir / "list").write_text("643\n")  # a backlog file named like a command
    alice.git("config", "claim.maxPerAgent", "0")  # alice holds 642: let --next take more
    from_list = alice.claim("--from", "list", "--next")
    assert from_list.code == 0 and "claimed 643" in from_list.stdout, from_list
    tree = world.root / "tree-644"
    with_tree = alice.claim("--json", f"--worktree={tree}", "take", "644")
    assert with_tree.code == 0, with_tree
    assert with_tree.json()["worktree"] == str(tree) and (tree / "README").exists()
    assert not [ref for ref in claim_refs(world.repo)
                if ref.rsplit("/", 1)[1].split("@")[0] in ("list", "heartbeat", "reopen")]


def test_a_ticket_named_like_a_command_is_claimed_explicitly(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    for argv, ticket in ((["take", "list"], "list"), (["take", "lsit"], "lsit"),
                         (["--", "release"], "release"), (["--json", "--", "status"], "status"),
                         (["take", "--json", "reap"], "reap"), (["641", "--", "list"], "641")):
        outcome = alice.claim(*argv)
        assert outcome.code == 0, (argv, outcome)
        assert ticket_state(world.repo, ticket).state == "held", argv
    assert claim_refs(world.repo) == [f"refs/claims/{t}" for t in
                                      ("641", "list", "lsit", "reap", "release", "status")]


def subcommands() -> dict[str, click.Command]:
    from git_claim.cli.app import programs

    group = programs()["git-claim"]
    assert isinstance(group, click.Group)
    return dict(group.commands)


def slips(name: str) -> set[str]:
    """One-slip typos of `name`: its first two letters swapped, its last doubled."""
    return {name[1] + name[0] + name[2:], name + name[-1]} - {name}


def test_every_subcommand_of_the_group_is_protected(make_world):
    """The names come from the click group: a new subcommand is protected as it lands."""
    names = sorted(subcommands())
    assert {"take", "list", "heartbeat", "reopen", "run", "verify", "log"} <= set(names)
    commands = [["640", name] for name in names]
    commands += [[typo] for name in names if len(name) >= 4 for typo in sorted(slips(name))]
    world = make_world("path")
    alice = world.agent("alice")
    for argv, outcome in zip(commands, run_all(alice, commands), strict=True):
        name = next(n for n in names if n == argv[-1] or argv[-1] in slips(n))
        assert outcome.code == 2, (argv, outcome)
        assert f"did you mean `git claim {name}`?" in outcome.stderr, (argv, outcome)
    assert claim_refs(world.repo) == []


def test_a_new_subcommand_is_protected_without_a_table():
    from git_claim.cli.group import ClaimGroup, LookalikeError

    group = ClaimGroup("git-claim")
    group.add_command(click.Command("take", params=[click.Argument(["tickets"], nargs=-1)]))
    group.add_command(click.Command("frobnicate"))
    with pytest.raises(LookalikeError) as refused:
        group.parse_args(click.Context(group), ["frobnciate"])
    assert refused.value.meant == "git claim frobnicate"
    assert group.parse_args(click.Context(group), ["640"]) == ["640"]  # a ticket for take
    completing = click.Context(group, resilient_parsing=True)  # partial words, never refused
    assert group.parse_args(completing, ["frobnciate"]) == ["frobnciate"]


def test_option_values_are_read_from_the_click_tree():
    """Every option's arity comes from click; none is a flag in one command and takes a
    value in another (moving it before the subcommand would then be ambiguous)."""
    from git_claim.cli.claim_cmd import claim_group
    from git_claim.cli.group import _walk

    subcommands()
    arity = claim_group.option_arity()
    for name in ("--remote", "--agent", "--from", "--label", "--exclude-label", "--base",
                 "--interval", "--grace", "--on-failure", "--on-lost"):
        assert arity[name] == 1, name
    for name in ("--json", "--next", "--no-gate", "--worktree", "--watch", "--done"):
        assert arity.get(name, 0) == 0, name
    seen: dict[str, set[bool]] = {}
    for command in _walk(claim_group):
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    seen.setdefault(opt, set()).add(bool(param.is_flag or param.count))
    assert not {name for name, kinds in seen.items() if len(kinds) > 1}


def test_word_rules():
    from git_claim.cli.lookalike import lookalike

    names = ["take", "list", "heartbeat", "log", "run", "gc", "reopen"]
    for word in ("640", "PROJ-123", "fix-login", "lot", "rum", "go", "v2", "l1st", "x" * 64,
                 "improve-heartbeat-interval", "gone", "none", "blocker", "installer"):
        assert lookalike(word, names) is None, word
    for word, meant in (("lsit", "git claim list"), ("lst", "git claim list"),
                        ("heartbaet", "git claim heartbeat"), ("hartbeet", "git claim heartbeat"),
                        ("List", "git claim list"), ("re-open", "git claim reopen"),
                        ("log", "git claim log"), ("commit", "git commit")):
        found = lookalike(word, names)
        assert found is not None and found.meant == meant, word
