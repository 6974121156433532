"""The ablations' rows, catalog rows and Markdown (tasks/report/ablation.py) from hand-made variant
results; the whole `refinery ablate` runs in tests/flows/test_ablate.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refinery.storage import Catalog
from refinery.tasks.report.ablation import (
    CURATION,
    LOSSES,
    NIGHTS,
    artifact_table,
    ablation_markdown,
    comparison_rows,
    merge_earlier,
    store_rows,
)

QUERIES = ["q1", "q2", "q3", "q4"]


def variant(run_id: str, tuned: float, per_query: list[float], *, queries: list[str] = QUERIES) -> dict:
    return {"run_id": run_id, "pairs": 12, "train_pairs": 12, "steps": 3, "with_negatives": 0,
            "metrics": {"headline": {"base": {"ndcg@10": 0.5}, "bm25": {"ndcg@10": 0.4},
                                     "tuned": {"ndcg@10": tuned, "ndcg@10_delta": tuned - 0.5,
                                               "ndcg@10_delta_ci_low": tuned - 0.6,
                                               "ndcg@10_delta_ci_high": tuned - 0.4}}},
            "per_query": {"headline": (queries, np.array(per_query))}}


def test_a_variant_is_measured_against_its_comparisons_baseline():
    variants = {"curated": variant("a", 0.7, [0.5, 0.6, 0.7, 0.8]),
                "uncurated": variant("b", 0.6, [0.25, 0.35, 0.45, 0.55])}  # 0.25 below on every query
    rows = {r["variant"]: r for r in comparison_rows(CURATION, variants, samples=50, seed=0)}
    assert set(rows) == {"curated", "uncurated"}
    assert "ndcg@10_vs_baseline" not in rows["curated"]  # the baseline itself
    got = rows["uncurated"]
    assert (got["comparison"], got["run_id"], got["task"], got["pairs"]) == (CURATION, "b", "headline", 12)
    assert (got["base_ndcg@10"], got["bm25_ndcg@10"], got["ndcg@10"]) == (0.5, 0.4, 0.6)
    assert got["ndcg@10_delta_ci_low"] == pytest.approx(0.0)
    # a constant per-query difference: every resample's mean is it, so is the interval
    for key in ("ndcg@10_vs_baseline", "ndcg@10_vs_baseline_ci_low", "ndcg@10_vs_baseline_ci_high"):
        assert got[key] == pytest.approx(-0.25)


def test_no_interval_over_the_baseline_on_other_queries_or_without_resamples():
    variants = {"curated": variant("a", 0.7, [0.5, 0.6, 0.7, 0.8]),
                "uncurated": variant("b", 0.6, [0.5, 0.6, 0.7, 0.8], queries=["q1", "q2", "q4", "q3"])}
    assert all("ndcg@10_vs_baseline" not in r for r in comparison_rows(CURATION, variants, samples=50, seed=0))
    variants["uncurated"] = variant("b", 0.6, [0.5, 0.6, 0.7, 0.8])
    assert all("ndcg@10_vs_baseline" not in r for r in comparison_rows(CURATION, variants, samples=0, seed=0))


ROWS = [{"comparison": CURATION, "variant": "curated", "run_id": "a", "task": "headline", "pairs": 12,
         "train_pairs": 12, "steps": 3, "with_negatives": 0, "base_ndcg@10": 0.5, "bm25_ndcg@10": 0.4,
         "ndcg@10": 0.7, "ndcg@10_delta": 0.2, "ndcg@10_delta_ci_low": 0.1, "ndcg@10_delta_ci_high": 0.3},
        {"comparison": CURATION, "variant": "uncurated", "run_id": "b", "task": "headline", "pairs": 12,
         "train_pairs": 12, "steps": 3, "with_negatives": 0, "base_ndcg@10": 0.5, "bm25_ndcg@10": 0.4,
         "ndcg@10": 0.6, "ndcg@10_delta": 0.1, "ndcg@10_delta_ci_low": 0.0, "ndcg@10_delta_ci_high": 0.2,
         "ndcg@10_vs_baseline": -0.1, "ndcg@10_vs_baseline_ci_low": -0.2, "ndcg@10_vs_baseline_ci_high": 0.05}]


def test_stored_rows_replace_a_variants_earlier_ones(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    store_rows(catalog, "ref", ROWS)
    store_rows(catalog, "ref", ROWS[1:])  # measured again: the same rows, not twice as many
    rows = catalog.query("SELECT model, task, metric, value FROM metrics WHERE run_id = 'ref' AND stage = 'ablate'"
                         " ORDER BY model, task, metric").to_pylist()
    got = {(r["model"], r["task"], r["metric"]): r["value"] for r in rows}
    assert len(rows) == len(got) == 2 * 4 + 4 + 7  # train budget per variant; figures: curated 4, uncurated 7
    assert got[("curated", "train", "pairs")] == 12 and got[("curated", "train", "with_negatives")] == 0
    assert got[("uncurated", "headline", "ndcg@10_vs_baseline_ci_high")] == 0.05
    assert ("curated", "headline", "ndcg@10_vs_baseline") not in got


def test_earlier_ablations_of_other_comparisons_are_kept(tmp_path):
    earlier = [{**ROWS[0], "comparison": "generators", "variant": "mix"}, {**ROWS[0], "ndcg@10": 0.1}]
    (tmp_path / "ablation.json").write_text(json.dumps(earlier))
    merged = merge_earlier(tmp_path, ROWS)
    assert [(r["comparison"], r["variant"]) for r in merged] == [("generators", "mix"), (CURATION, "curated"),
                                                                  (CURATION, "uncurated")]
    assert json.loads((tmp_path / "ablation.json").read_text()) == merged


def test_markdown_has_a_table_per_comparison_and_task():
    text = ablation_markdown("ref", ROWS)
    assert text.startswith("# Ablations of run ref\n")
    assert "## Curation: curated vs uncurated corpus" in text
    assert "(base 0.5000, BM25 0.4000)" in text
    assert "| variant | run | pairs | steps | nDCG@10 | tuned − base | variant − curated |" in text
    assert "| curated | a | 12 | 3 | 0.7000 | +0.2000 [+0.1000, +0.3000] |  |" in text
    assert "| uncurated | b | 12 | 3 | 0.6000 | +0.1000 [+0.0000, +0.2000] | -0.1000 [-0.2000, +0.0500] |" in text


def test_the_artifact_table_gives_every_row_every_column():
    table = artifact_table(ROWS)
    assert [list(r) for r in table] == [list(ROWS[1])] * 2
    assert table[0]["ndcg@10_vs_baseline"] is None


def trained(run_id: str, tuned: float, *, loss_asked: str, loss: str, teacher: str | None, used: bool | None,
            reason: str | None = None, dropped: int | None = None, seconds: float = 90.0,
            teacher_seconds: float | None = None) -> dict:
    return variant(run_id, tuned, [tuned] * 4) | {
        "loss_asked": loss_asked, "loss": loss, "teacher": teacher, "teacher_used": used, "teacher_reason": reason,
        "false_negatives_dropped": dropped, "init": "all-MiniLM-L6-v2", "replayed": 0, "train_seconds": seconds,
        "teacher_seconds": teacher_seconds}


LOSS_VARIANTS = {
    "mnrl": trained("a", 0.7, loss_asked="mnrl", loss="mnrl", teacher=None, used=None),
    "marginmse_fusion": trained("b", 0.72, loss_asked="marginmse", loss="marginmse", teacher="fusion", used=True,
                                dropped=2, teacher_seconds=30.0),
    "marginmse_query_likelihood": trained(
        "c", 0.69, loss_asked="marginmse", loss="mnrl", teacher="query_likelihood", used=False,
        reason="the teacher's dev nDCG@10 0.6000 does not beat the starting model's 0.7000", teacher_seconds=60.0),
}


def test_a_teacher_that_failed_its_dev_check_shows_in_its_row_not_as_marginmse():
    rows = {r["variant"]: r for r in comparison_rows(LOSSES, LOSS_VARIANTS, samples=50, seed=0)}
    assert (rows["marginmse_query_likelihood"]["teacher_used"], rows["marginmse_query_likelihood"]["loss"],
            rows["marginmse_query_likelihood"]["loss_asked"]) == (False, "mnrl", "marginmse")
    assert rows["marginmse_fusion"]["teacher_used"] is True
    text = ablation_markdown("ref", list(rows.values()))
    assert "## Losses: MNRL vs MarginMSE with each teacher vs both" in text
    assert ("| variant | run | pairs | steps | loss | teacher | teacher used | false negatives dropped | train min "
            "| of which teacher | nDCG@10 | tuned − base | variant − mnrl |") in text
    assert "| mnrl | a | 12 | 3 | mnrl |  |  |  | 1.5 |  | 0.7000 |" in text
    assert "| marginmse_fusion | b | 12 | 3 | marginmse | fusion | yes | 2 | 2.0 | 0.5 | 0.7200 |" in text
    assert ("| marginmse_query_likelihood | c | 12 | 3 | mnrl (asked marginmse) | query_likelihood | no |  | 2.5 | 1.0 "
            "| 0.6900 |") in text
    assert ("- `marginmse_query_likelihood`: teacher not used: the teacher's dev nDCG@10 0.6000 "
            "does not beat the starting model's 0.7000") in text


def test_the_teacher_and_its_minutes_are_stored_with_the_training_figures(tmp_path):
    catalog = Catalog(tmp_path / "catalog.duckdb").ensure_schema()
    store_rows(catalog, "ref", comparison_rows(LOSSES, LOSS_VARIANTS, samples=50, seed=0))
    rows = catalog.query("SELECT model, metric, value FROM metrics WHERE run_id = 'ref' AND stage = 'ablate' "
                         "AND task = 'train'").to_pylist()
    got = {(r["model"], r["metric"]): r["value"] for r in rows}
    assert got[("marginmse_query_likelihood", "teacher_used")] == 0.0
    assert got[("marginmse_fusion", "teacher_used")] == 1.0
    assert got[("marginmse_fusion", "false_negatives_dropped")] == 2.0
    assert got[("marginmse_fusion", "teacher_seconds")] == 30.0 and got[("mnrl", "train_seconds")] == 90.0
    assert ("mnrl", "teacher_used") not in got  # no teacher at all: neither used nor refused


def test_a_nights_table_says_what_each_night_trained_from_and_replayed():
    variants = {"from_base": trained("a", 0.7, loss_asked="mnrl", loss="mnrl", teacher=None, used=None),
                "from_promoted": trained("b", 0.75, loss_asked="mnrl", loss="mnrl", teacher=None, used=None)
                | {"init": "promoted:r0", "replayed": 6}}
    text = ablation_markdown("ref", comparison_rows(NIGHTS, variants, samples=50, seed=0))
    assert "| variant | run | pairs | steps | from | replayed | train min | nDCG@10 | tuned − base | variant − from_base |" in text
    assert "| from_promoted | b | 12 | 3 | promoted:r0 | 6 | 1.5 | 0.7500 |" in text


def test_skipped_comparisons_are_listed_with_their_reasons():
    text = ablation_markdown("ref", ROWS, skipped=["nights: dataset 'news' has no promoted model"])
    assert "## Not measured\n\n- nights: dataset 'news' has no promoted model\n" in text
    assert "## Not measured" not in ablation_markdown("ref", ROWS)
