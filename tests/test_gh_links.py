"""Issue dependencies and sub-issues through the fake gh's `gh api graphql`.

A listing costs one more gh call however many tickets and pages; every way
that call can fail still lists the tickets, with their links unknown and the
reason in gh's or GitHub's words, so the picking rules fail closed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from git_claim.tracker import GhAuthError, GhTracker, ghlinks
from git_claim.tracker.base import Link, Ticket
from test_tracker import NEW, OLD, FakeGh, default_state

OTHER = "octo/other"


def linked_state() -> dict:
    state = default_state()
    state["issues"] = [
        {"number": 650, "title": "Checkout", "blocked_by": [640, 641]},
        {"number": 649, "title": "Epic", "sub_issues": [{"repo": OTHER, "number": 4,
                                                         "state": "closed"}]},
        {"number": 648, "title": "Waits elsewhere",
         "blocked_by": [{"repo": OTHER, "number": 3, "state": "open"},
                        {"repo": OTHER, "number": 5, "state": "closed"}]},
        {"number": 647, "title": "Part one", "parent": 649},
        {"number": 646, "title": "Part two", "parent": 649, "blocked_by": [647]},
        {"number": 642, "title": "Plain"},
        {"number": 641, "title": "Done already", "state": "closed"},
        {"number": 640, "title": "Login page"},
    ]
    return state


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGh:
    made = FakeGh(tmp_path, monkeypatch)
    made.write(linked_state())
    for key in ("FAKE_GH_PAGE", "FAKE_GH_NO_DEPENDENCIES", "FAKE_GH_SLEEP"):
        monkeypatch.delenv(key, raising=False)
    return made


@pytest.fixture(params=[OLD, NEW])
def gh(request: pytest.FixtureRequest, fake: FakeGh) -> FakeGh:
    fake.monkeypatch.setenv("FAKE_GH_VERSION", request.param)
    fake.version = request.param  # type: ignore[attr-defined]
    return fake


def by_id(tickets: list[Ticket]) -> dict[str, Ticket]:
    return {ticket.id: ticket for ticket in tickets}


def links_calls(fake: FakeGh) -> list[list[str]]:
    return [argv for argv in fake.commands() if argv[:2] == ["api", "graphql"]]


# -- the listing -------------------------------------------------------------------

@pytest.mark.parametrize("page", ["2", ""])
def test_backlog_links_by_number_over_pages(gh, page):
    if page:
        gh.monkeypatch.setenv("FAKE_GH_PAGE", page)  # 7 open issues: 4 pages
    tickets = gh.tracker().backlog()
    assert [ticket.id for ticket in tickets] == ["650", "649", "648", "647", "646", "642", "640"]
    assert all(ticket.links_known and ticket.links_problem == "" for ticket in tickets)
    assert all(ticket.priority is None for ticket in tickets)
    found = by_id(tickets)
    assert found["650"].blocked_by == (Link("640", open=True, local=True),
                                       Link("641", open=False, local=True))
    assert found["648"].blocked_by == (Link(f"{OTHER}#3", open=True, local=False),
                                       Link(f"{OTHER}#5", open=False, local=False))
    assert found["649"].children == (Link("647", True, True), Link("646", True, True),
                                     Link(f"{OTHER}#4", open=False, local=False))
    assert found["646"].blocked_by == (Link("647", True, True),)  # on the last page of 2
    for plain in ("647", "642", "640"):
        assert (found[plain].blocked_by, found[plain].children) == ((), ())
    # One listing, one links call for every page; gh fills in the repository.
    assert len(gh.commands()) == 2
    (argv,) = links_calls(gh)
    assert argv[:3] == ["api", "graphql", "--paginate"]
    assert "--slurp" not in argv  # gh before 2.48 refuses it
    assert argv[argv.index("owner={owner}") - 1] == "-F"
    assert argv[argv.index("repo={repo}") - 1] == "-F"
    assert gh.calls()[-1]["stdin"] == "devnull"


def test_a_big_listing_still_costs_one_more_call(fake):
    state = linked_state()
    state["issues"] += [{"number": n, "title": f"n{n}", "blocked_by": [n - 1]}
                        for n in range(1000, 1030)]
    fake.write(state)
    fake.monkeypatch.setenv("FAKE_GH_PAGE", "3")
    tickets = by_id(fake.tracker().backlog())
    assert len(tickets) == 37
    assert tickets["1029"].blocked_by == (Link("1028"),) and tickets["1029"].links_known
    assert tickets["1000"].blocked_by == (Link("999", open=True, local=True),)
    assert len(fake.commands()) == 2


def test_no_tickets_no_links_call(fake):
    state = linked_state()
    state["issues"] = [{"number": 1, "state": "closed"}]
    fake.write(state)
    assert fake.tracker().backlog() == []
    assert links_calls(fake) == []


def test_links_switched_off_make_no_call(gh):
    tracker = GhTracker(cwd=gh.repo, timeout=10, links=False)
    tickets = tracker.backlog()
    assert len(tickets) == 7
    assert all(t.links_known and t.blocked_by == () and t.children == () for t in tickets)
    one = tracker.ticket("650")
    assert one.links_known and one.blocked_by == ()
    assert links_calls(gh) == []


# -- failing closed ----------------------------------------------------------------

def assert_listed_but_unknown(fake: FakeGh, problem: str, timeout: float = 10.0) -> None:
    tickets = fake.tracker(timeout=timeout).backlog()
    assert len(tickets) == 7  # the backlog is still there
    for ticket in tickets:
        assert ticket.links_known is False
        assert ticket.links_problem == problem
        assert (ticket.blocked_by, ticket.children) == ((), ())
    assert len(fake.commands()) == 2


def test_a_host_without_dependencies(gh):
    gh.monkeypatch.setenv("FAKE_GH_NO_DEPENDENCIES", "1")
    assert_listed_but_unknown(gh, "Field 'blockedBy' doesn't exist on type 'Issue'")


def test_a_failing_api_call(gh):
    gh.fail("api")
    tickets = gh.tracker().backlog()
    assert len(tickets) == 7
    problem = tickets[0].links_problem
    assert problem.startswith("Your token has not been granted the required scopes")
    assert "\n" not in problem and len(problem) <= 300
    assert all(not t.links_known and t.links_problem == problem for t in tickets)


def test_malformed_json(gh):
    gh.fail("json:api")
    assert_listed_but_unknown(gh, "gh printed something that is not the expected JSON")


def test_a_links_call_that_does_not_answer(fake):
    fake.fail("timeout:api")
    fake.monkeypatch.setenv("FAKE_GH_SLEEP", "20")
    assert_listed_but_unknown(fake, "gh did not answer within 1s", timeout=1)


def test_the_listing_itself_failing_still_raises(fake):
    fake.fail("auth")
    with pytest.raises(GhAuthError):
        fake.tracker().backlog()


def test_an_issue_the_answer_does_not_mention(fake, tmp_path):
    # Closed between the listing and the links call: GitHub's open issues lack it.
    wrapper = tmp_path / "gh-closing"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = api ]; then python3 - "$FAKE_GH_STATE" <<\'EOF\'\n'
        "import json, sys\n"
        "data = json.load(open(sys.argv[1]))\n"
        "for issue in data['issues']:\n"
        "    if issue['number'] == 642:\n"
        "        issue['state'] = 'closed'\n"
        "json.dump(data, open(sys.argv[1], 'w'))\n"
        "EOF\nfi\n"
        f'exec "{Path(__file__).parent / "fake_gh" / "gh"}" "$@"\n')
    wrapper.chmod(0o755)
    tickets = by_id(GhTracker(cwd=fake.repo, timeout=10, gh=str(wrapper)).backlog())
    assert tickets["642"].links_known is False
    assert tickets["642"].links_problem == "GitHub's answer did not include this issue"
    assert tickets["650"].links_known and len(tickets["650"].blocked_by) == 2


def test_more_than_fifty_blockers(fake):
    state = linked_state()
    many = [{"repo": OTHER, "number": n} for n in range(1, 52)]
    state["issues"][0]["blocked_by"] = many  # 650: 51 blockers
    state["issues"][1]["blocked_by"] = many[:50]  # 649: exactly 50
    fake.write(state)
    tickets = by_id(fake.tracker().backlog())
    assert tickets["650"].links_known is False
    assert tickets["650"].links_problem == "more than 50 blockers"
    assert tickets["650"].blocked_by == ()
    assert tickets["649"].links_known and len(tickets["649"].blocked_by) == 50
    assert tickets["648"].links_known


# -- one ticket ----------------------------------------------------------------

def test_one_ticket_with_its_links(gh):
    tracker = gh.tracker()
    ticket = tracker.ticket("#650")
    assert ticket.title == "Checkout" and ticket.links_known
    assert ticket.blocked_by == (Link("640"), Link("641", open=False))
    epic = tracker.ticket("649")
    assert epic.children == (Link("647"), Link("646"), Link(f"{OTHER}#4", False, False))
    closed = tracker.ticket("641")
    assert closed.open is False and closed.links_known and closed.blocked_by == ()
    calls = gh.commands()
    assert [argv[:2] for argv in calls] == [["issue", "view"], ["api", "graphql"]] * 3
    assert "--paginate" not in calls[1]
    assert calls[1][calls[1].index("number=650") - 1] == "-F"


@pytest.mark.parametrize("how, problem", [
    ("dependencies", "Field 'blockedBy' doesn't exist on type 'Issue'"),
    ("json:api", "gh printed something that is not the expected JSON"),
])
def test_one_ticket_fails_closed(fake, how, problem):
    if how == "dependencies":
        fake.monkeypatch.setenv("FAKE_GH_NO_DEPENDENCIES", "1")
    else:
        fake.fail(how)
    ticket = fake.tracker().ticket("650")
    assert ticket.title == "Checkout"
    assert (ticket.links_known, ticket.links_problem, ticket.blocked_by) == (False, problem, ())


# -- gh's output shapes ------------------------------------------------------------

def run_gh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gh", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)


def test_pages_back_to_back_or_slurped_read_the_same(fake):
    fake.monkeypatch.setenv("FAKE_GH_PAGE", "3")
    fake.monkeypatch.setenv("FAKE_GH_VERSION", NEW)
    plain = run_gh(*ghlinks.listing_args())
    assert plain.returncode == 0 and plain.stdout.count('{"data"') == 3
    slurped = run_gh(*ghlinks.listing_args(), "--slurp")
    assert slurped.returncode == 0 and slurped.stdout.startswith("[")
    spaced = plain.stdout.replace('}{"data"', '}\n{"data"')
    found = ghlinks.parse_listing(plain.stdout)
    assert ghlinks.parse_listing(slurped.stdout) == found == ghlinks.parse_listing(spaced)
    assert len(found) == 7

    fake.monkeypatch.setenv("FAKE_GH_VERSION", OLD)
    old = run_gh(*ghlinks.listing_args(), "--slurp")
    assert old.returncode == 1 and old.stderr.startswith("unknown flag: --slurp")


def test_the_fake_follows_ghs_cursor_rule(fake):
    # gh reads the first pageInfo in the answer: a nested one above the listing's own ends
    # the walk after one page, which is why the links query puts the listing's pageInfo first.
    fake.monkeypatch.setenv("FAKE_GH_PAGE", "2")
    nodes = "nodes { number subIssues(first: 10) { pageInfo { hasNextPage endCursor } }}"
    listing = "pageInfo { hasNextPage endCursor }"
    query = """query($owner: String!, $repo: String!, $endCursor: String) {
      repository(owner: $owner, name: $repo) {
        issues(first: 100, after: $endCursor, states: OPEN) { %s }
      }
    }"""
    for order, pages in ((f"{nodes} {listing}", 1), (f"{listing} {nodes}", 4)):
        answer = run_gh("api", "graphql", "--paginate", "-f", f"query={query % order}",
                        "-F", "owner={owner}", "-F", "repo={repo}")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.count('{"data"') == pages
    raw = run_gh("api", "graphql", "-f", f"query={ghlinks.OPEN_ISSUES_LINKS}",
                 "-f", "owner={owner}", "-f", "repo={repo}")  # -f fills in no placeholders
    assert raw.returncode == 1
    assert "Could not resolve to a Repository with the name '{owner}/{repo}'." in raw.stderr


@pytest.mark.parametrize("text, problem", [
    ("", ghlinks.NOT_READABLE),
    ('{"data": {"repository": {"issues": {"nodes": []}}}} trailing', ghlinks.NOT_READABLE),
    ("[" * 100_000, ghlinks.NOT_READABLE),
    ('{"errors": [{"message": "Something went wrong\\nwhile executing"}]}',
     "Something went wrong"),
    ('{"data": {"repository": null}}', ghlinks.NOT_READABLE),
])
def test_unreadable_answers(text, problem):
    with pytest.raises(ghlinks.LinksUnreadable) as caught:
        ghlinks.parse_listing(text)
    assert str(caught.value) == problem


def page(*nodes: object) -> str:
    return json.dumps({"data": {"repository": {"nameWithOwner": "Octo/Widgets", "issues": {
        "pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": list(nodes)}}}})


def issue(number: object, blockers: list, more: bool = False) -> dict:
    return {"number": number, "blockedBy": {"pageInfo": {"hasNextPage": more}, "nodes": blockers},
            "subIssues": {"pageInfo": {"hasNextPage": False}, "nodes": []}}


def test_what_github_says_is_read_carefully():
    home = {"nameWithOwner": "octo/widgets"}  # names compare ignoring case
    found = ghlinks.parse_listing(page(
        issue(1, [{"number": 2, "state": "OPEN", "repository": home}]),
        issue(3, [None]),  # a blocker GitHub did not show
        issue(4, [{"number": 5, "state": "MERGED", "repository": home}]),
        issue(6, [{"number": 7, "state": "OPEN", "repository": {"nameWithOwner": "../x"}}]),
        issue(8, [], more=True),
        {"number": 9},
        issue("10", []), issue(True, []), "junk"))
    assert found[1] == ghlinks.Links(blocked_by=(Link("2"),))
    assert found[3].problem == ghlinks.HIDDEN_LINK
    assert found[4].blocked_by == (Link("5", open=None),)  # a state it does not know
    assert found[6].problem == ghlinks.HIDDEN_LINK
    assert found[8].problem == "more than 50 blockers"
    assert found[9].problem == ghlinks.NOT_READABLE
    assert set(found) == {1, 3, 4, 6, 8, 9}
