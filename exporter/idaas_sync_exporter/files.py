"""Small files handed to us (configuration, key files), and values from them shown in messages.

:func:`read_small_file` reads what a path names only when it is a small regular file: it is opened
without blocking (a FIFO would wait for a writer forever), judged on the open descriptor after
symlinks are followed (a file swapped after a check by path is still caught), and read to at most
one byte past the bound (a device such as /dev/zero never ends, and a file may still be growing).
Its errors name the path and the problem, never the contents.

:func:`shown` is how a value or key from a file appears in a message: cut before anything else is
done with it, then with control and invisible characters escaped, so that a message stays one
short line whatever the file holds.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

# The longest a value given by the user is quoted in a message.
SHOWN_CHARACTERS = 80
# A path is named whole when it is printable and no longer than this: the operator needs it to
# find the file, and a longer one is not a path anyone wrote.
SHOWN_PATH_CHARACTERS = 200


class SmallFileError(ValueError):
    """The file cannot be read as a small regular file; the message names the path, never the contents."""


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``value`` as quoted in a message: at most about ``limit`` characters, one line, controls escaped.

    Text is cut before it is escaped and escaped before it is cut again, so neither a long value nor
    one made of characters that escape long can make the message long; a list or mapping is
    described by its size, never written out (its items could be aliases of one long text).
    """
    if isinstance(value, str):
        text = repr(value[:limit])
        cut = len(value) > limit
    elif isinstance(value, list | tuple | set | frozenset):
        return f"a list of {len(value)} items"
    elif isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    elif isinstance(value, bytes | bytearray):
        text = repr(bytes(value[:limit]))
        cut = len(value) > limit
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        # repr would build thousands of digits, or refuse past Python's digit limit.
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    else:
        try:
            text = repr(value)
        except ValueError:
            return f"a {type(value).__name__} that cannot be shown"
        cut = False
    if len(text) > limit + 2:
        return text[:limit] + "…"
    return text + ("…" if cut else "")


def escaped(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` unquoted in a message: cut to ``limit``, controls and invisible characters escaped, cut again."""
    body = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    if len(body) > limit:
        return body[:limit] + "…"
    return body + ("…" if len(text) > limit else "")


def shown_name(name: object, limit: int = SHOWN_CHARACTERS) -> str:
    """A key as named in a message: as written when it is a short plain name, else :func:`shown`."""
    if isinstance(name, str) and len(name) <= limit and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        return name
    return shown(name, limit)


def shown_path(path: str) -> str:
    """A path as named in a message: as written when it is printable and of reasonable length, else :func:`shown`."""
    if path.isprintable() and 0 < len(path) <= SHOWN_PATH_CHARACTERS:
        return path
    return shown(path)


def read_small_file(path: str, max_bytes: int, *, too_large: str, not_regular: str) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``max_bytes`` of them.

    Raises :class:`SmallFileError` with one line otherwise, ending in ``too_large`` or
    ``not_regular``: what the user should do about a file that is too large or not a regular file.
    The path is checked before it is opened, so that no device is ever opened (opening some has
    effects), and again on the descriptor, which catches a file swapped in between.
    """
    name = shown_path(path)
    try:
        _check(name, os.stat(path), max_bytes, too_large, not_regular)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise SmallFileError(f"cannot read {name}: {exc.strerror}") from None
    try:
        _check(name, os.fstat(descriptor), max_bytes, too_large, not_regular)
        chunks: list[bytes] = []
        size = 0
        # /proc files say size 0 and come in pieces: read to the end, never past the bound.
        while chunk := os.read(descriptor, max_bytes + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise SmallFileError(_too_large(name, max_bytes, too_large))
    except OSError as exc:
        raise SmallFileError(f"cannot read {name}: {exc.strerror}") from None
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def _check(name: str, status: os.stat_result, max_bytes: int, too_large: str, not_regular: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise SmallFileError(f"{name} is not a regular file ({file_kind(status.st_mode)}); {not_regular}")
    if status.st_size > max_bytes:
        raise SmallFileError(_too_large(name, max_bytes, too_large))


def _too_large(name: str, max_bytes: int, too_large: str) -> str:
    # Bounds of a mebibyte or more read better in KiB; a key file's 16384 bytes as they are.
    bound = f"{max_bytes // 1024} KiB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
    return f"{name} is larger than {bound}; {too_large}"


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in the words of a message ("a FIFO")."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"
