"""A refilter re-decides each shard from the attributes the quality stage stored: the same drops and
corpus a fresh quality run with the new thresholds writes, with no rule scored again, in files named
by the decisions (so a stopped refilter resumes, and no file decided under other thresholds is
ever taken for the new one)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.storage import read_shard, write_shard
from refinery.tasks.quality import (
    QualityConfig,
    decide,
    family_fingerprints,
    required_attributes,
    rule_thresholds,
)
from refinery.tasks.quality.classifier import QualityClassifier
from refinery.tasks.quality.langid import LanguageIdentifier
from refinery.tasks.quality.refilter import remove_stale_decisions, rescored_families, stored_attributes
from refinery.tasks.quality.shard_tasks import attributes_table, quality_shard, refilter_shard
from refinery.tasks.quality.text_stats import ParsedDocs

CONFIGS = {
    "published defaults": {},
    "stricter": {
        "langid": {"min_score": 0.9},
        "gopher_quality": {"min_doc_words": 200, "min_alpha_words_ratio": 0.85, "max_symbol_word_ratio": 0.02},
        "gopher_repetition": {"max_top_2gram_char_frac": 0.05, "max_dup_5gram_char_frac": 0.01},
        "c4": {"min_num_sentences": 12, "max_short_lines_ratio": 0.3, "max_javascript_lines": 0},
        "fineweb": {"min_line_punct_ratio": 0.5, "line_punct_exclude_zero": True, "max_new_line_ratio": 0.05},
    },
    "looser, some rules and families off": {
        "gopher_quality": {"min_doc_words": None, "min_alpha_words_ratio": None, "min_stop_words": 0},
        "gopher_repetition": {"enabled": False},
        "c4": {"filter_lorem_ipsum": False, "filter_curly_bracket": False},
        "fineweb": {"drop_empty": False, "max_char_dup_ratio": 0.2},
    },
    # a run scored under web (the default profile) re-decided under another profile
    "profile technical": {"profile": "technical"},
    "profile prose, one threshold of its own": {"profile": "prose", "c4": {"min_num_sentences": 3}},
}


@pytest.fixture()
def scoring(monkeypatch) -> Counter[str]:
    """Documents scored by each kind of rule from here on: a spy on what every family needs
    (parsed text; a language prediction; a classifier score). The test reads it, nothing else."""
    seen: Counter[str] = Counter()

    def spy(kind: str, real):
        def counting(self, texts, *args, **kwargs):
            seen[kind] += len(texts)
            return real(self, texts, *args, **kwargs)
        return counting

    monkeypatch.setattr(ParsedDocs, "__init__", spy("text families", ParsedDocs.__init__))
    monkeypatch.setattr(LanguageIdentifier, "predict", spy("langid", LanguageIdentifier.predict))
    monkeypatch.setattr(QualityClassifier, "score", spy("classifier", QualityClassifier.score))
    return seen


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, mixed_texts: list[str]) -> tuple[list[Path], Path]:
    """Two ingest shards of real and junk documents, and a dedup drops shard that drops a few."""
    root = tmp_path_factory.mktemp("corpus")
    ids = [f"{i:016x}" for i in range(len(mixed_texts))]
    half = len(ids) // 2
    shards = [write_shard(pa.table({"doc_id": ids[lo:hi], "source": ["mixed"] * (hi - lo), "text": mixed_texts[lo:hi]}),
                          root / f"documents-mixed-{i:05d}.parquet")
              for i, (lo, hi) in enumerate([(0, half), (half, len(ids))])]
    dedup_drops = write_shard(pa.table({"doc_id": ids[::37], "stage": ["dedup"] * len(ids[::37])}),
                              root / "dedup-drops.parquet")
    return shards, dedup_drops


def scored_stage(root: Path, corpus, cfg: QualityConfig) -> Path:
    """A quality stage folder as the quality stage leaves it, scored and decided under ``cfg``."""
    shards, dedup_drops = corpus
    root.mkdir(parents=True, exist_ok=True)
    for shard in shards:
        quality_shard(shard, dedup_drops, root, cfg)
    return root


def rows(path: str | Path) -> list[dict]:
    return sorted(read_shard(path).to_pylist(), key=lambda r: r["doc_id"])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_refilter_decides_what_a_fresh_quality_run_decides(tmp_path, corpus, scoring, name):
    shards, dedup_drops = corpus
    stage = scored_stage(tmp_path / "run", corpus, QualityConfig())
    cfg = QualityConfig(**CONFIGS[name])
    fresh = scored_stage(tmp_path / "fresh", corpus, cfg)
    assert scoring["text families"] > 0 and scoring["langid"] > 0  # the spy sees scoring
    scored = scoring.copy()

    results = [refilter_shard(shard, dedup_drops, stage, cfg) for shard in shards]

    assert scoring == scored, "a refilter must not score any document again"
    reasons = set()
    for shard, result in zip(shards, results):
        stem = shard.stem.removeprefix("documents-")
        assert rows(result["drops"]) == rows(fresh / f"drops-{stem}.parquet")
        assert rows(result["corpus"]) == rows(fresh / f"corpus-{stem}.parquet")
        assert result["kept"] == read_shard(result["corpus"]).num_rows and result["dropped"] == len(rows(result["drops"]))
        survivors = set(read_shard(shard)["doc_id"].to_pylist()) - set(read_shard(dedup_drops)["doc_id"].to_pylist())
        assert result["kept"] + result["dropped"] == result["docs"] == len(survivors)
        reasons |= {r["reason"] for r in rows(result["drops"])}
    # the mixed set exercises several families, not just a keep-everything config
    assert len({r.split(".")[0] for r in reasons}) >= (3 if "looser" in name else 4)


def test_files_are_named_by_the_decisions(tmp_path, corpus):
    shards, dedup_drops = corpus
    stage = scored_stage(tmp_path / "run", corpus, QualityConfig())
    stricter = QualityConfig(**CONFIGS["stricter"])
    strict = refilter_shard(shards[0], dedup_drops, stage, stricter)
    default = refilter_shard(shards[0], dedup_drops, stage, QualityConfig())
    # other decisions, other names; and not the scoring run's own files
    assert strict["corpus"] != default["corpus"] and strict["drops"] != default["drops"]
    assert Path(strict["corpus"]).name.startswith("corpus-mixed-00000.")
    assert {Path(default["corpus"]).name, Path(strict["corpus"]).name}.isdisjoint({"corpus-mixed-00000.parquet"})
    # the same decisions under a threshold no document comes near: the same files, kept as they are
    mtime = os.stat(strict["corpus"]).st_mtime_ns, os.stat(strict["drops"]).st_mtime_ns
    far = QualityConfig(**{**CONFIGS["stricter"], "gopher_quality": {**CONFIGS["stricter"]["gopher_quality"],
                                                                     "max_doc_words": 10_000_000}})
    again = refilter_shard(shards[0], dedup_drops, stage, far)
    assert again == strict
    assert (os.stat(again["corpus"]).st_mtime_ns, os.stat(again["drops"]).st_mtime_ns) == mtime
    # back to the thresholds the stage scored under: the scoring run's decisions, under a new name
    assert rows(default["corpus"]) == rows(stage / "corpus-mixed-00000.parquet")
    assert rows(default["drops"]) == rows(stage / "drops-mixed-00000.parquet")


def test_a_stopped_refilter_resumes(tmp_path, corpus):
    """A refilter stopped after one shard (and in the middle of writing another) finishes on a rerun:
    the finished shard is kept, the rest written, the result that of an uninterrupted refilter."""
    shards, dedup_drops = corpus
    stage = scored_stage(tmp_path / "run", corpus, QualityConfig())
    cfg = QualityConfig(**CONFIGS["stricter"])
    done = refilter_shard(shards[0], dedup_drops, stage, cfg)
    (stage / ".corpus-mixed-00001.parquet.x.tmp").write_bytes(b"half a shard")  # what a killed write leaves
    mtime = os.stat(done["corpus"]).st_mtime_ns

    results = [refilter_shard(shard, dedup_drops, stage, cfg) for shard in shards]

    assert results[0] == done and os.stat(done["corpus"]).st_mtime_ns == mtime
    uninterrupted = scored_stage(tmp_path / "other", corpus, QualityConfig())
    for shard, result in zip(shards, results):
        clean = refilter_shard(shard, dedup_drops, uninterrupted, cfg)
        assert Path(result["corpus"]).name == Path(clean["corpus"]).name
        assert rows(result["corpus"]) == rows(clean["corpus"]) and rows(result["drops"]) == rows(clean["drops"])


def test_removing_stale_decisions_keeps_attributes_and_the_current_files(tmp_path, corpus):
    shards, dedup_drops = corpus
    stage = scored_stage(tmp_path / "run", corpus, QualityConfig())
    current = [refilter_shard(s, dedup_drops, stage, QualityConfig(**CONFIGS["stricter"])) for s in shards]
    keep = [p for r in current for p in (r["drops"], r["corpus"])]
    removed = remove_stale_decisions(stage, keep)
    assert sorted(p.name for p in removed) == sorted(f"{k}-mixed-{i:05d}.parquet" for k in ("corpus", "drops")
                                                    for i in range(2))
    assert sorted(p.name for p in stage.iterdir()) == sorted(
        [f"attributes-mixed-{i:05d}.parquet" for i in range(2)] + [Path(p).name for p in keep])


def test_stored_attributes_line_up_with_the_documents(tmp_path):
    table = pa.table({"doc_id": ["b", "a", "c", "b", "a", "zz"],
                      "name": ["x", "x", "x", "y", "y", "x"],
                      "value": pa.array([2.0, 1.0, None, 20.0, 10.0, 9.0])})
    path = write_shard(table, tmp_path / "attributes.parquet")
    attrs = stored_attributes(path, pa.array(["a", "b", "c"]))
    assert set(attrs) == {"x", "y"}
    np.testing.assert_array_equal(attrs["x"], [1.0, 2.0, np.nan])  # NULL: no value; "zz" is not a survivor
    np.testing.assert_array_equal(attrs["y"], [10.0, 20.0, np.nan])  # "c" has no "y" row


def test_missing_values_never_fail_a_rule(tmp_path):
    """A document without a stored value (NULL, NaN or no row) for a rule's attribute is kept by it."""
    cfg = QualityConfig(**{f: {"enabled": False} for f in ("langid", "gopher_repetition", "c4", "fineweb")},
                        gopher_quality={"min_doc_words": 50})
    words = "gopher_quality.word_count"
    values = {"0a": 3.0, "0b": float("nan"), "0c": None}  # 0a: 3 words < 50; 0d: no row at all
    long = [(d, n, v if n == words else None) for d, v in values.items() for n in required_attributes(cfg)]
    write_shard(pa.table({"doc_id": [r[0] for r in long], "name": [r[1] for r in long],
                          "value": pa.array([r[2] for r in long], pa.float64())}), tmp_path / "attributes-s.parquet")
    docs = write_shard(pa.table({"doc_id": ["0a", "0b", "0c", "0d"], "text": ["a b c", "", "", ""]}),
                       tmp_path / "documents-s.parquet")
    no_drops = write_shard(pa.table({"doc_id": pa.array([], pa.string())}), tmp_path / "dedup.parquet")
    result = refilter_shard(docs, no_drops, tmp_path, cfg)
    assert rows(result["drops"]) == [{"doc_id": "0a", "stage": "quality", "reason": "gopher_quality.min_word_count"}]
    assert [r["doc_id"] for r in rows(result["corpus"])] == ["0b", "0c", "0d"]


