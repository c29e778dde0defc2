"""Min, median and max of the headline figures over several runs of bench/run.py.

for n in 1 2 3; do .venv/bin/python bench/run.py --json run$n.json; done
.venv/bin/python bench/aggregate.py run1.json run2.json run3.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/aggregate.py",
        description="Min, median and max of the headline figures over several runs of bench/run.py.",
        epilog="for n in 1 2 3; do .venv/bin/python bench/run.py --json run$n.json; done; "
        ".venv/bin/python bench/aggregate.py run1.json run2.json run3.json",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN.json", help="files written by bench/run.py --json")
    args = parser.parse_args(argv)
    runs = []
    for name in args.runs:
        try:
            runs.append(json.loads(Path(name).read_text()))
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read {name}: {exc}")
    by_targets: dict[int, list[dict[str, float]]] = {}
    for run in runs:
        by_targets.setdefault(run["targets"], []).append(figures(run))
    for targets, measured in sorted(by_targets.items()):
        print(f"\n{targets} targets, {len(measured)} runs, {runs[0]['cores']} cores\n")
        print("| figure | min | median | max |")
        print("| --- | ---: | ---: | ---: |")
        for name in measured[0]:
            values = [m[name] for m in measured if name in m]
            print(f"| {name} | {min(values):.3g} | {statistics.median(values):.3g} | {max(values):.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
