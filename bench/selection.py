"""Weighted, capped selection cost (issue 25 items 2-3): the SQL draw against a numpy reference.

    nice -n 10 python -m bench.selection --docs 100000 --json bench/out/selection.json

``--docs`` documents in corpus shards of ``--shard-docs`` (doc_id, label, source, a 1,000-character
text the draw never reads) and one attribute shard per corpus shard holding ``--attributes``
scores a document (the quality stage stores ~40), as the quality stage writes them. Timed: the
draw of ``--sample`` documents weighted by one attribute at temperature 0.1 with a cap per label
(:func:`storage.selection.draw_selection`: DuckDB over the files), and the reference: pyarrow reads
the same columns, numpy computes the same keys (the Gumbel noise from the same md5) and walks them
in order with the cap. Both must choose the same documents; the ratio is reference / SQL.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.output import emit_report

LABELS = 50
TEMPERATURE = 0.1


def _write(root: Path, docs: int, shard_docs: int, attributes: int, rng: np.random.Generator):
    names = ["score"] + [f"other.{i}" for i in range(attributes - 1)]
    corpus, scored = [], []
    for start in range(0, docs, shard_docs):
        n = min(shard_docs, docs - start)
        ids = [f"doc-{i:08d}" for i in range(start, start + n)]
        labels = [f"label-{int(x)}" for x in rng.zipf(1.5, n) % LABELS]  # a few big labels, a long tail
        path = root / f"documents-{start // shard_docs:05d}.parquet"
        pq.write_table(pa.table({"doc_id": ids, "label": labels, "source": ["s"] * n, "text": ["x" * 1000] * n}), path)
        corpus.append((str(path), ""))
        apath = root / f"attributes-{start // shard_docs:05d}.parquet"
        pq.write_table(pa.table({"doc_id": np.repeat(ids, len(names)), "name": names * n,
                                 "value": rng.random(n * len(names))}), apath)
        scored.append(str(apath))
    return corpus, scored


def _reference(corpus, scored, sample: int, cap: int, seed: int) -> list[str]:
    docs = pa.concat_tables([pq.read_table(p, columns=["doc_id", "label"]) for p, _ in corpus])
    attrs = pa.concat_tables([pq.read_table(p).filter(pc.equal(pc.field("name"), "score")) for p in scored])
    weight = dict(zip(attrs.column("doc_id").to_pylist(), attrs.column("value").to_numpy()))
    ids = docs.column("doc_id").to_pylist()
    u = np.array([(int.from_bytes(hashlib.md5(f"{seed}\x1f{d}".encode()).digest()[8:], "little") + 0.5) / 2**64
                  for d in ids])
    key = np.array([weight[d] for d in ids]) / TEMPERATURE - np.log(-np.log(u))
    taken: dict[str, int] = {}
    chosen = []
    for i in np.argsort(-key, kind="stable"):
        label = docs.column("label")[int(i)].as_py()
        if taken.get(label, 0) < cap:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(ids[i])
            if len(chosen) == sample:
                break
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--shard-docs", type=int, default=5_000)
    parser.add_argument("--attributes", type=int, default=40)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--cap", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from refinery.storage.selection import draw_selection
    from refinery.tasks.selection import SelectionConfig

    cfg = SelectionConfig(weight="score", temperature=TEMPERATURE, cap_by="label", cap=args.cap, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus, scored = _write(Path(tmp), args.docs, args.shard_docs, args.attributes, np.random.default_rng(0))
        start = time.perf_counter()
        drawn = draw_selection(corpus, scored, args.sample, cfg)
        sql = time.perf_counter() - start
        start = time.perf_counter()
        reference = _reference(corpus, scored, args.sample, args.cap, cfg.seed)
        numpy_seconds = time.perf_counter() - start
    same = drawn["chosen"].column("doc_id").to_pylist() == reference
    emit_report({
        "docs": args.docs, "attribute_rows": args.docs * args.attributes, "sample": args.sample, "cap": args.cap,
        "chosen": drawn["chosen"].num_rows, "groups_capped": drawn["groups_capped"], "same_choice": same,
        "sql_seconds": round(sql, 2), "reference_seconds": round(numpy_seconds, 2),
        "reference_over_sql": round(numpy_seconds / sql, 2),
        "sql_seconds_per_100k_docs": round(sql * 100_000 / args.docs, 2),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }, args.json)
    if not same:
        raise SystemExit("the SQL draw and the reference chose different documents")


if __name__ == "__main__":
    main()
