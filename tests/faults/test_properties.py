"""Property-based tests: ticket ids, and the parsers of what the remote says.

Ticket ids become ref names, so every accepted id must make a valid ref
for each of its claims (640, 640@2, ...) that no other id or epoch makes,
and a rejected one must never reach the remote.
Claim and liveness records are written by anyone with push access, so
their parsers must accept any bytes without raising.
"""

from __future__ import annotations

import math
import string
import subprocess
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agents import remote_refs_bytes
from git_claim.errors import BadTicketError
from git_claim.record import (
    EVENT_HEARTBEAT,
    FORMAT_VERSION,
    MAX_RECORD_BYTES,
    STATE_HELD,
    LivenessRecord,
    new_claim,
    parse_claim,
    parse_liveness,
)
from git_claim.safetext import clean
from git_claim.settings import Settings
from git_claim.ticket import MAX_TICKET_LENGTH, parse_ticket

ID_CHARS = string.ascii_letters + string.digits + "._-"
MAX_EPOCH = 10**40 - 1  # epochs have no cap of their own (thousands of digits are read)
SETTINGS = [Settings(remote="origin", ref_prefix=prefix, notes_prefix="refs/notes/claims/",
                     transport="auto", agent="a", host="h", ttl=900.0, max_skew=300.0,
                     heartbeat=300.0, branch_prefix="claim/")
            for prefix in ("refs/claims/", "refs/tags/claim/")]
NEAR_MISSES = ID_CHARS + "#/@{}^~:?*[\\ .\t\n\x00\x1b\x7fé\u0130" + "lock"

ids = st.one_of(
    st.text(alphabet=ID_CHARS, min_size=1, max_size=MAX_TICKET_LENGTH + 2),
    st.text(alphabet=NEAR_MISSES, max_size=12),
    st.from_regex(r"#?[A-Za-z0-9_][A-Za-z0-9._-]{0,70}", fullmatch=True),
    st.text(max_size=20),
)


def examples(*values):
    """Several explicit @example cases of a one-argument test."""
    def decorate(test):
        for value in reversed(values):
            test = example(value)(test)
        return test
    return decorate


def accepted(raw: str) -> str | None:
    try:
        return parse_ticket(raw)
    except BadTicketError:
        return None


def ref_is_valid(ref: str) -> bool:
    return subprocess.run(["git", "check-ref-format", ref], capture_output=True).returncode == 0


@given(ids)
@examples("#640", "a.lock", "a..b", "x" * 64, "x" * 65)
@examples("-640", ".640", "640.", "a.lock.b", "@")
def test_an_accepted_id_is_its_own_canonical_ref_component(raw):
    ticket = accepted(raw)
    if ticket is None:
        return
    # nothing is normalised but one leading '#': two different ids never share a ref
    assert ticket == (raw[1:] if raw.startswith("#") else raw)
    assert 1 <= len(ticket) <= MAX_TICKET_LENGTH
    assert ticket == parse_ticket(ticket)  # canonical: parsing again changes nothing
    assert all(c in ID_CHARS for c in ticket) and "/" not in ticket


@settings(max_examples=150, deadline=None)
@given(ids)
@examples("a.", "_", "a-", "A.B.C", "x" * 64)
def test_every_accepted_id_makes_a_valid_ref(raw):
    ticket = accepted(raw)
    assume(ticket is not None)
    for settings_ in SETTINGS:
        for epoch in (1, 2, 10, MAX_EPOCH):  # every claim of the ticket: 640, 640@2, ...
            assert ref_is_valid(settings_.claim_ref(ticket, epoch)), (ticket, epoch)
    assert ref_is_valid(f"refs/notes/claims/{ticket}"), ticket


epochs = st.one_of(st.integers(min_value=1, max_value=20),
                   st.integers(min_value=1, max_value=MAX_EPOCH))


@given(st.lists(st.tuples(ids, epochs), min_size=2, max_size=8))
def test_ids_and_epochs_map_to_refs_injectively(claims):
    """No two (ticket, epoch) pairs share a claim ref, and each ref reads back as its pair."""
    for settings_ in SETTINGS:
        refs: dict[str, set[tuple[str, int]]] = {}
        for raw, epoch in claims:
            ticket = accepted(raw)
            if ticket is None:
                continue
            ref = settings_.claim_ref(ticket, epoch)
            assert settings_.claim_of_ref(ref) == (ticket, epoch), ref
            refs.setdefault(ref, set()).add((raw.removeprefix("#"), epoch))
        for ref, spellings in refs.items():
            assert len(spellings) == 1, (ref, spellings)


rejected_ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                       max_size=80).filter(lambda raw: accepted(raw) is None)


@pytest.fixture
def path_world(make_world):
    """One world on a path remote, shared by every example of a test."""
    world = make_world("path", "libgit2")
    return world, world.agent("alice")


