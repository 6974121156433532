"""Choosing the training passages (``synthesize.selection``) through the real nightly flow, on
technical documentation (no titles, so the night holds passages out for its evaluation).

The corpus is lopsided on purpose: most sections come from one package. With a cap per label the
passages come at most ``cap`` from each; with a weight at a low temperature they are the
highest-weighted documents; either way the held-out passages are the very ones an unselected
night holds out, the choice is in `selections`, and the report shows the counts per group.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from refinery.storage import Catalog
from tests.fixtures.techdocs import techdoc_sections

CAP = 4
PASSAGES = 30


def _corpus(root):
    sections = techdoc_sections(400)
    labels = Counter(s.source.split(".")[0].split(":")[0] for s in sections)
    path = root / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": s.text, "label": s.source.split(".")[0].split(":")[0]})
                            + "\n" for i, s in enumerate(sections)))
    return path, labels


def _night(root, dask_address, name: str, selection: dict | None):
    from refinery.flows.nightly import nightly

    path, _ = _corpus(root)
    config = {
        "home": str(root / name),
        "stages": ["ingest", "dedup", "quality", "synthesize"],
        "ingest": {"sources": [{"path": str(path), "name": "docs"}]},
        "quality": {"profile": "technical"},  # the default (web) profile drops most sections of code
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": PASSAGES,
                       "heldout_passages": 10, "filter_pool_docs": 200,
                       **({"selection": selection} if selection else {})},
        "evaluate": {"encoder": "torch"},
    }
    (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    stats = nightly(config_path=str(root / f"{name}.yaml"), dask_address=dask_address)
    catalog = Catalog(root / name / "catalog.duckdb")

    def q(sql: str) -> list[dict]:
        return catalog.query(sql.replace("$run", f"'{stats['run_id']}'")).to_pylist()

    return stats, q


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_api, dask_address):
    root = tmp_path_factory.mktemp("selection")
    return {
        "uniform": _night(root, dask_address, "uniform", None),
        "capped": _night(root, dask_address, "capped", {"cap_by": "label", "cap": CAP, "seed": 3}),
        "weighted": _night(root, dask_address, "weighted", {"weight": "n_chars", "temperature": 0.001}),
    }


def _passage_labels(q) -> Counter:
    rows = q("""SELECT c.label FROM selections s JOIN corpus c ON c.run_id = s.run_id AND c.doc_id = s.doc_id
                WHERE s.run_id = $run AND s.purpose = 'passages'""")
    return Counter(r["label"] for r in rows)


def test_a_cap_per_label_bounds_every_label_among_the_passages(nights):
    stats, q = nights["capped"]
    chosen = _passage_labels(q)
    assert sum(chosen.values()) == PASSAGES and max(chosen.values()) <= CAP
    # without the cap the largest label (the language reference, half the corpus) takes far more
    _, uniform_q = nights["uniform"]
    uniform = Counter(r["label"] for r in uniform_q("""
        SELECT c.label FROM pairs p JOIN corpus c ON c.run_id = p.run_id AND c.doc_id = p.doc_id
        WHERE p.run_id = $run AND p.split = 'train' GROUP BY c.doc_id, c.label"""))
    assert uniform["reference"] > CAP
    selection = stats["synthesize"]["selection"]
    assert selection["groups"][0]["group"] == "reference" and selection["groups"][0]["after"] <= CAP
    assert selection["groups_capped"] >= 1 and selection["chosen"] == PASSAGES
    # training pairs come from the selected passages only
    trained = {r["doc_id"] for r in q("SELECT DISTINCT doc_id FROM pairs WHERE run_id = $run AND kept AND split = 'train'")}
    selected = {r["doc_id"] for r in q("SELECT doc_id FROM selections WHERE run_id = $run")}
    assert trained and trained <= selected


def test_a_weight_at_a_low_temperature_takes_the_top_documents(nights):
    _, q = nights["weighted"]
    chosen = q("SELECT s.doc_id, s.weight FROM selections s WHERE s.run_id = $run ORDER BY rank")
    held = {r["doc_id"] for r in q("SELECT DISTINCT doc_id FROM pairs WHERE run_id = $run AND split = 'heldout'")}
    lengths = [r["n_chars"] for r in q("SELECT doc_id, n_chars FROM corpus WHERE run_id = $run ORDER BY n_chars DESC")
               if r["doc_id"] not in held]
    assert [r["weight"] for r in chosen] == [float(n) for n in lengths[: len(chosen)]]


def test_held_out_passages_are_the_same_with_or_without_a_selection(nights):
    held = {name: {r["doc_id"] for r in q("SELECT DISTINCT doc_id FROM pairs WHERE run_id = $run AND split = 'heldout'")}
            for name, (_, q) in nights.items()}
    assert held["uniform"] and held["uniform"] == held["capped"] == held["weighted"]
    _, q = nights["uniform"]
    assert q("SELECT count(*) AS n FROM selections")[0]["n"] == 0  # no selection, no rows


def test_the_report_shows_the_groups_before_and_after(nights):
    stats, _ = nights["capped"]
    report = open(stats["report"], encoding="utf-8").read()
    assert "Passage selection" in report
    top = stats["synthesize"]["selection"]["groups"][0]
    assert f"| {top['group']} | {top['before']} | {top['after']} |" in report
