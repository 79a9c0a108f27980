"""The names the operations' results share: states, outcomes, events, exit codes.

Results themselves are frozen dataclasses in the module of the operation that
returns them; what several operations (and the renderer) share is named here.
The enums are defined below the ops layer (git_claim/states.py, errors.py),
since the protocol modules that build the board and the log use them too.
"""

from __future__ import annotations

from ..errors import ExitCode
from ..states import ClaimState, Event, Outcome

__all__ = ["ClaimState", "Event", "ExitCode", "Outcome"]
