"""GitHub issue dependencies and sub-issues, read through `gh api graphql`.

`gh issue list` does not show what blocks an issue, so the backlog asks
GitHub once more, for all open issues at once: `gh api graphql --paginate`
walks the repository's open issues a hundred at a time and returns, for each,
the issues blocking it and its sub-issues. One call however long the backlog,
never one per ticket. `{owner}` and `{repo}` are filled in by gh itself (in
`-F` fields, since gh 1.x), from the same repository `gh issue list` reads.

gh prints the pages of a paginated GraphQL query one after another as
separate JSON documents (`{...}{...}`), and since 2.48 can wrap them in one
array (`--slurp`, which older gh refuses); both shapes are read here, and the
flag is not used. gh takes the first `pageInfo` it meets as the page's cursor,
so the listing's own `pageInfo` comes first in the query and the nested ones
carry no `endCursor`.

Everything here fails closed: an answer that cannot be read leaves the links
unknown, with the reason in GitHub's or gh's words, and the picking rules
refuse to guess. GitHub caps blockers at 50 and sub-issues at 100 per issue;
a page that says there are more is read as unknown too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..safetext import clean
from .base import Link

ISSUES_PER_PAGE = 100
MAX_BLOCKERS = 50
MAX_CHILDREN = 100
MAX_REASON = 200
# Sub-issues needed this header while they were a preview; GitHub ignores it
# where the field is standard, and hosts still on the preview need it.
FEATURES_HEADER = "GraphQL-Features: sub_issues"

NOT_READABLE = "gh printed something that is not the expected JSON"
NOT_ANSWERED = "GitHub's answer did not include this issue"
HIDDEN_LINK = "GitHub named a linked issue it did not show"
TOO_MANY_BLOCKERS = f"more than {MAX_BLOCKERS} blockers"
TOO_MANY_CHILDREN = f"more than {MAX_CHILDREN} sub-issues"

_LINKED = "number state repository { nameWithOwner }"
ISSUE_LINKS = f"""number
      blockedBy(first: {MAX_BLOCKERS}) {{ pageInfo {{ hasNextPage }} nodes {{ {_LINKED} }} }}
      subIssues(first: {MAX_CHILDREN}) {{ pageInfo {{ hasNextPage }} nodes {{ {_LINKED} }} }}"""
OPEN_ISSUES_LINKS = f"""query($owner: String!, $repo: String!, $endCursor: String) {{
  repository(owner: $owner, name: $repo) {{
    nameWithOwner
    issues(first: {ISSUES_PER_PAGE}, after: $endCursor, states: OPEN,
           orderBy: {{field: CREATED_AT, direction: DESC}}) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{
      {ISSUE_LINKS}
      }}
    }}
  }}
}}"""
ONE_ISSUE_LINKS = f"""query($owner: String!, $repo: String!, $number: Int!) {{
  repository(owner: $owner, name: $repo) {{
    nameWithOwner
    issue(number: $number) {{
      {ISSUE_LINKS}
    }}
  }}
}}"""

_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True)
class Links:
    """What GitHub said about one issue's links; `problem` is set when it could not tell."""

    blocked_by: tuple[Link, ...] = ()
    children: tuple[Link, ...] = ()
    problem: str = ""


class LinksUnreadable(Exception):
    """The whole answer is unusable; the message is the reason, one clean line."""


def listing_args() -> list[str]:
    """gh's arguments for the links of every open issue: one paginated call."""
    return ["api", "graphql", "--paginate", "-H", FEATURES_HEADER,
            "-f", f"query={OPEN_ISSUES_LINKS}", "-F", "owner={owner}", "-F", "repo={repo}"]


def issue_args(number: str) -> list[str]:
    """gh's arguments for the links of one issue."""
    return ["api", "graphql", "-H", FEATURES_HEADER, "-f", f"query={ONE_ISSUE_LINKS}",
            "-F", "owner={owner}", "-F", "repo={repo}", "-F", f"number={number}"]


