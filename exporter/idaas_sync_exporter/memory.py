"""glibc memory controls; no-ops where the C library is not glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_M_ARENA_MAX = -8


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_LIBC = _libc()


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas.

    State commits, credential refreshes and password checks run in worker threads; by default
    each may get its own arena, and memory freed there stays with the process. Two arenas keep
    RSS close to live data.
    """
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, count)


def release_free_memory() -> None:
    """Give freed heap back to the OS.

    Rendering thousands of targets leaves many freed small blocks; without this the
    process keeps them and its RSS stays at the high-water mark.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
