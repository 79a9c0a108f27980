"""GitHub through the `gh` CLI: the tool users have already authenticated.

Running gh instead of calling the API keeps the user's login, host and
repository resolution exactly as they know them, and adds no token handling
here. gh is an interactive tool, so every call is made non-interactive: no
stdin, no prompts, no pager, no colour, no update notices, and a timeout, so
a claim never waits on the mirror.

Versions differ, and old ones are common in LTS distributions: gh 2.23 has
no `gh project` command, so boards fall back to `gh api graphql`. Every gh
refuses `issue edit --add-label` for a label the repository does not have;
the label is then created once and the edit retried.

Dependencies and sub-issues come from `gh api graphql` (see `ghlinks`): one
more call per backlog listing, and when it fails the tickets are still listed,
with their links marked unknown and the reason, so no rule guesses them.

Issue titles, labels and bodies come from anyone who can open an issue: they
are bounded here and cleaned by the printer. gh's own error lines are cleaned
before they become messages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

from ..errors import BadTicketError
from ..safetext import clean, quoted
from ..ticket import parse_ticket
from . import ghlinks
from .base import (
    MAX_BODY,
    MAX_TITLE,
    MAX_URL,
    PullRequest,
    Ticket,
    Tracker,
    TrackerError,
    bound_labels,
    bound_text,
)

DEFAULT_LIMIT = 1000  # issues per backlog listing
PR_LIMIT = 200
MAX_OUTPUT = 64 * 1024 * 1024
MAX_HEAD = 255
MAX_GITHUB_LABEL = 50  # GitHub's own limit on label names
STATUS_FIELD = "Status"
EXIT_AUTH = 4  # gh's documented exit code for "authentication required"

NOT_JSON = "gh printed something that is not the expected JSON"
_MISSING_LABEL = re.compile(r"'([^'\n]*)' not found")

_GH_ENV = {
    "GH_PROMPT_DISABLED": "1",
    "GH_NO_UPDATE_NOTIFIER": "1",
    "GH_NO_EXTENSION_UPDATE_NOTIFIER": "1",
    "GH_SPINNER_DISABLED": "1",
    "GH_PAGER": "cat",
    "PAGER": "cat",
    "NO_COLOR": "1",
    "CLICOLOR": "0",
}
_GH_ENV_DROP = ("GH_FORCE_TTY", "CLICOLOR_FORCE")

_PROJECT_FRAGMENT = """
projectV2(number: $number) {
  id
  field(name: "%s") {
    ... on ProjectV2SingleSelectField { id options { id name } }
  }
}""" % STATUS_FIELD  # noqa: UP031 (GraphQL braces: an f-string doubles each)
LOOKUP_OWNER = """query($owner: String!, $number: Int!) {
  repositoryOwner(login: $owner) { ... on ProjectV2Owner { %s } }
}""" % _PROJECT_FRAGMENT  # noqa: UP031
LOOKUP_VIEWER = """query($number: Int!) {
  viewer { %s }
}""" % _PROJECT_FRAGMENT  # noqa: UP031
ADD_ITEM = """mutation($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) { item { id } }
}"""
SET_STATUS = """mutation($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field,
                                        value: {singleSelectOptionId: $option}}) {
    projectV2Item { id }
  }
}"""


class GhCommandError(TrackerError):
    """gh ran and failed; `reason` is its first error line, made safe."""

    def __init__(self, message: str, *, reason: str, stderr: str, returncode: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.stderr = stderr
        self.returncode = returncode


class GhAuthError(TrackerError):
    kind = "tracker-auth"


class _BoardUnavailable(Exception):
    """Internal: the board cannot be reached; becomes "project boards are unavailable"."""


class GhTracker(Tracker):
    name = "gh"
    can_mirror = True

    def __init__(self, *, cwd: Path | None = None, timeout: float = 20.0, gh: str = "gh",
                 limit: int = DEFAULT_LIMIT, links: bool = True) -> None:
        super().__init__()
        # False: dependencies are switched off; tickets carry no links, known as none.
        self.links = links
        self.cwd = cwd
        self.timeout = timeout
        self.gh = gh
        self.limit = limit
        self._has_project: bool | None = None
        self._boards: dict[tuple[str, str], tuple[str, str, dict[str, str]]] = {}

    # -- running gh -----------------------------------------------------------

    def _run(self, args: list[str]) -> str:
        env = dict(os.environ)
        for key in _GH_ENV_DROP:
            env.pop(key, None)
        env.update(_GH_ENV)
        executable = shutil.which(self.gh, path=env.get("PATH", os.defpath))
        if executable is None:
            raise TrackerError("gh is not installed (see https://cli.github.com)")
        try:
            process = subprocess.Popen([executable, *args], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       cwd=self.cwd, env=env, start_new_session=True)
        except OSError as error:
            raise TrackerError(f"gh cannot be run: {clean(error.strerror or str(error))}") from None
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raise TrackerError(f"gh did not answer within {self.timeout:g}s") from None
        stderr = err.decode("utf-8", errors="replace")
        if process.returncode == EXIT_AUTH:
            raise GhAuthError("gh is not authenticated: run `gh auth login`")
        if process.returncode != 0:
            reason = _error_line(stderr) or f"exit code {process.returncode}"
            command = " ".join(arg for arg in args[:2] if not arg.startswith("-"))
            raise GhCommandError(f"gh {command} failed: {reason}", reason=reason,
                                 stderr=stderr, returncode=process.returncode)
        if len(out) > MAX_OUTPUT:
            raise TrackerError(f"gh printed more than {MAX_OUTPUT // (1024 * 1024)} MB")
        return out.decode("utf-8", errors="replace")

    def _json(self, args: list[str], shape: type) -> Any:
        text = self._run(args)
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise TrackerError(NOT_JSON) from None
        if not isinstance(value, shape):
            raise TrackerError(NOT_JSON)
        return value

    # -- reading --------------------------------------------------------------

    def backlog(self) -> list[Ticket]:
        entries = self._json(["issue", "list", "--state", "open", "--limit", str(self.limit),
                              "--json", "number,title,labels,url"], list)
        tickets = []
        for entry in entries:
            ticket = self._ticket_from(entry)
            if ticket is not None and ticket.open:
                tickets.append(ticket)
        if not self.links or not tickets:
            return tickets
        text, problem = self._links_answer(ghlinks.listing_args())
        found: dict[int, ghlinks.Links] = {}
        if not problem:
            try:
                found = ghlinks.parse_listing(text)
            except ghlinks.LinksUnreadable as error:
                problem = str(error)
        return [_with_links(ticket, found.get(int(ticket.id)), problem) for ticket in tickets]

    def ticket(self, ticket_id: str) -> Ticket:
        number = _issue_number(ticket_id)
        entry = self._json(["issue", "view", number, "--json", "number,title,labels,state,url"],
                           dict)
        ticket = self._ticket_from(entry)
        if ticket is None or ticket.id != number:
            raise TrackerError(NOT_JSON)
        if not self.links:
            return ticket
        text, problem = self._links_answer(ghlinks.issue_args(number))
        links = None
        if not problem:
            try:
                links = ghlinks.parse_issue(text, int(number))
            except ghlinks.LinksUnreadable as error:
                problem = str(error)
        return _with_links(ticket, links, problem)

    def _links_answer(self, args: list[str]) -> tuple[str, str]:
        """gh's answer to a links query and "", or "" and why there is none (fail closed)."""
        try:
            return self._run(args), ""
        except GhCommandError as error:  # gh's or GitHub's own words
            return "", error.reason
        except TrackerError as error:  # no answer in time, too much output, no login
            return "", error.message

    def labelled(self, label: str) -> list[str]:
        label = _label_arg(label)
        entries = self._json(["issue", "list", "--state", "open", "--label", label,
                              "--limit", str(self.limit), "--json", "number"], list)
        ids = []
        for entry in entries:
            number = entry.get("number") if isinstance(entry, dict) else None
            if _is_issue_number(number):
                ids.append(str(number))
            else:
                self._skip("issue without a number")
        return ids

    def open_pull_requests(self) -> list[PullRequest]:
        entries = self._json(["pr", "list", "--state", "open", "--limit", str(PR_LIMIT),
                              "--json", "number,headRefName,title,body"], list)
        pulls = []
        for entry in entries:
            number = entry.get("number") if isinstance(entry, dict) else None
            if not _is_issue_number(number):
                self._skip("pull request without a number")
                continue
            pulls.append(PullRequest(number=number,
                                     head=bound_text(entry.get("headRefName"), MAX_HEAD),
                                     title=bound_text(entry.get("title"), MAX_TITLE),
                                     body=bound_text(entry.get("body"), MAX_BODY)))
        return pulls

    def _ticket_from(self, entry: Any) -> Ticket | None:
        number = entry.get("number") if isinstance(entry, dict) else None
        if not _is_issue_number(number):
            self._skip("issue without a number")
            return None
        raw_labels = entry.get("labels")
        labels_known = isinstance(raw_labels, list)
        labels: tuple[str, ...] = ()
        if labels_known:
            labels = bound_labels(item.get("name") if isinstance(item, dict) else None
                                  for item in raw_labels)
        state = entry.get("state", "OPEN")
        return Ticket(id=str(number), title=bound_text(entry.get("title"), MAX_TITLE),
                      labels=labels, labels_known=labels_known,
                      open=not (isinstance(state, str) and state.upper() != "OPEN"),
                      url=bound_text(entry.get("url"), MAX_URL))

    # -- mirroring ------------------------------------------------------------

    def add_labels(self, ticket_id: str, labels: list[str]) -> None:
        number = _issue_number(ticket_id)
        wanted = [_label_arg(label) for label in labels]
        if not wanted:
            return
        created: set[str] = set()
        while True:
            try:
                self._run(["issue", "edit", number, *(f"--add-label={name}" for name in wanted)])
                return
            except GhCommandError as error:
                missing = _missing_label(error.stderr, wanted)
                if missing is None or missing.casefold() in created:
                    raise
                self._create_label(missing)
                created.add(missing.casefold())

    def assign(self, ticket_id: str, who: str) -> None:
        number = _issue_number(ticket_id)
        if not who or who.startswith("-") or any(c.isspace() for c in who):
            raise TrackerError(f"cannot assign {bound_text(who, 40)!r}: not a GitHub login")
        self._run(["issue", "edit", number, f"--add-assignee={who}"])

    def remove_labels(self, ticket_id: str, labels: list[str]) -> None:
        number = _issue_number(ticket_id)
        remaining = [_label_arg(label) for label in labels]
        while remaining:
            try:
                self._run(["issue", "edit", number,
                           *(f"--remove-label={name}" for name in remaining)])
                return
            except GhCommandError as error:
                # A label the repository does not have is on no issue: nothing to remove.
                missing = _missing_label(error.stderr, remaining)
                if missing is None:
                    raise
                remaining = [name for name in remaining if name.casefold() != missing.casefold()]

    def _create_label(self, name: str) -> None:
        try:
            self._run(["label", "create", name, "--description", "Mirrored by git-claim"])
        except GhCommandError as error:
            if "already exists" not in error.stderr:  # another agent was first: fine
                raise

    def comment(self, ticket_id: str, body: str) -> None:
        number = _issue_number(ticket_id)
        text = body.replace("\x00", "")[:MAX_BODY]
        self._run(["issue", "comment", number, f"--body={text}"])

    # -- boards ---------------------------------------------------------------

    def set_board_status(self, ticket_id: str, project: str, owner: str, status: str) -> None:
        number = _issue_number(ticket_id)
        if not (project.isascii() and project.isdigit()):
            raise TrackerError(f"project {quoted(project)} is not a project number")
        if not owner or not re.fullmatch(r"@me|[A-Za-z0-9][A-Za-z0-9-]{0,38}", owner):
            raise TrackerError(f"project owner {quoted(owner)} is not a GitHub login or @me")
        issue = self._json(["issue", "view", number, "--json", "id,url"], dict)
        node_id, url = issue.get("id"), issue.get("url")
        if not (isinstance(node_id, str) and node_id and isinstance(url, str) and url):
            raise TrackerError(NOT_JSON)
        try:
            if self._project_command():
                self._status_with_project_command(url, project, owner, status)
            else:
                self._status_with_graphql(node_id, project, owner, status)
        except GhCommandError as error:
            raise TrackerError(f"project boards are unavailable: {error.reason}") from None
        except _BoardUnavailable as error:
            raise TrackerError(f"project boards are unavailable: {error}") from None

    def _project_command(self) -> bool:
        """Whether this gh has `gh project` (2.31 and later); asked once."""
        if self._has_project is None:
            try:
                self._run(["project", "--help"])
                self._has_project = True
            except GhCommandError:
                self._has_project = False
        return self._has_project

    def _status_with_project_command(self, url: str, project: str, owner: str,
                                     status: str) -> None:
        key = (project, owner)
        if key not in self._boards:
            view = self._json(["project", "view", project, f"--owner={owner}", "--format=json"],
                              dict)
            listing = self._json(["project", "field-list", project, f"--owner={owner}",
                                  "--format=json", "--limit=100"], dict)
            fields = listing.get("fields")
            if not isinstance(view.get("id"), str) or not isinstance(fields, list):
                raise TrackerError(NOT_JSON)
            field = next((f for f in fields if isinstance(f, dict)
                          and f.get("name") == STATUS_FIELD and "options" in f), None)
            self._boards[key] = _board(project, owner, view["id"], field)
        project_id, field_id, options = self._boards[key]
        option_id = _option(options, project, owner, status)
        item = self._json(["project", "item-add", project, f"--owner={owner}", f"--url={url}",
                           "--format=json"], dict)
        if not isinstance(item.get("id"), str):
            raise TrackerError(NOT_JSON)
        self._run(["project", "item-edit", f"--id={item['id']}", f"--project-id={project_id}",
                   f"--field-id={field_id}", f"--single-select-option-id={option_id}",
                   "--format=json"])

    def _status_with_graphql(self, node_id: str, project: str, owner: str, status: str) -> None:
        key = (project, owner)
        if key not in self._boards:
            if owner == "@me":
                data = self._graphql(LOOKUP_VIEWER, number=int(project))
                holder = data.get("viewer")
            else:
                data = self._graphql(LOOKUP_OWNER, owner=owner, number=int(project))
                holder = data.get("repositoryOwner")
            if not isinstance(holder, dict):
                raise _BoardUnavailable(f"no GitHub user or organization {owner}")
            board = holder.get("projectV2")
            if not isinstance(board, dict) or not isinstance(board.get("id"), str):
                raise _BoardUnavailable(f"project {project} of {owner} was not found")
            field = board.get("field")
            self._boards[key] = _board(project, owner, board["id"], field)
        project_id, field_id, options = self._boards[key]
        option_id = _option(options, project, owner, status)
        added = self._graphql(ADD_ITEM, project=project_id, content=node_id)
        item = ((added.get("addProjectV2ItemById") or {}).get("item") or {}).get("id")
        if not isinstance(item, str):
            raise TrackerError(NOT_JSON)
        self._graphql(SET_STATUS, project=project_id, item=item, field=field_id, option=option_id)

    def _graphql(self, query: str, **variables: str | int) -> dict[str, Any]:
        args = ["api", "graphql", "-f", f"query={query}"]
        for name, value in variables.items():
            args += ["-F" if isinstance(value, int) else "-f", f"{name}={value}"]
        reply = self._json(args, dict)
        if reply.get("errors"):
            first = reply["errors"][0] if isinstance(reply["errors"], list) else {}
            message = first.get("message") if isinstance(first, dict) else None
            raise _BoardUnavailable(clean(message if isinstance(message, str) else "error", 300))
        data = reply.get("data")
        if not isinstance(data, dict):
            raise TrackerError(NOT_JSON)
        return data