def parse_listing(text: str) -> dict[int, Links]:
    """Links by issue number from the pages gh printed; LinksUnreadable if unusable."""
    found: dict[int, Links] = {}
    for page in _documents(text):
        repository = _repository(page)
        issues = repository.get("issues")
        nodes = issues.get("nodes") if isinstance(issues, dict) else None
        if not isinstance(nodes, list):
            raise LinksUnreadable(NOT_READABLE)
        home = repository.get("nameWithOwner")
        for node in nodes:
            number = node.get("number") if isinstance(node, dict) else None
            if _is_number(number):
                found[number] = _links(node, home)
    return found


def parse_issue(text: str, number: int) -> Links:
    """One issue's links from gh's answer; LinksUnreadable if unusable."""
    pages = _documents(text)
    if len(pages) != 1:
        raise LinksUnreadable(NOT_READABLE)
    repository = _repository(pages[0])
    node = repository.get("issue")
    if not isinstance(node, dict) or node.get("number") != number:
        raise LinksUnreadable(NOT_READABLE)
    return _links(node, repository.get("nameWithOwner"))


def reason(text: str) -> str:
    """A reason from gh or GitHub, as one short clean line."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return clean(line, MAX_REASON) or "no reason given"


def _documents(text: str) -> list[Any]:
    """The JSON documents gh printed: one, several back to back, or one array of them."""
    decoder = json.JSONDecoder()
    documents: list[Any] = []
    index, end = 0, len(text)
    try:
        while True:
            while index < end and text[index].isspace():
                index += 1
            if index >= end:
                break
            value, index = decoder.raw_decode(text, index)
            documents.append(value)
    except (ValueError, RecursionError):
        raise LinksUnreadable(NOT_READABLE) from None
    if len(documents) == 1 and isinstance(documents[0], list):
        documents = documents[0]  # --slurp: every page in one array
    if not documents:
        raise LinksUnreadable(NOT_READABLE)
    return documents


def _repository(page: Any) -> dict[str, Any]:
    if not isinstance(page, dict):
        raise LinksUnreadable(NOT_READABLE)
    errors = page.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) else None
        message = first.get("message") if isinstance(first, dict) else None
        raise LinksUnreadable(reason(message) if isinstance(message, str) else NOT_READABLE)
    data = page.get("data")
    repository = data.get("repository") if isinstance(data, dict) else None
    if not isinstance(repository, dict):
        raise LinksUnreadable(NOT_READABLE)
    return repository


def _links(node: dict[str, Any], home: Any) -> Links:
    blockers, problem = _connection(node.get("blockedBy"), home, MAX_BLOCKERS, TOO_MANY_BLOCKERS)
    children, child_problem = _connection(node.get("subIssues"), home, MAX_CHILDREN,
                                          TOO_MANY_CHILDREN)
    return Links(blocked_by=blockers, children=children, problem=problem or child_problem)


def _connection(value: Any, home: Any, limit: int, too_many: str) -> tuple[tuple[Link, ...], str]:
    """The links of one connection and "" or, failing closed, no links and why."""
    nodes = value.get("nodes") if isinstance(value, dict) else None
    page = value.get("pageInfo") if isinstance(value, dict) else None
    if not isinstance(nodes, list) or not isinstance(page, dict):
        return (), NOT_READABLE
    if page.get("hasNextPage") is True or len(nodes) > limit:
        return (), too_many
    if page.get("hasNextPage") is not False:
        return (), NOT_READABLE
    links = []
    for item in nodes:
        link = _link(item, home)
        if link is None:
            return (), HIDDEN_LINK
        links.append(link)
    return tuple(links), ""


def _link(item: Any, home: Any) -> Link | None:
    if not isinstance(item, dict) or not _is_number(item.get("number")):
        return None
    number = item["number"]
    state = item.get("state")
    is_open = {"OPEN": True, "CLOSED": False}.get(state) if isinstance(state, str) else None
    repository = item.get("repository")
    name = repository.get("nameWithOwner") if isinstance(repository, dict) else None
    if not isinstance(name, str) or not _REPO_NAME.fullmatch(name):
        return None
    if isinstance(home, str) and name.casefold() == home.casefold():
        return Link(id=str(number), open=is_open, local=True)
    return Link(id=f"{name}#{number}", open=is_open, local=False)


def _is_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
