"""How the data's own text is shown in a message: on one line, so no value can fake a line of its own."""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    """``text`` with each control or format character (a line break, an escape sequence, a right-to-left
    override) written as its code (``\\u000a``): a category or class name from the data is shown as it
    is, and cannot start a line of an alert."""
    return "".join(c if unicodedata.category(c)[0] != "C" else f"\\u{ord(c):04x}" for c in text)