def _with_links(ticket: Ticket, links: ghlinks.Links | None, problem: str) -> Ticket:
    """The ticket with its links, or marked unknown (and why) when they could not be read."""
    problem = problem or (ghlinks.NOT_ANSWERED if links is None else links.problem)
    if problem or links is None:
        return replace(ticket, links_known=False, links_problem=problem)
    return replace(ticket, blocked_by=links.blocked_by, children=links.children,
                   links_known=True, links_problem="")


def _board(project: str, owner: str, project_id: str,
           field: Any) -> tuple[str, str, dict[str, str]]:
    """(project id, status field id, option name -> id) from a field as gh shows it."""
    if not isinstance(field, dict) or not isinstance(field.get("id"), str):
        raise _BoardUnavailable(f"project {project} of {owner} has no {STATUS_FIELD} field"
                                " with choices")
    options = {}
    for option in field.get("options") or []:
        if isinstance(option, dict) and isinstance(option.get("name"), str) \
                and isinstance(option.get("id"), str):
            options[option["name"]] = option["id"]
    return project_id, field["id"], options


def _option(options: dict[str, str], project: str, owner: str, status: str) -> str:
    if status in options:
        return options[status]
    for name, option_id in options.items():
        if name.casefold() == status.casefold():
            return option_id
    known = ", ".join(clean(name, 40) for name in list(options)[:20]) or "none"
    raise TrackerError(f"project {project} of {owner} has no {STATUS_FIELD} {quoted(status)}"
                       f" (it has: {known})")


