"""Weighted, capped selection in SQL: what a user relies on when choosing passages or a mixture.

Expectations come from the method's definition (Gumbel-top-k samples proportionally to
exp(weight / temperature); a cap bounds every group), not from the code: the one exact check
recomputes the keys with hashlib.
"""

from __future__ import annotations

import hashlib
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.storage.selection import NO_GROUP, draw_selection
from refinery.tasks.exceptions import ConfigError
from refinery.tasks.selection import SelectionConfig


def _corpus(tmp_path, rows: list[dict], *, shards: int = 3):
    """``rows`` as document shards (doc_id, label, source, text) and one attribute shard per
    document shard (doc_id, name, value) from each row's ``attrs``."""
    docs, attrs = [], []
    for i in range(shards):
        part = rows[i::shards]
        d = tmp_path / f"documents-{i:03d}.parquet"
        pq.write_table(pa.table({"doc_id": [r["doc_id"] for r in part], "label": [r.get("label") for r in part],
                                 "source": [r.get("source", "s") for r in part], "text": ["x" * 10] * len(part)}), d)
        long = [(r["doc_id"], k, float(v)) for r in part for k, v in r.get("attrs", {}).items()]
        a = tmp_path / f"attributes-{i:03d}.parquet"
        pq.write_table(pa.table({"doc_id": [x[0] for x in long], "name": [x[1] for x in long],
                                 "value": pa.array([x[2] for x in long], pa.float64())}), a)
        docs.append((str(d), f"night-{i % 2}"))
        attrs.append(str(a))
    return docs, attrs


def test_weight_sets_the_odds_as_logits_over_temperature(tmp_path):
    # 1,000 "good" documents with weight ln 4 and 1,000 "plain" with weight 0: a small sample takes
    # about 4 good for each plain one at temperature 1, and about 2:1 at temperature 2
    rows = [{"doc_id": f"g{i}", "attrs": {"q": math.log(4)}} for i in range(1000)]
    rows += [{"doc_id": f"p{i}", "attrs": {"q": 0.0}} for i in range(1000)]
    docs, attrs = _corpus(tmp_path, rows)
    for temperature, odds in ((1.0, 4.0), (2.0, 2.0)):
        good = []
        for seed in range(8):
            chosen = draw_selection(docs, attrs, 100, SelectionConfig(weight="q", temperature=temperature, seed=seed))
            ids = chosen["chosen"].column("doc_id").to_pylist()
            assert len(ids) == len(set(ids)) == 100
            good.append(sum(d.startswith("g") for d in ids))
        share = sum(good) / (8 * 100)
        assert share == pytest.approx(odds / (odds + 1), abs=0.04)


def test_a_low_temperature_takes_the_best_and_null_weights_come_last(tmp_path):
    rows = [{"doc_id": f"d{i:03d}", "attrs": {"classifier.score": i / 100}} for i in range(100)]
    rows += [{"doc_id": f"unscored{i}"} for i in range(5)]
    docs, attrs = _corpus(tmp_path, rows)
    drawn = draw_selection(docs, attrs, 10, SelectionConfig(weight="classifier.score", temperature=1e-4))
    assert drawn["chosen"].column("doc_id").to_pylist() == [f"d{i:03d}" for i in range(99, 89, -1)]
    assert drawn["candidates"] == 105 and drawn["unscored"] == 5
    everything = draw_selection(docs, attrs, 105, SelectionConfig(weight="classifier.score", temperature=1e-4))
    assert sorted(everything["chosen"].column("doc_id").to_pylist()[-5:]) == [f"unscored{i}" for i in range(5)]


def test_a_sql_expression_over_quoted_attributes_and_fields(tmp_path):
    rows = [{"doc_id": f"d{i}", "label": "a", "attrs": {"x.a": i, "x.b": 100 - i}} for i in range(50)]
    docs, attrs = _corpus(tmp_path, rows)
    # x.a - x.b = 2i - 100: at a low temperature the largest i first
    drawn = draw_selection(docs, attrs, 3, SelectionConfig(weight='"x.a" - "x.b"', temperature=1e-3))
    assert drawn["chosen"].column("doc_id").to_pylist() == ["d49", "d48", "d47"]


