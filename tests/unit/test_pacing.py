"""Long loops return to the event loop every so many items, so scrapes are served in between."""

from __future__ import annotations

import asyncio
import contextlib

from idaas_sync_exporter.pacing import paced


async def test_other_tasks_run_after_every_slice_of_items_and_after_the_last_full_one() -> None:
    events: list[object] = []

    async def other_task() -> None:
        while True:
            events.append("turn")
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)  # it starts
    events.clear()
    async for item in paced(range(10), 4):
        events.append(item)
    async for item in paced(range(4), 4):
        events.append(item)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert events == [0, 1, 2, 3, "turn", 4, 5, 6, 7, "turn", 8, 9, 0, 1, 2, 3, "turn"]
