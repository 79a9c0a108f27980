"""The one clock of the tool, and durations.

Every timestamp the tool writes or compares comes from `now()`. Tests (and
people rehearsing clock skew) shift it per process with the environment
variable GIT_CLAIM_CLOCK_OFFSET, in seconds (for example `-300`): a test aid,
documented as such, never needed in normal use.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone

from .errors import UsageError

CLOCK_OFFSET_VARIABLE = "GIT_CLAIM_CLOCK_OFFSET"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)\Z")


def _offset() -> float:
    raw = os.environ.get(CLOCK_OFFSET_VARIABLE, "").strip()
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        message = f"{CLOCK_OFFSET_VARIABLE} must be a number of seconds, not {raw!r}"
        raise UsageError(message) from None


def offset() -> float:
    """Seconds by which this process's clock is shifted (GIT_CLAIM_CLOCK_OFFSET)."""
    return _offset()


def now() -> float:
    """Seconds since the epoch, as this process believes (offset applied)."""
    return time.time() + _offset()


def parse_duration(text: str, *, what: str = "duration") -> float:
    """`15m` -> 900.0. Units s, m, h, d; a bare number is seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise UsageError(f"invalid {what} {text!r}: use a number with s, m, h or d (e.g. 15m)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """Short human form: 45s, 4m, 2h5m, 3d."""
    seconds = int(round(seconds))
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds}s"
    if seconds < 3600:
        return f"{sign}{seconds // 60}m"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{sign}{hours}h{rest // 60}m" if rest >= 60 else f"{sign}{hours}h"
    return f"{sign}{seconds // 86400}d"


MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z: beyond this a record is absurd


def iso(timestamp: float) -> str:
    """UTC ISO-8601 with seconds, the form written into records (absurd values clamped)."""
    try:
        bounded = min(max(float(timestamp), 0.0), MAX_TIMESTAMP)
    except (OverflowError, ValueError, TypeError):
        bounded = 0.0
    return datetime.fromtimestamp(int(bounded), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z\Z", re.ASCII)


def parse_iso(text: str) -> float | None:
    """Inverse of `iso`; None for anything else (foreign records are not trusted).

    A regular expression and `datetime` (which rejects impossible dates)
    rather than `strptime`, which is about fifty times slower: `git claim
    list` parses one time per claim.
    """
    match = _ISO.match(text.strip())
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, match.groups())
        parsed = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None
    return parsed.timestamp()


def local_hhmm(timestamp: float) -> str:
    """Wall-clock time for messages such as 'since 12:03'."""
    try:
        return datetime.fromtimestamp(timestamp).strftime("%H:%M")
    except (OverflowError, OSError, ValueError):
        return "?"


def elapsed() -> float:
    """Seconds on a clock that never steps and is shared by every process on the machine.

    CLOCK_BOOTTIME (Linux) counts from boot, keeps counting through suspend
    and is immune to NTP or manual steps of the wall clock, so a duration
    measured across processes with it is real time that passed. Elsewhere,
    CLOCK_MONOTONIC (which may stop during suspend). Pair it with `boot_id()`
    before comparing values kept on disk: both restart at a reboot.
    `watchdog.boot_clock()` reads the same clock the same way (the watchdog
    imports nothing of ours): keep the two in step.
    """
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is not None:
        try:
            return time.clock_gettime(clock)
        except OSError:
            pass
    return time.monotonic()


def boot_id() -> str | None:
    """This boot's id (Linux), or None where the system has none to offer."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None
