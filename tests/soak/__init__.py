"""The soak: many agents, one backlog, random faults, and a checker for the history.

`python -m tests.soak` runs it (see docs/reliability.md); `driver.py` runs the
agents, the reaper and the faults, `checker.py` replays the recorded history
against a model of one lock per ticket, `figures.py` writes the figures.
"""
