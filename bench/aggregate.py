"""Min, median and max of the headline figures over several runs of bench/run.py.

for n in 1 2 3; do python bench/run.py --json run$n.json; done
python bench/aggregate.py run1.json run2.json run3.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import figures


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = [json.loads(Path(name).read_text()) for name in sys.argv[1:]]
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
