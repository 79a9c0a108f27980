"""git-claim: an atomic claim lock for tickets, kept as refs on the shared git remote.

The remote's ref update is the compare-and-swap; everything else (labels,
boards, worktrees) is a picture of it. See docs/protocol.md.
"""

__version__ = "0.1.0"