@pytest.mark.parametrize("mode", ["threshold", "pareto"])
def test_classifier_decisions_from_stored_scores(tmp_path, corpus, mode):
    """The classifier's rules (a score cut, or the Pareto draw) read the stored score and noise."""
    shards, dedup_drops = corpus
    stage = scored_stage(tmp_path / "run", corpus, QualityConfig())
    shard = shards[0]
    attributes = stage / "attributes-mixed-00000.parquet"
    ids = sorted(set(read_shard(attributes)["doc_id"].to_pylist()))
    score = np.linspace(0.0, 1.0, len(ids))
    noise = np.random.default_rng(0).exponential(size=len(ids))
    extra = attributes_table(pa.array(ids), {"classifier.score": score, "classifier.noise": noise})
    write_shard(pa.concat_tables([read_shard(attributes), extra]), attributes)
    cfg = QualityConfig(**{f: {"enabled": False} for f in ("langid", "gopher_repetition", "gopher_quality", "c4",
                                                            "fineweb")},
                        classifier={"enabled": True, "mode": mode, "threshold": 0.3, "pareto_alpha": 3.0})
    dropped = {r["doc_id"] for r in rows(refilter_shard(shard, dedup_drops, stage, cfg)["drops"])}
    if mode == "threshold":  # hand-checked: exactly the documents scored below 0.3
        assert dropped == {d for d, s in zip(ids, score) if s < 0.3}
    else:  # kept when exp(noise / alpha) - 1 > 1 - score
        assert dropped == {d for d, s, n in zip(ids, score, noise) if np.exp(n / 3.0) - 1.0 <= 1.0 - s}
        assert 0 < len(dropped) < len(ids)


