"""Named pause points between the protocol's steps: a test aid, inert by default.

With GIT_CLAIM_TEST_PAUSE=<point> and GIT_CLAIM_TEST_PAUSE_DIR=<dir> set, a
process reaching that point creates `<dir>/<point>.reached` and waits until
`<dir>/<point>.go` exists (at most 120 s). Tests use it to force an
interleaving (a heartbeat landing between a reaper's read and write) or to
SIGKILL a process at an exact step. Points: claim:before-push,
claim:after-push, heartbeat:before-push, release:before-decide, hand-off:before-decide,
reap:before-decide, run:before-start (the lease is taken, the command not
yet started), watchdog:before-spawn (the watchdog has its start order and
has not forked the command yet; watchdog.py has its own copy of `pause`).

GIT_CLAIM_TEST_HELD_SECONDS (read in gateway/libgit2_transport.py, which
imports nothing above the gateway) stretches how long a listing's connection
waits for its write, so that a test can pause between the two and still see
the write go over the connection the listing came from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .atomicfile import write_atomic

PAUSE_VARIABLE = "GIT_CLAIM_TEST_PAUSE"
PAUSE_DIR_VARIABLE = "GIT_CLAIM_TEST_PAUSE_DIR"
MAX_WAIT = 120.0


def pause(point: str) -> None:
    if os.environ.get(PAUSE_VARIABLE) != point:
        return
    folder = Path(os.environ.get(PAUSE_DIR_VARIABLE, "."))
    name = point.replace(":", "-")
    reached = folder / f"{name}.reached"
    write_atomic(reached, str(os.getpid()))  # appears whole: a test reads our pid from it
    go = folder / f"{name}.go"
    deadline = time.monotonic() + MAX_WAIT
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
