"""What waking up costs on this machine, apart from any exporter.

    .venv/bin/python bench/wake.py                  # the same small task hot and after sleeps of 0.01 to 5 s
    .venv/bin/python bench/wake.py --idle-loop 2    # a process that only wakes every 2 s (bench/run.py's control)

An idle poll does a few milliseconds of work once per poll interval, after seconds asleep.
On some virtual machines the first work after a sleep runs many times slower than the same
work hot (caches and host-side mappings gone cold), and the process is charged for it; a
process that does nothing but wake up is then charged milliseconds per wake. bench/run.py
runs the idle loop beside the exporter so the idle-poll figure can be read against it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

TASK_ITEMS = 200_000  # summing this many ints takes about a millisecond on a warm core
SLEEPS = (0.0, 0.01, 0.1, 1.0, 2.0, 5.0)


def task_cpu_ms(data: list[int]) -> float:
    started = time.process_time()
    sum(data)
    return (time.process_time() - started) * 1000


def compare_sleeps(repeats: int) -> None:
    data = list(range(TASK_ITEMS))
    for _ in range(3):
        task_cpu_ms(data)
    print(f"CPU ms of the same task (sum of {TASK_ITEMS:,} ints), median of {repeats}, after sleeping:")
    for sleep in SLEEPS:
        samples = []
        for _ in range(repeats):
            time.sleep(sleep)
            samples.append(task_cpu_ms(data))
        print(f"  {sleep:>5g} s asleep: {statistics.median(samples):6.2f} ms")


async def idle_loop(interval: float) -> None:
    while True:  # noqa: ASYNC110 - waking on a timer is what is measured
        await asyncio.sleep(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-loop", type=float, metavar="SECONDS", help="only wake every SECONDS, until killed")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.idle_loop:
        asyncio.run(idle_loop(args.idle_loop))
    else:
        compare_sleeps(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
