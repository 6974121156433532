"""Rephrasing (WRAP) inside the synthesize flow: the chosen training passages rewritten in each style
of ``synthesize.rephrase`` on the workers, registered as `rephrasings`, and (``as_passages``) a
passages shard the query generators read (:mod:`tasks.synthesize.rephrase`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from refinery.flows.runtime import HOUR, gather
from refinery.tasks.runs import RunSpec
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.rephrase import rephrase_passages, rephrase_slices, rephrased_passages

# A slice of passages in every style (an LLM's minutes on CPU, or an endpoint's requests with their
# own retries); then the kept ones gathered into a passages shard, with their diversity.
rephrase_task = task(rephrase_passages, name="rephrase-passages",
                     task_run_name="rephrase passages {start}-{stop}", retries=1, timeout_seconds=4 * HOUR)
rephrased_task = task(rephrased_passages, name="rephrased-passages",
                      task_run_name="rephrased passages and their diversity", retries=1, timeout_seconds=HOUR)


def rephrase(run: RunSpec, cfg: SynthesizeConfig, passages: Path, training_passages: int, out: Path,
             wait_for: list[Any]) -> dict[str, Any] | None:
    """Rephrase the first ``rephrase.documents`` of the ``training_passages`` (the first passages
    of the ``passages`` shard) and register every attempt in `rephrasings`; the stats of
    :func:`tasks.synthesize.rephrase.rephrased_passages` (``path``: the rephrased passages shard,
    or None), or None when ``rephrase.styles`` is empty (nothing is written). ``wait_for``: the
    local model's preparation."""
    slices = rephrase_slices(cfg, training_passages)
    if not slices:
        return None
    shards = gather([rephrase_task.submit(passages, start, stop, cfg, out, run.data_home.cache_dir,
                                          wait_for=wait_for if cfg.rephrase.generator == "smollm2" else [])
                     for start, stop in slices], "rephrase passages")
    run.catalog.put_rephrasings(run.run_id, shards)
    return rephrased_task.submit(shards, passages, slices[-1][1], cfg, out).result()
