"""A paired interval between two evaluated runs of one home (e.g. two ablation variants that are not
each other's baseline): tuned nDCG@10 of A − B per task, paired bootstrap over the shared queries.

    python -m bench.paired_variants HOME RUN_A RUN_B
"""

from __future__ import annotations

import sys

from refinery.storage import DataHome
from refinery.tasks.config import load_config
from refinery.tasks.evaluate.bootstrap import paired_bootstrap
from refinery.tasks.report.ablation import variant_results
from refinery.tasks.runs import RunSpec

SAMPLES = 2000


def main(argv: list[str] | None = None) -> None:
    home, a, b = (argv or sys.argv[1:])[:3]
    results = {}
    for run_id in (a, b):
        config = load_config(DataHome.resolve(home, None).run_dir(run_id) / "config.yaml")
        results[run_id] = variant_results(RunSpec(run_id=run_id, home=home, config=config))
    for task, (queries, mine) in results[a]["per_query"].items():
        theirs_queries, theirs = results[b]["per_query"][task]
        if queries != theirs_queries:
            print(f"{task}: not the same queries; no paired interval")
            continue
        iv = paired_bootstrap(mine, theirs, samples=SAMPLES, seed=0)
        print(f"{task}: {a} ({results[a]['pairs']} pairs) − {b} ({results[b]['pairs']} pairs): "
              f"{iv.delta:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]")


if __name__ == "__main__":
    main()
