"""Text from outside made safe to write where nothing escapes it further (a log line, an error, stdout).

Controls (a terminal runs ESC sequences, a CR overprints the line), line and paragraph separators
and NEL (Python's splitlines and some log shippers end a line there) and format characters (bidi
overrides reorder what a terminal shows) are written as JSON-style ``\\uXXXX`` escapes, which a
JSON or logfmt reader turns back into the character. A lone surrogate cannot be written as UTF-8,
and jq refuses its escape, so it becomes U+FFFD.
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NOT_PRINTABLE_ASCII = re.compile(r"[^ -~]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    category = unicodedata.category(char)
    if category == "Cs":
        return "\ufffd"
    if category not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code > 0xFFFF:  # as a UTF-16 surrogate pair, the only form JSON has for it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def escape_invisible(text: str) -> str:
    """``text`` with every control, separator and format character escaped and lone surrogates replaced."""
    # isprintable() is False for every character that needs it, so most text costs one scan.
    return text if text.isprintable() else _NOT_PRINTABLE_ASCII.sub(_escape_char, text)
