"""decide() (numpy) and decision_sql() (DuckDB) give identical reasons on real documents, and a
threshold-only config change re-decides from stored attributes without scoring anything again."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from refinery.tasks.quality import (
    FAMILY_EVALUATIONS,
    QualityConfig,
    decide,
    decision_sql,
    document_keys,
    exponential_noise,
    family_fingerprints,
    required_attributes,
    rule_thresholds,
    score_documents,
)

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
}


def to_table(doc_ids: list[str], attrs: dict[str, np.ndarray], *, nan_as_null: bool = False) -> pa.Table:
    names, ids, values = [], [], []
    for name, column in attrs.items():
        for doc_id, value in zip(doc_ids, column.tolist()):
            names.append(name)
            ids.append(doc_id)
            values.append(None if nan_as_null and value != value else value)
    return pa.table({"doc_id": ids, "name": names, "value": pa.array(values, type=pa.float64())})


def sql_reasons(table: pa.Table, cfg: QualityConfig, doc_ids: list[str]) -> list[str | None]:
    con = duckdb.connect()
    con.register("doc_attributes", table)
    rows = dict(con.execute(decision_sql(cfg)).fetchall())
    return [rows[d] for d in doc_ids]


@pytest.fixture(scope="module")
def scored(mixed_texts: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    cfg = QualityConfig(classifier={"enabled": True})
    attrs = score_documents(mixed_texts, cfg)
    # Stand-in classifier attributes: a score spread over [0, 1] and the real key-derived noise.
    rng = np.random.default_rng(0)
    attrs["classifier.score"] = rng.random(len(mixed_texts))
    attrs["classifier.noise"] = exponential_noise(document_keys(mixed_texts))
    return [f"doc{i}" for i in range(len(mixed_texts))], attrs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sql_matches_numpy(scored: tuple[list[str], dict[str, np.ndarray]], name: str) -> None:
    doc_ids, attrs = scored
    cfg = QualityConfig(**CONFIGS[name])
    expected = decide(attrs, cfg)
    assert sql_reasons(to_table(doc_ids, attrs), cfg, doc_ids) == expected
    assert sql_reasons(to_table(doc_ids, attrs, nan_as_null=True), cfg, doc_ids) == expected
    # The mixed set exercises several families, not just a keep-everything config.
    assert len({r.split(".")[0] for r in expected if r}) >= (3 if "looser" in name else 4)


@pytest.mark.parametrize("mode", ["threshold", "pareto"])
def test_sql_matches_numpy_for_the_classifier(scored: tuple[list[str], dict[str, np.ndarray]], mode: str) -> None:
    doc_ids, attrs = scored
    cfg = QualityConfig(classifier={"enabled": True, "mode": mode, "threshold": 0.3, "pareto_alpha": 3.0})
    expected = decide(attrs, cfg)
    assert "classifier." + ("pareto" if mode == "pareto" else "min_score") in expected
    assert sql_reasons(to_table(doc_ids, attrs), cfg, doc_ids) == expected


def test_rethreshold_reuses_stored_attributes(scored: tuple[list[str], dict[str, np.ndarray]]) -> None:
    doc_ids, attrs = scored
    before = QualityConfig()
    after = QualityConfig(**CONFIGS["stricter"])
    table = to_table(doc_ids, attrs)
    evaluations = FAMILY_EVALUATIONS.copy()
    old = sql_reasons(table, before, doc_ids)
    new = sql_reasons(table, after, doc_ids)
    assert FAMILY_EVALUATIONS == evaluations, "re-deciding must not re-run any rule family"
    assert sum(r is not None for r in new) > sum(r is not None for r in old)
    assert family_fingerprints(after) == family_fingerprints(before), "thresholds are not scoring parameters"
    assert set(required_attributes(after)) <= set(attrs)


def test_scoring_parameters_change_fingerprints() -> None:
    base = family_fingerprints(QualityConfig())
    changed = family_fingerprints(QualityConfig(c4={"min_words_per_line": 4}, langid={"languages": ["en", "de"]}))
    assert changed["c4"] != base["c4"] and changed["langid"] != base["langid"]
    assert changed["fineweb"] == base["fineweb"]
    assert "classifier" not in base  # disabled families have nothing to reuse


def test_empty_and_keep_everything_queries() -> None:
    con = duckdb.connect()
    con.register("doc_attributes", pa.table({"doc_id": ["a"], "name": ["x"], "value": [1.0]}))
    off = QualityConfig(**{f: {"enabled": False} for f in ("langid", "gopher_repetition", "gopher_quality", "c4", "fineweb")})
    assert con.execute(decision_sql(off)).fetchall() == [("a", None)]
    with pytest.raises(KeyError, match="missing"):
        decide({"gopher_quality.word_count": np.ones(1)}, QualityConfig())


def test_rule_thresholds_name_the_attribute_and_cut() -> None:
    cfg = QualityConfig(gopher_quality={"min_doc_words": 80, "max_doc_words": None})
    thresholds = rule_thresholds(cfg)
    assert thresholds["gopher_quality.min_word_count"] == ("gopher_quality.word_count", 80.0)
    assert "gopher_quality.max_word_count" not in thresholds
    assert thresholds["c4.lorem_ipsum"] == ("c4.lorem_ipsum_lines", 0.0)
