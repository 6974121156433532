"""The quality stage in a real flow: a classifier trained from an SQL source, and re-thresholding
from stored scores (refilter) without scoring any document again: the same decisions as a fresh
quality run under the new thresholds, later stages made unfinished first, and a refilter stopped
half-way finished by running it again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from refinery.tasks.books import check_books
from refinery.flows.quality import RefilterError, refilter_run
from refinery.tasks.runs import RunSpec
from refinery.storage import Catalog, StageMarker, read_shard
from refinery.tasks.config import RefineryConfig, load_config, parse_config
from refinery.tasks.ingest.readers import bbc_folder
from refinery.tasks.quality.shard_tasks import quality_shard

LATER = ("synthesize", "train", "evaluate")


def worker_scoring(address: str, action: str) -> int:
    """A spy on every Dask worker process: ``install`` counts the documents each rule family parses,
    predicts or scores from then on (kept on the worker object, not in Refinery), ``read`` sums the
    counts, ``remove`` puts the real methods back."""
    from distributed import Client

    def on_worker(dask_worker, action: str) -> int:
        from refinery.tasks.quality.classifier import QualityClassifier
        from refinery.tasks.quality.langid import LanguageIdentifier
        from refinery.tasks.quality.text_stats import ParsedDocs

        targets = ((ParsedDocs, "__init__"), (LanguageIdentifier, "predict"), (QualityClassifier, "score"))
        spy = getattr(dask_worker, "_quality_scoring_spy", None)
        if action == "install" and spy is None:
            spy = dask_worker._quality_scoring_spy = {"docs": 0, "real": {}}
            for cls, name in targets:
                real = spy["real"][(cls, name)] = getattr(cls, name)

                def counting(self, texts, *args, _real=real, **kwargs):
                    spy["docs"] += len(texts)
                    return _real(self, texts, *args, **kwargs)

                setattr(cls, name, counting)
        if action == "remove" and spy is not None:
            for (cls, name), real in spy["real"].items():
                setattr(cls, name, real)
            del dask_worker._quality_scoring_spy
        return spy["docs"] if spy else 0

    with Client(address) as client:
        return sum(client.run(on_worker, action=action).values())


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("quality")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "stages": ["ingest", "dedup", "quality"],
        "ingest": {"shard_size": 25, "limit": 50, "sources": [
            {"path": str(bbc_folder() / "business"), "name": "business", "title_from_first_line": True},
            {"path": str(bbc_folder() / "sports"), "name": "sport", "title_from_first_line": True}]},
        "quality": {"classifier": {"enabled": True, "positives": "sql:SELECT text FROM documents WHERE source = 'sport'",
                                   "mode": "threshold", "threshold": 0.5}},
    }))
    worker_scoring(dask_address, "install")
    try:
        stats = nightly(config_path=str(config), dask_address=dask_address)
        yield RunSpec(run_id=stats["run_id"], home=str(root / "home"), config=load_config(config))
    finally:
        worker_scoring(dask_address, "remove")


def with_quality(run: RunSpec, **families: dict) -> RefineryConfig:
    """The run's config with these quality families' options changed (configs are frozen)."""
    data = run.config.model_dump(mode="json")
    for family, values in families.items():
        data["quality"][family].update(values)
    return parse_config(data, "a test's quality change")


def looser(run: RunSpec) -> RefineryConfig:
    return with_quality(run, classifier={"threshold": 0.0}, gopher_quality={"min_alpha_words_ratio": 0.5})


def drops(run: RunSpec) -> list[tuple[str, str]]:
    return sorted((r["doc_id"], r["reason"]) for r in run.catalog.query(
        "SELECT doc_id, reason FROM drops WHERE run_id = ? AND stage = 'quality'", [run.run_id]).to_pylist())


def mark_later_stages_finished(run: RunSpec) -> None:
    for stage in LATER:
        StageMarker(run.stage_dir(stage)).write({"stand-in": "a finished later stage"})


def test_classifier_trained_registered_and_used(quality_run):
    q = quality_run.catalog.query
    rid = [quality_run.run_id]
    (model,) = q("SELECT name, path FROM models WHERE run_id = ?", rid).to_pylist()
    assert model["name"] == "quality_classifier" and Path(model["path"]).exists()
    metrics = {r["metric"]: r["value"] for r in q("SELECT metric, value FROM metrics WHERE run_id = ? AND stage = 'quality'", rid).to_pylist()}
    assert set(metrics) == {"accuracy", "auc"} and metrics["auc"] > 0.6
    scores = q("""SELECT d.source, avg(a.value) AS score FROM doc_attributes a JOIN documents d USING (run_id, doc_id)
                  WHERE a.run_id = ? AND a.name = 'classifier.score' GROUP BY d.source""", rid).to_pylist()
    by_source = {r["source"]: r["score"] for r in scores}
    assert by_source["sport"] > by_source["business"]  # it learned what the positives look like
    (dropped,) = q("SELECT count(*) AS n FROM drops WHERE run_id = ? AND reason LIKE 'classifier.%'", rid).to_pylist()
    assert dropped["n"] > 0


def test_refilter_refuses_a_change_that_needs_rescoring(quality_run, dask_address):
    mark_later_stages_finished(quality_run)
    before = drops(quality_run)
    other = with_quality(quality_run, langid={"languages": ["de"]})
    with pytest.raises(RefilterError, match="langid"):
        refilter_run(quality_run.run_id, other, dask_address)
    # refused before anything changed
    assert all(StageMarker(quality_run.stage_dir(stage)).read() is not None for stage in LATER)
    assert drops(quality_run) == before


def test_a_refilter_stopped_half_way_leaves_no_later_stage_finished(quality_run, dask_address):
    mark_later_stages_finished(quality_run)
    quality = StageMarker(quality_run.stage_dir("quality")).read()
    config = (quality_run.run_dir / "config.yaml").read_text()
    before = drops(quality_run)
    # one shard's attributes are gone for as long as the refilter runs (every attempt fails)
    attributes = sorted(quality_run.stage_dir("quality").glob("attributes-*.parquet"))[-1]
    hidden = attributes.rename(attributes.with_name(".hidden"))
    try:
        with pytest.raises(Exception, match=attributes.name):
            refilter_run(quality_run.run_id, looser(quality_run), dask_address)
    finally:
        hidden.rename(attributes)
    assert all(StageMarker(quality_run.stage_dir(stage)).read() is None for stage in LATER)
    # the quality stage is as it was: marker, config, registered drops, and the files they name
    assert StageMarker(quality_run.stage_dir("quality")).read() == quality
    assert (quality_run.run_dir / "config.yaml").read_text() == config
    assert drops(quality_run) == before
    assert all(Path(p).exists() for p in quality["corpus_shards"])


def test_refilter_decides_as_a_fresh_quality_run_from_stored_scores_only(quality_run, dask_address, tmp_path):
    """(After the stopped refilter above, if it ran: this one finishes it.)"""
    scored = worker_scoring(dask_address, "read")
    assert scored > 0  # the quality stage scored on the workers, so the spy does observe scoring
    new = looser(quality_run)
    mark_later_stages_finished(quality_run)

    stats = refilter_run(quality_run.run_id, new, dask_address)

    assert worker_scoring(dask_address, "read") == scored  # no document was scored again
    # what a fresh quality run with the new thresholds decides, on the same survivors, with the same model
    ingest, dedup, quality = (StageMarker(quality_run.stage_dir(s)).read() for s in ("ingest", "dedup", "quality"))
    fresh = [quality_shard(Path(s), Path(dedup["drops_path"]), tmp_path, new.quality, quality["classifier"])
             for s in ingest["shards"]]
    assert drops(quality_run) == sorted((r["doc_id"], r["reason"]) for f in fresh for r in read_shard(f["drops"]).to_pylist())
    corpus = quality_run.catalog.query("SELECT doc_id, text FROM corpus WHERE run_id = ? ORDER BY doc_id",
                                       [quality_run.run_id]).to_pylist()
    assert corpus == sorted((r for f in fresh for r in read_shard(f["corpus"], ["doc_id", "text"]).to_pylist()),
                            key=lambda r: r["doc_id"])
    assert not any(reason.startswith("classifier.") for _, reason in drops(quality_run))
    assert stats["kept"] == quality["kept"] == len(corpus) == sum(f["kept"] for f in fresh)
    assert quality["refiltered"] and quality["drops_by_reason"] == stats["drops_by_reason"]
    # the corpus shards the marker names hold that corpus, and nothing decided earlier is left beside them
    stage = quality_run.stage_dir("quality")
    assert sorted(r["doc_id"] for p in quality["corpus_shards"] for r in read_shard(p, ["doc_id"]).to_pylist()) == [
        r["doc_id"] for r in corpus]
    assert sorted(p.name for p in stage.glob("corpus-*.parquet")) == sorted(Path(p).name for p in quality["corpus_shards"])
    assert len(list(stage.glob("drops-*.parquet"))) == len(ingest["shards"])

    books = check_books(quality_run, ingest, quality)
    assert books.docs_in == books.docs_kept + books.docs_dropped + books.docs_rejected
    assert all(StageMarker(quality_run.stage_dir(stage)).read() is None for stage in LATER)
    assert "min_alpha_words_ratio: 0.5" in (quality_run.run_dir / "config.yaml").read_text()
    (row,) = Catalog(quality_run.data_home.catalog_path).query(
        "SELECT status, docs_kept, config FROM runs WHERE run_id = ?", [quality_run.run_id]).to_pylist()
    assert row["status"] == "refiltered" and row["docs_kept"] == len(corpus)
    assert load_config(quality_run.run_dir / "config.yaml").quality == new.quality
    assert '"min_alpha_words_ratio":0.5' in row["config"].replace(" ", "")