def test_only_threshold_changes_can_be_refiltered():
    base = QualityConfig()
    assert rescored_families(family_fingerprints(base), QualityConfig(**CONFIGS["stricter"])) == []
    assert rescored_families(family_fingerprints(base), QualityConfig(**CONFIGS["looser, some rules and families off"])) == []
    changed = QualityConfig(c4={"min_words_per_line": 4}, langid={"languages": ["en", "de"]})
    assert rescored_families(family_fingerprints(base), changed) == ["c4", "langid"]
    # a family the scoring run had off has no stored attributes
    assert rescored_families(family_fingerprints(base), QualityConfig(classifier={"enabled": True})) == ["classifier"]


def test_scoring_parameters_change_fingerprints() -> None:
    base = family_fingerprints(QualityConfig())
    changed = family_fingerprints(QualityConfig(c4={"min_words_per_line": 4}, langid={"languages": ["en", "de"]}))
    assert changed["c4"] != base["c4"] and changed["langid"] != base["langid"]
    assert changed["fineweb"] == base["fineweb"]
    assert "classifier" not in base  # disabled families have nothing to reuse


def test_decide_names_missing_attributes() -> None:
    with pytest.raises(KeyError, match="missing"):
        decide({"gopher_quality.word_count": np.ones(1)}, QualityConfig())


def test_rule_thresholds_name_the_attribute_and_cut() -> None:
    cfg = QualityConfig(gopher_quality={"min_doc_words": 80, "max_doc_words": None})
    thresholds = rule_thresholds(cfg)
    assert thresholds["gopher_quality.min_word_count"] == ("gopher_quality.word_count", 80.0)
    assert "gopher_quality.max_word_count" not in thresholds
    assert thresholds["c4.lorem_ipsum"] == ("c4.lorem_ipsum_lines", 0.0)