def test_the_cap_bounds_every_group_and_reports_before_and_after(tmp_path):
    rows = [{"doc_id": f"a{i}", "label": "big"} for i in range(900)]
    rows += [{"doc_id": f"b{i}", "label": "small"} for i in range(100)]
    rows += [{"doc_id": f"c{i}", "label": None} for i in range(10)]
    docs, attrs = _corpus(tmp_path, rows)
    drawn = draw_selection(docs, attrs, 70, SelectionConfig(cap_by="label", cap=30))
    labels = [d[0] for d in drawn["chosen"].column("doc_id").to_pylist()]
    assert (labels.count("a"), labels.count("b"), labels.count("c")) == (30, 30, 10)
    assert drawn["groups"] == [{"group": "big", "before": 900, "after": 30},
                               {"group": "small", "before": 100, "after": 30},
                               {"group": NO_GROUP, "before": 10, "after": 10}]
    assert (drawn["groups_total"], drawn["groups_capped"]) == (3, 2)
    # a corpus whose groups are all under the cap gives fewer than asked, never more than a cap
    assert len(draw_selection(docs, attrs, 500, SelectionConfig(cap_by="label", cap=30))["chosen"]) == 70


def test_a_cluster_attribute_groups_by_its_index(tmp_path):
    rows = [{"doc_id": f"d{i}", "attrs": {"semantic_cluster": i % 4}} for i in range(80)]
    docs, attrs = _corpus(tmp_path, rows)
    drawn = draw_selection(docs, attrs, 80, SelectionConfig(cap_by="semantic_cluster", cap=5))
    assert sorted(g["group"] for g in drawn["groups"]) == ["0", "1", "2", "3"]
    assert all(g["after"] == 5 for g in drawn["groups"]) and len(drawn["chosen"]) == 20


def test_the_draw_is_seeded_and_excludes_what_it_is_told(tmp_path):
    rows = [{"doc_id": f"d{i}", "label": "x"} for i in range(200)]
    docs, attrs = _corpus(tmp_path, rows)
    first = draw_selection(docs, attrs, 20, SelectionConfig(cap_by="label", cap=200, seed=7))
    again = draw_selection(docs, attrs, 20, SelectionConfig(cap_by="label", cap=200, seed=7))
    other = draw_selection(docs, attrs, 20, SelectionConfig(cap_by="label", cap=200, seed=8))
    ids = first["chosen"].column("doc_id").to_pylist()
    assert ids == again["chosen"].column("doc_id").to_pylist() != other["chosen"].column("doc_id").to_pylist()

    # uniform weights: the order is the Gumbel noise's, i.e. the hash's (recomputed here with hashlib)
    def u(doc_id):
        low = int.from_bytes(hashlib.md5(f"7\x1f{doc_id}".encode()).digest()[8:], "little")
        return (low + 0.5) / 2**64
    assert ids == sorted((f"d{i}" for i in range(200)), key=u, reverse=True)[:20]

    without = draw_selection(docs, attrs, 20, SelectionConfig(cap_by="label", cap=200, seed=7), exclude=ids[:5])
    assert not set(ids[:5]) & set(without["chosen"].column("doc_id").to_pylist())
    # a document retired from night-0's shards is left out there (shard i holds d{j} with j % 3 == i;
    # shards 0 and 2 are night-0's)
    retired = pa.table({"doc_id": ids[5:10], "added_in": ["night-0"] * 5})
    kept = draw_selection(docs, attrs, 200, SelectionConfig(cap_by="label", cap=200, seed=7), retired=retired)
    in_night_0 = [d for d in ids[5:10] if int(d[1:]) % 3 != 1]
    assert set(in_night_0).isdisjoint(kept["chosen"].column("doc_id").to_pylist())
    assert len(kept["chosen"]) == 200 - len(in_night_0)


def test_bad_weights_are_one_line_config_errors(tmp_path):
    docs, attrs = _corpus(tmp_path, [{"doc_id": "d1", "attrs": {"q": 1.0}}])
    with pytest.raises(ConfigError, match="no attribute 'missing'.*its attributes: q"):
        draw_selection(docs, attrs, 1, SelectionConfig(weight="missing"))
    with pytest.raises(ConfigError, match="not a SQL expression"):
        draw_selection(docs, attrs, 1, SelectionConfig(weight='"q" +* 2'))
    # the weight can compute, not read files
    with pytest.raises(ConfigError, match="not a SQL expression"):
        draw_selection(docs, attrs, 1, SelectionConfig(weight="(SELECT count(*) FROM read_text('/etc/passwd'))"))
    with pytest.raises(ValueError, match="cap and cap_by go together"):
        SelectionConfig(cap=3)
