"""The run report's dedup section tells a user how clusters were made, the largest cluster, and how
alike near drops are to their survivors, and calls out chaining when a config brings it back."""

from __future__ import annotations

import re

import pyarrow as pa

from refinery.storage import StageMarker, write_shard
from refinery.tasks.config import RefineryConfig
from refinery.tasks.dedup import DedupConfig
from refinery.tasks.dedup.shard_tasks import cluster_shards, signature_shard
from refinery.tasks.report.run_report import write_report
from refinery.tasks.runs import RunSpec
from tests.fixtures.corpora import overlap_chunk


def report_of(tmp_path, name: str, cfg: DedupConfig) -> str:
    run = RunSpec(run_id=name, home=str(tmp_path / name), config=RefineryConfig())
    catalog = run.catalog.ensure_schema()
    catalog.start_run(name, config={}, run_dir=run.run_dir)
    runs = overlap_chunk(0, 8_000, seed=11)
    shard = write_shard(pa.table({"doc_id": runs.doc_ids, "text": runs.texts,
                                  "n_chars": [len(t) for t in runs.texts]}), tmp_path / name / "documents-00000.parquet")
    out = tmp_path / name / "dedup"
    out.mkdir(parents=True)
    stats = cluster_shards([signature_shard(shard, out, cfg)], out, cfg, 1)
    StageMarker(run.stage_dir("dedup")).write(stats)
    return write_report(run).read_text()


def test_the_report_names_the_clustering_the_largest_cluster_and_how_alike_drops_are(tmp_path, prefect_api):
    star = report_of(tmp_path, "star", DedupConfig())
    assert "Near-duplicate clusters: **star**" in star
    largest = int(re.search(r"the largest cluster holds \*\*([\d,]+)\*\* documents", star).group(1).replace(",", ""))
    assert largest >= 2
    least = float(re.search(r"estimated Jaccard with their survivor: min ([\d.]+)", star).group(1))
    assert least >= 0.8 and "dropped through a chain of pairs" not in star

    chained = report_of(tmp_path, "components", DedupConfig(clustering="components"))
    assert "Near-duplicate clusters: **components**" in chained
    least = float(re.search(r"estimated Jaccard with their survivor: min ([\d.]+)", chained).group(1))
    assert least < 0.8 and "dropped through a chain of pairs" in chained
