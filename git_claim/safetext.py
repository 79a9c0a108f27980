"""Foreign text (from the remote, the tracker, the user) made safe to print.

Claim records are written by anyone with push access, so a holder name may
carry ANSI escapes or be megabytes long; nothing reaches a terminal unfiltered.
"""

from __future__ import annotations

import unicodedata

DEFAULT_LIMIT = 200


def clean(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """One printable line: control and format characters become `?`, bounded length."""
    if len(text) > limit * 4:
        text = text[: limit * 4]
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            out.append("?")
        else:
            out.append(char)
    result = "".join(out)
    if len(result) > limit:
        result = result[: limit - 1] + "…"
    return result


def quoted(text: str, limit: int = 80) -> str:
    """`repr`-style quoting for echoing bad input back: escapes stay visible."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return repr(shown)
