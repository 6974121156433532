"""The summary `refinery run` prints when a run completes (flows/cli.py `_summary`): the books and
one table of figures per evaluation task, read through the catalog's verbs."""

from __future__ import annotations

import pyarrow as pa

from refinery.flows.cli import _summary
from refinery.storage import Catalog


def test_the_summary_prints_a_table_per_evaluation_task(tmp_path, capsys):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    rows = [("bm25", "headline", "ndcg@10", 0.7712), ("tuned", "headline", "ndcg@10", 0.8331),
            ("tuned", "headline", "recall@100", 0.9876), ("queries", "headline", "scored", 777.0),
            ("base", "same_label", "mrr@10", 0.4321)]
    catalog.replace("metrics", "r1", rows=pa.table({"stage": ["evaluate"] * len(rows),
                                                    **dict(zip(("model", "task", "metric", "value"),
                                                               map(list, zip(*rows))))}))
    _summary({"run_id": "r1", "run_dir": str(tmp_path / "runs" / "r1"), "report": "report.md",
              "books": {"docs_in": 10, "docs_kept": 6, "docs_dropped": 3, "docs_rejected": 1},
              "evaluate": {"tasks": ["headline", "same_label"]}}, catalog)
    out = capsys.readouterr().out
    assert "docs in 10 = kept 6 + dropped 3 + rejected 1" in out
    assert "headline → article retrieval" in out and "0.8331" in out and "0.9876" in out and "0.4321" in out
    assert out.index("bm25") < out.index("tuned")  # bm25, base, then tuned
    assert "777" not in out  # the query counts are not a model
