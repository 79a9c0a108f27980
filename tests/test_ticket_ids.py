"""Ticket ids are validated before anything touches git (exit 2, remote untouched)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agents import remote_refs_bytes

REJECTED = ["", "#", " 640", "640 ", "a b", "a\tb", "a\nb", "a/b", "a@{1}", "a^", "a~1",
            "a:b", "-640", ".640", "a..b", "a.lock", "x" * 65, "tïcket", "a\x1b[31m",
            "a*", "a?", "a[", "a\\b", "@{", "##640", "a\x00b"[:1] + "\x7f"]
ACCEPTED = {"640": "640", "#640": "640", "PROJ-123": "PROJ-123", "fix_login.2": "fix_login.2",
            "x" * 64: "x" * 64, "_a": "_a"}


def test_rejected_ids_exit_2_and_leave_the_remote_alone(make_world):
    """Each command is its own process and must exit 2 on its own.

    They run a few at a time (the remote is compared once, after all of them:
    any write by any of them would show there), which saves wall time only.
    """
    world = make_world("path")
    alice = world.agent("alice")
    before = remote_refs_bytes(world.repo)
    commands = []
    for index, raw in enumerate(REJECTED):
        commands += [["claim", raw], ["release", raw]]
        if index % 4 == 0:  # the other entry points share the validator: a sample
            commands += [["claim", "640", raw], ["claim", "reopen", raw],
                         ["claim", "heartbeat", raw]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda command: alice.cmd(*command), commands))
    assert len(outcomes) == len(commands)
    for command, outcome in zip(commands, outcomes, strict=True):
        assert outcome.code == 2, (command, outcome)
        assert outcome.stderr.count("\n") == 1 and "Traceback" not in outcome.stderr
    assert remote_refs_bytes(world.repo) == before
    assert "refs/claims/640" not in before.decode()


def test_accepted_ids_map_to_distinct_refs():
    from git_claim.ticket import parse_ticket

    assert {raw: parse_ticket(raw) for raw in ACCEPTED} == ACCEPTED


def test_an_id_pattern_refuses_other_shapes_before_anything_is_claimed(make_world):
    """claim.idPattern: every id typed for a claim must match it in full, even an explicit one."""
    world = make_world("path")
    alice = world.agent("alice")
    alice.git("config", "claim.idPattern", "PROJ-[0-9]+")
    before = remote_refs_bytes(world.repo)
    for command in (["take", "lsit"], ["--", "fix-login"], ["PROJ-12", "proj-13"],
                    ["PROJ-12", "PROJ-12x"], ["run", "640", "--", "true"],
                    ["take", "--json", "640"]):
        outcome = alice.claim(*command)
        assert outcome.code == 2, (command, outcome)
        shown = outcome.stdout if "--json" in command else outcome.stderr
        assert "claim.idPattern 'PROJ-[0-9]+'" in shown and shown.count("\n") == 1, \
            (command, outcome)
    assert remote_refs_bytes(world.repo) == before  # PROJ-12 was not claimed either
    won = alice.claim("PROJ-12")
    assert won.code == 0, won
    assert alice.release("PROJ-12").code == 0


def test_an_invalid_id_pattern_is_a_usage_error(make_world):
    world = make_world("path")
    alice = world.agent("alice")
    alice.git("config", "claim.idPattern", "([0-9]+")
    before = remote_refs_bytes(world.repo)
    outcome = alice.claim("640")
    assert outcome.code == 2, outcome
    assert "claim.idPattern '([0-9]+' is not a regular expression" in outcome.stderr
    assert outcome.stderr.count("\n") == 1
    assert remote_refs_bytes(world.repo) == before