def _issue_number(ticket_id: str) -> str:
    """The canonical ticket id as an issue number; one issue has exactly one ticket id."""
    try:
        canonical = parse_ticket(ticket_id)
    except BadTicketError as error:
        raise TrackerError(error.message) from None
    if not (canonical.isdigit() and canonical[0] != "0"):
        raise TrackerError(f"ticket {canonical} is not a GitHub issue number")
    return canonical


def _is_issue_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _label_arg(label: str) -> str:
    """A label that gh passes through unchanged: its flags split on commas, CSV-style."""
    problem = None
    if not isinstance(label, str) or not label.strip():
        problem = "it is empty"
    elif len(label) > MAX_GITHUB_LABEL:
        problem = f"GitHub labels have at most {MAX_GITHUB_LABEL} characters"
    elif label != label.strip() or label.startswith("-"):
        problem = "it starts or ends with a space, or starts with '-'"
    elif "," in label or '"' in label:
        problem = "gh cannot pass a label containing ',' or '\"'"
    elif any(unicodedata.category(char)[0] == "C" for char in label):
        problem = "it contains control characters"
    if problem:
        raise TrackerError(f"label {quoted(str(label))} cannot be used: {problem}")
    return label


def _missing_label(stderr: str, labels: list[str]) -> str | None:
    """Which of `labels` gh reported as not existing in the repository ("'x' not found")."""
    named = {name.casefold() for name in _MISSING_LABEL.findall(stderr)}
    return next((label for label in labels if label.casefold() in named), None)


def _error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        line = line.strip()
        if line:
            if line.startswith("gh: "):
                line = line[4:]
            return clean(line, 300)
    return ""


def _kill(process: subprocess.Popen[bytes]) -> None:
    """End gh and anything it started (git, a pager), then reap it."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
    try:
        process.communicate(timeout=5)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        pass
