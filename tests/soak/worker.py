"""A soak worker: the process that really works on a ticket, started by agent.sh without exec.

python -S worker.py MODE WORK_MS STATUS [MARKER]

MODE is fg or bg (a child of the agent script, in the foreground or in the
background with `&` and `wait`) or daemon (the classic double fork with
setsid, out of the script's process group and session; MARKER.pid and
MARKER.status tell the script its pid and, at the end, its status).

It appends one JSON line per event to $SOAK_WORKLOG, each a single write:
"start" when it starts working, "working" every 0.2 s while it works,
"signal" for each SIGINT, SIGTERM or SIGHUP it gets, and "stop" when it stops
(why: "done", or the name of the first signal, after a short cleanup). Every
line carries the machine's time (time.time()), its pid, GIT_CLAIM_TICKET and
GIT_CLAIM_AGENT as `git claim run` gave them, the soak's loop and run ids,
its mode and the pid of the script that started it. A worker killed by
SIGKILL logs no stop: its last line is the last sign that it was working.
"""

import json
import os
import signal
import sys
import time

STEP = 0.2  # seconds between "working" lines
CLEANUP = 0.1  # seconds from the first signal to the stop

mode, work, status = sys.argv[1], int(sys.argv[2]) / 1000.0, int(sys.argv[3])
marker = sys.argv[4] if mode == "daemon" else None
script = os.getppid()
if mode == "daemon":
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)

env = os.environ
fd = os.open(env["SOAK_WORKLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
base = {"pid": os.getpid(), "ticket": env.get("GIT_CLAIM_TICKET"),
        "agent": env.get("GIT_CLAIM_AGENT"), "loop": env.get("SOAK_LOOP"),
        "run": env.get("SOAK_RUN"), "mode": "py-" + mode, "script": script}


def note(event, **extra):
    line = json.dumps({"t": time.time(), "ev": event, **base, **extra}) + "\n"
    os.write(fd, line.encode())


def put(suffix, text):
    if marker:
        with open(f"{marker}.{suffix}.tmp", "w") as handle:
            handle.write(text)
        os.rename(f"{marker}.{suffix}.tmp", f"{marker}.{suffix}")


def finish(code):
    put("status", str(code))
    os._exit(code)


stopping = []


def on_signal(signum, _frame):
    note("signal", sig=signum)
    if stopping:
        return  # a second signal during the cleanup: logged, nothing more
    stopping.append(signum)
    time.sleep(CLEANUP)
    note("stop", why=signal.Signals(signum).name)
    finish(128 + signum)


for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, on_signal)  # also SIGINT, which sh ignores for a job started with &
put("pid", str(os.getpid()))
note("start")
deadline = time.monotonic() + work
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    time.sleep(min(STEP, left))
    note("working")
note("stop", why="done")
finish(status)
