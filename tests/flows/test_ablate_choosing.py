"""`refinery ablate --only choosing` with a data map: the cartography variant leaves out the pairs
the baseline's map put in hard_to_learn, and still every variant trains on as many pairs and
steps as the others (the issue's equal budgets): when those drops leave it fewer pairs than the
others', all of them train on what it has, the baseline again in a new run.

Real Prefect, the shared Dask cluster and a DuckDB file; titled BBC tech articles (headline task).
"""

from __future__ import annotations

import pytest
import yaml

from refinery.storage import Catalog
from tests.flows.test_ablate import ARTICLES, COPIES, write_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def choosing(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.ablate import ablate_flow

    root = tmp_path_factory.mktemp("ablate-choosing")
    config = {
        "home": str(root / "home"),
        "ingest": {"shard_size": 20, "sources": [{"path": str(write_corpus(root)), "name": "tech"}]},
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": ARTICLES + COPIES,
                       "consistency_top_k": ARTICLES + COPIES,
                       "selection": {"cap_by": "source", "cap": 1000}},  # a method that changes nothing
        # a map that finds hard pairs in a short training: confidence under 0.9, any variability
        "train": {"epochs": 1, "batch_size": 4, "max_seq_length": 32,
                  "cartography": {"drop_hard_to_learn": True, "pairs": 64, "candidates": 7,
                                  "hard_max_confidence": 0.9, "ambiguous_min_variability": 0.5}},
        "evaluate": {"max_seq_length": 64, "bootstrap_samples": 200, "max_queries": 20, "same_label": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = ablate_flow(config_path=str(path), only="choosing", dask_address=dask_address)
    return result, Catalog(root / "home" / "catalog.duckdb")


def test_the_cartography_variant_trains_on_the_same_pairs_and_steps_as_the_others(choosing):
    result, catalog = choosing
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"uniform", "balanced", "cartography"}
    # the pairs the baseline's first training mapped as hard: the cartography variant left them out
    maps = catalog.query("SELECT run_id, count(*) FILTER (WHERE region = 'hard_to_learn') AS hard, count(*) AS mapped "
                         "FROM pair_map GROUP BY run_id").to_pylist()
    assert len(maps) == 2  # the baseline's map and the cartography variant's own
    dropped = catalog.query("SELECT count(*) AS n FROM pair_drops WHERE run_id = ? AND reason = 'cartography'",
                            [rows["cartography"]["run_id"]]).to_pylist()[0]["n"]
    first = next(m for m in maps if m["run_id"] != rows["cartography"]["run_id"])
    assert 0 < dropped == first["hard"] < first["mapped"]
    # so it had fewer pairs than the others: all trained on what it had, in as many steps
    kept = catalog.query("SELECT count(*) AS n FROM pairs WHERE run_id = ? AND kept AND split = 'train'",
                         [rows["cartography"]["run_id"]]).to_pylist()[0]["n"]
    assert {r["pairs"] for r in rows.values()} == {kept - dropped}
    assert len({r["steps"] for r in rows.values()}) == 1
    # the baseline in the table is a second training of the mapped run's pairs, without a map
    assert rows["uniform"]["run_id"] != first["run_id"]
    pairs_of = lambda run: catalog.query("SELECT pair_id FROM pairs WHERE run_id = ? AND kept ORDER BY pair_id",  # noqa: E731
                                         [run]).column("pair_id").to_pylist()
    assert pairs_of(rows["uniform"]["run_id"]) == pairs_of(first["run_id"])
