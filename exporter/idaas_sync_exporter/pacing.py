"""Working through many items without holding the event loop: scrapes are served between slices.

A leaf: it imports nothing of the exporter, so every layer (``api`` included) can use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")


async def paced(items: Iterable[T], every: int) -> AsyncIterator[T]:
    """``items`` one by one, returning to the event loop each time ``every`` of them have been handled.

    The return comes when the loop asks for the item after the ``every``-th, so it follows the
    work done on that item, not just its delivery.
    """
    for handled, item in enumerate(items, start=1):
        yield item
        if handled % every == 0:
            await asyncio.sleep(0)
