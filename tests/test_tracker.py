"""The tracker boundary: backlog files and stdin, and GitHub through a fake `gh`.

The fake gh (tests/fake_gh/gh) answers like gh 2.23 (no `gh project`) and
gh 2.60; GitHub tests run against both. Its state file shows what a call
changed, and its log shows how gh was run (arguments, directory, environment).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from git_claim.errors import ExitCode
from git_claim.tracker import (
    BacklogSourceError,
    FileTracker,
    GhAuthError,
    GhTracker,
    Ticket,
    TrackerError,
    filesource,
    open_tracker,
)
from git_claim.tracker.base import MAX_LABELS, MAX_TITLE

FAKE_GH_DIR = Path(__file__).parent / "fake_gh"
OLD, NEW = "2.23.0", "2.60.0"


# -- backlog files ----------------------------------------------------------------

def backlog_of(text: str) -> FileTracker:
    return FileTracker(text)


def ids(tickets: list[Ticket]) -> list[str]:
    return [ticket.id for ticket in tickets]


def test_plain_lines_are_ids_in_order_and_comments_are_skipped():
    tracker = backlog_of("640\n#641\n\n# a comment\n#\n## heading\n#!/bin/sh\n#-x\n   642  \n"
                         "643 # the login page\n\tPROJ-7\r\n#fix_login.2\n")
    assert ids(tracker.backlog()) == ["640", "641", "642", "643", "PROJ-7", "fix_login.2"]
    assert all(not ticket.labels_known and ticket.open for ticket in tracker.backlog())
    assert tracker.skipped == {}
    assert tracker.name == "file" and not tracker.can_mirror


def test_garbage_lines_are_skipped_and_counted_never_fatal():
    garbage = ["a b c", "-640", "x" * 65, "a..b", "a.lock", "\x1b[31mred", "640 and more",
               "{not json", '{"title": "no id"}', '{"id": true}', '{"id": 1.5}', "[1, 2]",
               '{"id": "../x"}', '{"id": 7, "state": "merged"}', "{" + "[" * 50_000,
               '"640"', "\x00\x01", "tïcket"]
    text = "\n".join(["640", *garbage, "640", '{"id": 640}', "641"]) + "\n"
    tracker = backlog_of(text)
    assert ids(tracker.backlog()) == ["640", "641"]
    assert tracker.skipped == {
        filesource.SKIP_INVALID_ID: 9,
        filesource.SKIP_NOT_A_TICKET: 3,
        filesource.SKIP_BAD_JSON: 2,
        filesource.SKIP_NO_ID: 3,
        filesource.SKIP_BAD_STATE: 1,
        filesource.SKIP_DUPLICATE: 2,
    }
    assert sum(tracker.skipped.values()) == len(garbage) + 2


def test_invalid_utf8_costs_only_its_line(tmp_path):
    path = tmp_path / "backlog"
    path.write_bytes(b"\xef\xbb\xbf640\n\xff\xfe\x80\n641\n")
    tracker = open_tracker(str(path))
    assert ids(tracker.backlog()) == ["640", "641"]
    assert tracker.skipped == {filesource.SKIP_INVALID_ID: 1}


def test_json_lines_carry_titles_labels_and_state():
    lines = [
        {"id": 640, "title": "Login page", "labels": ["design", "ui"], "state": "open",
         "url": "https://example.invalid/640"},
        {"id": "#641", "title": "Closed one", "labels": [], "state": "closed"},
        {"number": 642, "title": "From gh", "labels": [{"name": "bug", "color": "d73a4a"}],
         "state": "OPEN"},
        {"id": "PROJ-9"},
        {"id": 643, "labels": "not a list", "title": ["not", "a", "string"]},
    ]
    tracker = backlog_of("\n".join(json.dumps(line) for line in lines))
    assert ids(tracker.backlog()) == ["640", "642", "PROJ-9", "643"]
    first = tracker.backlog()[0]
    assert first == Ticket(id="640", title="Login page", labels=("design", "ui"),
                           labels_known=True, open=True, url="https://example.invalid/640")
    assert tracker.ticket("642").labels == ("bug",)
    assert tracker.ticket("PROJ-9").labels_known is False  # no "labels": unknown, not none
    assert tracker.ticket("643") == Ticket(id="643", labels_known=False,
                                           labels_problem="its labels are not a list")
    closed = tracker.ticket("#641")
    assert closed.open is False and closed.labels_known and closed.labels == ()
    assert tracker.skipped == {}


def test_ticket_lookup_and_labelled():
    tracker = backlog_of('{"id": 1, "labels": ["Claimed"]}\n{"id": 2, "labels": ["claimed"],'
                         ' "state": "closed"}\n3\n{"id": 4, "labels": ["claimed", "x"]}\n')
    assert tracker.labelled("claimed") == ["1", "4"]
    assert tracker.ticket("99") == Ticket(id="99", labels_known=False)
    with pytest.raises(TrackerError, match="invalid ticket id 'a b'"):
        tracker.ticket("a b")


def test_a_file_cannot_mirror_and_says_nothing_when_asked():
    tracker = backlog_of("640\n")
    tracker.add_labels("640", ["claimed"])
    tracker.remove_labels("640", ["claimed"])
    tracker.comment("640", "hello")
    tracker.set_board_status("640", "1", "octo", "In Progress")
    assert tracker.open_pull_requests() == []


def test_untrusted_text_is_kept_raw_but_bounded():
    hostile = "\x1b[2J\x07" + "t" * 10_000
    line = json.dumps({"id": 1, "title": hostile, "labels": [f"l{i}" for i in range(500)]
                       + ["x" * 1000]})
    ticket = backlog_of(line).ticket("1")
    assert ticket.title == hostile[:MAX_TITLE]
    # past the bound the labels are not cut short (the gate might be among those cut):
    # none is kept and the ticket's labels are unknown, so the rules fail closed
    assert ticket.labels == () and not ticket.labels_known
    assert ticket.labels_problem == f"it has more than {MAX_LABELS} labels"
    within = json.dumps({"id": 2, "labels": [f"l{i}" for i in range(MAX_LABELS - 1)]
                         + ["x" * 1000]})
    bounded = backlog_of(within).ticket("2")
    assert len(bounded.labels) == MAX_LABELS and bounded.labels[-1] == "x" * 100


def test_long_lines_and_the_ticket_bound():
    text = "1\n" + '{"id": 2, "title": "' + "x" * (filesource.MAX_LINE + 10) + '"}\n3\n'
    tracker = backlog_of(text)
    assert ids(tracker.backlog()) == ["1", "3"]
    assert tracker.skipped == {filesource.SKIP_LONG_LINE: 1}

    count = filesource.MAX_TICKETS + 5
    tracker = backlog_of("# many\n" + "".join(f"{n}\n" for n in range(1, count + 1)))
    backlog = tracker.backlog()
    assert len(backlog) == filesource.MAX_TICKETS and backlog[-1].id == str(filesource.MAX_TICKETS)
    assert tracker.skipped == {filesource.SKIP_TOO_MANY: 5}


def test_the_size_bound_keeps_the_head_of_a_huge_file(tmp_path):
    path = tmp_path / "huge"
    filler = "# " + "f" * 1000 + "\n"
    path.write_text("1\n2\n" + filler * (filesource.MAX_BYTES // len(filler) + 10) + "3\n")
    tracker = open_tracker(str(path))
    assert ids(tracker.backlog()) == ["1", "2"]
    assert tracker.skipped == {filesource.SKIP_TOO_BIG: 1}


def test_open_tracker_sources(tmp_path):
    stdin = io.StringIO("640\n# comment\n641\n")
    tracker = open_tracker("-", stdin=stdin)
    assert tracker.name == "stdin" and ids(tracker.backlog()) == ["640", "641"]

    binary = io.TextIOWrapper(io.BytesIO(b"7\n\xff\n8\n"), encoding="utf-8")
    tracker = open_tracker("-", stdin=binary)
    assert ids(tracker.backlog()) == ["7", "8"]

    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "backlog.txt").write_text("12\n")
    assert ids(open_tracker("backlog.txt", cwd=tmp_path / "work").backlog()) == ["12"]
    assert isinstance(open_tracker("gh", cwd=tmp_path, timeout=3), GhTracker)


@pytest.mark.parametrize("source, why", [("missing.txt", "no such file"),
                                         ("work", "it is a directory"),
                                         ("", "the backlog source is empty")])
def test_an_unreadable_backlog_is_a_one_line_usage_error(tmp_path, source, why):
    (tmp_path / "work").mkdir()
    with pytest.raises(BacklogSourceError) as caught:
        open_tracker(source, cwd=tmp_path)
    assert caught.value.exit_code == ExitCode.USAGE
    assert why in caught.value.message and "\n" not in caught.value.message


# -- GitHub through the fake gh -------------------------------------------------------

class FakeGh:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state_path = root / "gh-state.json"
        self.log_path = root / "gh-log.jsonl"
        self.repo = root / "repo"
        self.repo.mkdir()
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{FAKE_GH_DIR}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_GH_STATE", str(self.state_path))
        monkeypatch.setenv("FAKE_GH_LOG", str(self.log_path))
        monkeypatch.delenv("FAKE_GH_FAIL", raising=False)
        for key in ("GH_FORCE_TTY", "GH_PROMPT_DISABLED", "NO_COLOR", "GH_PAGER"):
            monkeypatch.delenv(key, raising=False)
        self.write(default_state())

    def write(self, state: dict) -> None:
        self.state_path.write_text(json.dumps(state))

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def labels_of(self, number: int) -> list[str]:
        return next(issue["labels"] for issue in self.state()["issues"]
                    if issue["number"] == number)

    def calls(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def fail(self, what: str) -> None:
        self.monkeypatch.setenv("FAKE_GH_FAIL", what)

    def tracker(self, timeout: float = 10.0) -> GhTracker:
        return GhTracker(cwd=self.repo, timeout=timeout)


def default_state() -> dict:
    return {
        "repo": "octo/widgets",
        "viewer": "octo",
        "labels": ["design", "claimed", {"name": "bug", "description": "Broken",
                                         "color": "d73a4a"}],
        "issues": [
            {"number": 642, "title": "Newest first", "labels": ["design", "bug"]},
            {"number": 640, "title": "Login page", "labels": []},
            {"number": 641, "title": "Done already", "labels": ["claimed"], "state": "closed"},
            {"number": 645, "title": "Claimed", "labels": ["claimed"]},
        ],
        "prs": [{"number": 7, "headRefName": "claim/640", "title": "Fix login",
                 "body": "Closes #640"},
                {"number": 8, "headRefName": "old", "title": "Merged", "body": "",
                 "state": "merged"}],
        "projects": [{"owner": "octo", "number": 1, "title": "Roadmap",
                      "statuses": ["Todo", "In Progress", "Done"]},
                     {"owner": "octo", "number": 2, "title": "No status", "status_field": ""}],
    }


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGh:
    return FakeGh(tmp_path, monkeypatch)


@pytest.fixture(params=[OLD, NEW])
def gh(request: pytest.FixtureRequest, fake: FakeGh) -> FakeGh:
    """The fake gh as each version; tests use `gh.tracker()`."""
    fake.monkeypatch.setenv("FAKE_GH_VERSION", request.param)
    fake.version = request.param  # type: ignore[attr-defined]
    return fake


def test_the_fake_answers_like_gh(gh):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["gh", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30)

    version = run("--version")
    assert version.stdout.splitlines() == [
        f"gh version {gh.version} ({'2023-02-15' if gh.version == OLD else '2024-10-24'})",
        f"https://github.com/cli/cli/releases/tag/v{gh.version}"]
    listed = run("issue", "list", "--label", "design", "--label=bug", "--json", "number,labels")
    (issue,) = json.loads(listed.stdout)  # --label filters are ANDed
    assert issue["number"] == 642
    shape = ["color", "description", "id", "name"]
    assert [sorted(label) for label in issue["labels"]] == [shape, shape]
    assert [(label["name"], label["color"]) for label in issue["labels"]] == \
        [("design", "ededed"), ("bug", "d73a4a")]
    unknown = run("issue", "list", "--json", "numbr")
    assert unknown.returncode == 1 and unknown.stderr.startswith('Unknown JSON field: "numbr"')
    board = run("project", "--help")
    if gh.version == OLD:
        assert board.returncode == 1
        assert board.stderr.startswith('unknown command "project" for "gh"')
    else:
        assert board.returncode == 0
    refused = run("issue", "edit", "640", "--add-label", "nope")
    assert refused.returncode == 1 and "'nope' not found" in refused.stderr
    assert gh.labels_of(640) == []


def test_backlog_is_open_issues_in_gh_order_with_their_fields(gh):
    tracker = gh.tracker()
    backlog = tracker.backlog()
    assert ids(backlog) == ["642", "640", "645"]
    assert backlog[0] == Ticket(id="642", title="Newest first", labels=("design", "bug"),
                                labels_known=True, open=True,
                                url="https://github.com/octo/widgets/issues/642")
    assert tracker.name == "gh" and tracker.can_mirror
    call, links = gh.calls()  # the listing, then its dependencies (tests/test_gh_links.py)
    assert links["argv"][:3] == ["api", "graphql", "--paginate"]
    argv = call["argv"]
    assert argv[:4] == ["issue", "list", "--state", "open"]
    assert argv[argv.index("--json") + 1] == "number,title,labels,url"
    assert call["cwd"] == str(gh.repo)
    assert call["stdin"] == "devnull"
    assert {"GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1",
            "GH_PAGER": "cat"}.items() <= call["env"].items()


def test_backlog_respects_the_limit(gh):
    tracker = gh.tracker()
    tracker.limit = 2
    assert ids(tracker.backlog()) == ["642", "640"]


def test_one_ticket(gh):
    tracker = gh.tracker()
    assert tracker.ticket("#642").labels == ("design", "bug")
    closed = tracker.ticket("641")
    assert closed.open is False and closed.title == "Done already"
    with pytest.raises(TrackerError) as caught:
        tracker.ticket("999")
    assert "Could not resolve to an issue or pull request with the number of 999" in \
        caught.value.message


@pytest.mark.parametrize("ticket_id", ["PROJ-7", "0640", "0"])
def test_ids_that_are_not_issue_numbers_never_reach_gh(fake, ticket_id):
    tracker = fake.tracker()
    for call in (lambda: tracker.ticket(ticket_id),
                 lambda: tracker.add_labels(ticket_id, ["claimed"]),
                 lambda: tracker.comment(ticket_id, "hi"),
                 lambda: tracker.set_board_status(ticket_id, "1", "octo", "Todo")):
        with pytest.raises(TrackerError, match="is not a GitHub issue number"):
            call()
    with pytest.raises(TrackerError, match="invalid ticket id 'a b'"):
        tracker.ticket("a b")
    assert fake.calls() == []


def test_hostile_titles_and_labels_are_bounded(fake):
    state = default_state()
    state["issues"] = [{"number": 1, "title": "\x1b[31m" + "x" * 5000,
                        "labels": [f"l{n}" for n in range(150)]}]
    state["labels"] = [f"l{n}" for n in range(150)]
    fake.write(state)
    (ticket,) = fake.tracker().backlog()
    assert ticket.title.startswith("\x1b[31m") and len(ticket.title) == MAX_TITLE
    assert len(ticket.labels) == MAX_LABELS


def test_add_and_remove_existing_labels(gh):
    tracker = gh.tracker()
    tracker.add_labels("640", ["claimed", "design"])
    assert gh.labels_of(640) == ["claimed", "design"]
    tracker.add_labels("640", ["Claimed"])  # already there, in another case
    assert gh.labels_of(640) == ["claimed", "design"]
    tracker.remove_labels("640", ["claimed", "bug"])  # bug exists, but not on 640
    assert gh.labels_of(640) == ["design"]
    tracker.add_labels("640", [])
    assert not any("create" in argv for argv in gh.commands())


def test_a_missing_label_is_created_once_then_added(gh):
    tracker = gh.tracker()
    tracker.add_labels("640", ["claimed", "agent:alice"])
    assert gh.labels_of(640) == ["claimed", "agent:alice"]
    assert "agent:alice" in [label if isinstance(label, str) else label["name"]
                             for label in gh.state()["labels"]]
    edits = [argv for argv in gh.commands() if argv[:2] == ["issue", "edit"]]
    creates = [argv for argv in gh.commands() if argv[:2] == ["label", "create"]]
    assert len(edits) == 2 and len(creates) == 1 and creates[0][2] == "agent:alice"
    assert "--force" not in creates[0]  # never recolour a label someone else made


def test_removing_a_label_the_repository_lacks_is_a_no_op(gh):
    tracker = gh.tracker()
    tracker.remove_labels("642", ["never-made", "design"])
    assert gh.labels_of(642) == ["bug"]
    tracker.remove_labels("642", ["never-made"])
    assert gh.labels_of(642) == ["bug"]


def test_an_edit_failure_is_one_clean_line(gh):
    gh.fail("edit")
    with pytest.raises(TrackerError) as caught:
        gh.tracker().add_labels("640", ["claimed"])
    assert caught.value.message == ("gh issue edit failed: HTTP 503: Service Unavailable"
                                    " (https://api.github.com/graphql)")
    assert caught.value.exit_code == ExitCode.GIT_ERROR and caught.value.kind == "tracker"


@pytest.mark.parametrize("label", ["a,b", 'say "hi"', "-x", " pad", "", "x" * 51, "bell\x07"])
def test_labels_gh_cannot_pass_are_refused(fake, label):
    with pytest.raises(TrackerError, match="cannot be used"):
        fake.tracker().add_labels("640", [label])
    assert fake.calls() == []


def test_comment(gh):
    body = "-- claimed by alice\n\nsecond line with `code`"
    gh.tracker().comment("#640", body)
    assert gh.state()["comments"] == [{"issue": 640, "body": body}]


def test_open_pull_requests(gh):
    pulls = gh.tracker().open_pull_requests()
    assert [(pr.number, pr.head, pr.title, pr.body) for pr in pulls] == \
        [(7, "claim/640", "Fix login", "Closes #640")]


def test_labelled_lists_open_issues_with_the_label(gh):
    assert gh.tracker().labelled("claimed") == ["645"]
    argv = gh.commands()[-1]
    assert "--label" in argv and argv[argv.index("--label") + 1] == "claimed"


def items(fake: FakeGh, project: int = 1) -> list[tuple[int, str]]:
    board = next(p for p in fake.state()["projects"] if p["number"] == project)
    return [(item["issue"], item["status"]) for item in board.get("items", [])]


def test_board_status_uses_gh_project_or_falls_back_to_graphql(gh):
    tracker = gh.tracker()
    tracker.set_board_status("640", "1", "octo", "In Progress")
    assert items(gh) == [(640, "In Progress")]
    tracker.set_board_status("640", "1", "octo", "done")  # the card moves; matched ignoring case
    tracker.set_board_status("642", "1", "@me", "Todo")
    assert items(gh) == [(640, "Done"), (642, "Todo")]
    commands = gh.commands()
    assert commands.count(["project", "--help"]) == 1  # asked once per tracker
    used_graphql = any(argv[:2] == ["api", "graphql"] for argv in commands)
    used_project = any(argv[:2] == ["project", "item-edit"] for argv in commands)
    assert (used_graphql, used_project) == ((True, False) if gh.version == OLD else (False, True))


def test_board_problems_are_said_clearly(gh):
    tracker = gh.tracker()
    with pytest.raises(TrackerError) as caught:
        tracker.set_board_status("640", "1", "octo", "Blocked")
    assert caught.value.message == ("project 1 of octo has no Status 'Blocked'"
                                    " (it has: Todo, In Progress, Done)")
    with pytest.raises(TrackerError) as caught:
        tracker.set_board_status("640", "9", "octo", "Todo")
    assert caught.value.message == ("project boards are unavailable: Could not resolve to a"
                                    " ProjectV2 with the number 9.")
    with pytest.raises(TrackerError) as caught:
        tracker.set_board_status("640", "2", "octo", "Todo")
    assert caught.value.message == ("project boards are unavailable: project 2 of octo has no"
                                    " Status field with choices")
    with pytest.raises(TrackerError, match="is not a project number"):
        tracker.set_board_status("640", "one", "octo", "Todo")
    with pytest.raises(TrackerError, match="is not a GitHub login"):
        tracker.set_board_status("640", "1", "--owner", "Todo")
    assert items(gh) == []


def test_old_gh_without_project_scope_says_boards_are_unavailable(fake):
    fake.monkeypatch.setenv("FAKE_GH_VERSION", OLD)
    fake.fail("api")
    with pytest.raises(TrackerError) as caught:
        fake.tracker().set_board_status("640", "1", "octo", "Todo")
    message = caught.value.message
    assert message.startswith("project boards are unavailable: Your token has not been granted"
                              " the required scopes")
    assert "\n" not in message


def test_new_gh_board_failure_says_boards_are_unavailable(fake):
    fake.monkeypatch.setenv("FAKE_GH_VERSION", NEW)
    fake.fail("item-add")
    with pytest.raises(TrackerError, match="^project boards are unavailable: HTTP 503"):
        fake.tracker().set_board_status("640", "1", "octo", "Todo")


def test_not_authenticated(gh):
    gh.fail("auth")
    tracker = gh.tracker()
    for call in (tracker.backlog, lambda: tracker.ticket("640"),
                 lambda: tracker.add_labels("640", ["claimed"]),
                 lambda: tracker.set_board_status("640", "1", "octo", "Todo")):
        with pytest.raises(GhAuthError) as caught:
            call()
        assert caught.value.message == "gh is not authenticated: run `gh auth login`"
        assert caught.value.exit_code == ExitCode.GIT_ERROR


def test_malformed_json(gh):
    gh.fail("json")
    tracker = gh.tracker()
    for call in (tracker.backlog, lambda: tracker.ticket("640"), tracker.open_pull_requests,
                 lambda: tracker.labelled("claimed")):
        with pytest.raises(TrackerError) as caught:
            call()
        assert caught.value.message == "gh printed something that is not the expected JSON"


def test_a_gh_that_does_not_answer_is_abandoned(fake):
    fake.fail("timeout")
    started = time.monotonic()
    with pytest.raises(TrackerError) as caught:
        fake.tracker(timeout=1).backlog()
    assert caught.value.message == "gh did not answer within 1s"
    assert time.monotonic() - started < 8


def test_gh_not_installed(fake, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    fake.monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(TrackerError) as caught:
        fake.tracker().backlog()
    assert caught.value.message.startswith("gh is not installed")


def test_gh_error_lines_are_made_safe(tmp_path):
    script = tmp_path / "noisy-gh"
    script.write_text("#!/bin/sh\nprintf '\\n  gh: \\033[31mboom\\007 ' >&2\n"
                      "printf 'x%.0s' $(seq 1 400) >&2\nprintf '\\nsecond line\\n' >&2\n"
                      "exit 1\n")
    script.chmod(0o755)
    with pytest.raises(TrackerError) as caught:
        GhTracker(cwd=tmp_path, gh=str(script)).ticket("640")
    message = caught.value.message
    assert message.startswith("gh issue view failed: ?[31mboom? x")
    assert "\x1b" not in message and "\n" not in message and "second" not in message
    assert len(message) < 340