# the fixture is shared by the examples on purpose: the remote must stay untouched by all
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=rejected_ids)
@example(raw="a/../b")
@example(raw="x\x1b[31m")
def test_a_rejected_id_exits_2_and_never_touches_the_remote(path_world, raw):
    world, alice = path_world
    before = remote_refs_bytes(world.repo)
    outcome = alice.cmd("claim", "--", raw)
    assert outcome.code == 2, outcome
    assert "Traceback" not in outcome.stderr and "\x1b" not in outcome.stderr
    assert remote_refs_bytes(world.repo) == before


# --------------------------------------------------------------------------
# parsers of what the remote says

KEYS = ["Claim-Ticket", "Claim-State", "Claim-Agent", "Claim-Host", "Claim-Time",
        "Claim-Nonce", "Claim-Base", "Claim-Reason", "Claim-Of", "Claim-Forced-By",
        "Claim-No-Gate", "Claim-Version", "Claim-Event", "Claim-Seq", "Claim-TTL",
        "Claim-Outcome", "Claim-Holder", "claim-ttl", "CLAIM-SEQ"]
values = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.integers(min_value=10**300, max_value=10**1000).map(str),
    st.integers(max_value=-10**300, min_value=-10**1000).map(str),
    st.sampled_from(["held", "done", "blocked", "heartbeat", "released", "reaped", "free",
                     "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
                     "-1", "1e309", "nan", "inf", "0x10", " 7 ", "\x1b[31m"]),
)
trailer_lines = st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=12).map(
    lambda pairs: "".join(f"{k}: {v}\n" for k, v in pairs))
messages = st.one_of(
    st.binary(max_size=2048),
    trailer_lines.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.tuples(st.binary(max_size=64), trailer_lines, st.binary(max_size=64)).map(
        lambda t: t[0] + b"\n" + t[1].encode("utf-8", "surrogatepass") + t[2]),
)


def finite_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


@settings(max_examples=400, deadline=None)
@given(messages, st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)))
@example(b"Claim-Event: reaped\nClaim-TTL: " + b"9" * 400 + b"\n", None)
@example(b"Claim-Nonce: 1\nClaim-Time: 9999-12-31T23:59:59Z\n", 2**63 - 1)
def test_the_record_parsers_never_raise(raw, tagger_time):
    claim = parse_claim("640", raw, tagger_name="m\x1b", tagger_time=tagger_time)
    assert claim.state in ("held", "done", "blocked", "unknown")
    assert claim.state != STATE_HELD or claim.seed_pattern or claim.nonce
    assert finite_or_none(claim.time)
    note = parse_liveness(raw)
    assert note.event in ("heartbeat", "released", "reaped", "unknown")
    assert finite_or_none(note.time) and finite_or_none(note.ttl)
    assert isinstance(note.seq, int)


plain_trailer_lines = st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=40)),
                              max_size=12).map(
    lambda pairs: "".join(f"{k}: {v}\n" for k, v in pairs))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=256), plain_trailer_lines, st.binary(max_size=256))
def test_only_the_first_64_kib_of_a_record_is_read(head, trailers, tail):
    raw = (head + b"\n" + trailers.encode("utf-8", "surrogatepass")).ljust(MAX_RECORD_BYTES, b" ")
    beyond = raw[:MAX_RECORD_BYTES] + b"\nClaim-Nonce: injected\nClaim-State: done\n" + tail
    assert parse_claim("640", beyond) == parse_claim("640", beyond[:MAX_RECORD_BYTES])
    assert parse_liveness(beyond) == parse_liveness(beyond[:MAX_RECORD_BYTES])


agents = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                 max_size=60).filter(lambda a: "<" not in a and ">" not in a and a.isprintable()
                                     and a == " ".join(a.split()))


@given(agents, agents, st.integers(0, 253402300799), st.booleans())
def test_records_we_write_read_back_as_written(agent, host, when, no_gate):
    record = new_claim("T-1", agent=agent, host=host, time=float(when), base="0" * 40,
                       no_gate=no_gate)
    back = parse_claim("T-1", record.to_message().encode())
    assert (back.state, back.agent, back.host, back.time, back.nonce, back.no_gate,
            back.version) == (STATE_HELD, agent, host, float(when), record.nonce, no_gate,
                              FORMAT_VERSION)
    note = LivenessRecord(event=EVENT_HEARTBEAT, time=float(when), agent=agent, seq=when,
                          holder=host)
    again = parse_liveness(note.to_text().encode())
    assert (again.event, again.time, again.agent, again.seq, again.holder) == (
        EVENT_HEARTBEAT, float(when), agent, when, host)


@given(st.text(), st.integers(1, 300))
def test_foreign_text_is_made_printable(text, limit):
    shown = clean(text, limit)
    assert len(shown) <= limit
    assert not [c for c in shown if unicodedata.category(c)[0] == "C"
                or unicodedata.category(c) in ("Zl", "Zp")]
