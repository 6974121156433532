"""`refinery export` and `refinery datasets` on a dataset two real nights built (Prefect, Dask, DuckDB).

Night 1 reads a drop folder's `a.jsonl`: 30 BBC business articles (`a-0`..`a-29`). Night 2 finds
`a.jsonl` changed (`a-0` now holds a tech article: its night-1 document is retired, the new one
added) and a new `b.jsonl`: 20 entertainment articles, exact copies of three night-1 articles
(dropped against the dataset), a junk record quality drops and a line that is not JSON. So the
dataset holds 30 documents after night 1 and 30 - 1 + 1 + 20 = 50 after night 2: counts and ids
taken from what the test wrote, not from the code under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog
from refinery.tasks.ingest.readers import bbc_folder

runner = CliRunner()

COLUMNS = ["doc_id", "source", "location", "title", "text", "label", "n_chars", "record_id", "url", "domain",
           "fetched_at", "lang", "added_in"]
NIGHT1_IDS = {f"a-{i}" for i in range(30)}
NIGHT2_NEW_IDS = {f"b-{i}" for i in range(20)}
COPIES = 3
JUNK = "$$$ !!! ### @@@ click here $$$ " * 3


def bodies(category: str, n: int) -> list[str]:
    return [p.read_text(encoding="utf-8").partition("\n")[2].strip()
            for p in sorted((bbc_folder() / category).glob("*.txt"))[:n]]


def jsonl(path: Path, records: list[dict], extra_lines: tuple[str, ...] = ()) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(line + "\n" for line in extra_lines))


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("export")
    drop = root / "drop"
    drop.mkdir()
    business, tech, entertainment = bodies("business", 30), bodies("tech", 1), bodies("entertainment", 20)
    config = root / "nightly.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": "news", "stages": ["ingest", "dedup", "quality"],
        "ingest": {"sources": [{"path": str(drop), "name": "drop"}]},
        # below the default 0.8, which drops a few BBC business articles (their numbers are not words)
        "quality": {"gopher_quality": {"min_alpha_words_ratio": 0.5}}}))

    night1 = [{"id": f"a-{i}", "text": t} for i, t in enumerate(business)]
    jsonl(drop / "a.jsonl", night1)
    v1 = nightly(config_path=str(config), dask_address=dask_address)["run_id"]

    changed = [{"id": "a-0", "text": tech[0]}] + night1[1:]
    jsonl(drop / "a.jsonl", changed)
    new = [{"id": f"b-{i}", "text": t} for i, t in enumerate(entertainment)]
    copies = [{"id": f"copy-{i}", "text": business[i]} for i in range(1, 1 + COPIES)]
    jsonl(drop / "b.jsonl", new + copies + [{"id": "junk", "text": JUNK}], extra_lines=("{this is not json",))
    v2 = nightly(config_path=str(config), dask_address=dask_address)["run_id"]
    return {"root": root, "config": config, "catalog": Catalog(root / "home" / "catalog.duckdb"), "v1": v1, "v2": v2,
            "a0_then": business[0], "a0_now": tech[0]}


def export(nights, out: Path, *args: str):
    return runner.invoke(app, ["export", "--config", str(nights["config"]), "--dataset", "news", *args, str(out)])


def read_back(out: Path):
    """The export as a reader without Refinery sees it."""
    return pads.dataset(out / "data", format="parquet").to_table()


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_export_of_the_current_version_is_the_dataset(nights, tmp_path):
    out = tmp_path / "news"
    result = export(nights, out, "--rows-per-shard", "16")
    assert result.exit_code == 0, result.output

    table = read_back(out)
    assert table.schema.names == COLUMNS
    rows = {r["record_id"]: r for r in table.to_pylist()}
    assert table.num_rows == len(rows) == len(NIGHT1_IDS | NIGHT2_NEW_IDS) == 50
    assert set(rows) == NIGHT1_IDS | NIGHT2_NEW_IDS
    assert rows["a-0"]["text"][:200] == nights["a0_now"][:200] and rows["a-0"]["added_in"] == nights["v2"]
    assert {rows[f"a-{i}"]["added_in"] for i in range(1, 30)} == {nights["v1"]}
    assert {r["source"] for r in rows.values()} == {"drop"}

    curated = nights["catalog"].query("SELECT doc_id, added_in FROM curated WHERE dataset = 'news'").to_pylist()
    assert sorted((r["doc_id"], r["added_in"]) for r in rows.values()) == sorted((r["doc_id"], r["added_in"])
                                                                                for r in curated)
    # at most 16 rows a file, named as the Hugging Face Hub names shards; oldest night first
    files = sorted((out / "data").iterdir())
    assert [f.name for f in files] == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert [pq.read_metadata(f).num_rows for f in files] == [16, 16, 16, 2]
    added = table.column("added_in").to_pylist()
    assert added == sorted(added, key=[nights["v1"], nights["v2"]].index)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_export_of_an_earlier_version(nights, tmp_path):
    out = tmp_path / "news-night1"
    result = export(nights, out, "--version", nights["v1"])
    assert result.exit_code == 0, result.output

    rows = {r["record_id"]: r for r in read_back(out).to_pylist()}
    assert len(rows) == 30 and set(rows) == NIGHT1_IDS
    assert rows["a-0"]["text"][:200] == nights["a0_then"][:200]
    assert {r["added_in"] for r in rows.values()} == {nights["v1"]}
    then = nights["catalog"].query("SELECT doc_id FROM curated_at('news', ?)", [nights["v1"]]).column("doc_id")
    assert sorted(r["doc_id"] for r in rows.values()) == sorted(then.to_pylist())


def test_the_card_says_what_each_night_did_and_how_to_load(nights, tmp_path):
    out = tmp_path / "news"
    assert export(nights, out).exit_code == 0
    card = (out / "README.md").read_text()

    front = card.split("---\n")[1]
    assert yaml.safe_load(front) == {"configs": [{"config_name": "default",
                                                  "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]}
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    table = {cells(line)[1]: cells(line) for line in card.splitlines() if re.match(r"^\| \d+ \|", line)}
    # night | version | published at | records read | dropped | rejected | added | retired | documents
    assert table[nights["v1"]][0] == "1" and table[nights["v1"]][6:] == ["30", "0", "30"]
    assert table[nights["v2"]][0] == "2" and table[nights["v2"]][6:] == ["21", "1", "50"]
    assert table[nights["v2"]][5] == "1"  # the line that is not JSON

    left_out = {tuple(cells(line)[:2]): cells(line)[2] for line in card.splitlines()
                if line.startswith("| ") and len(cells(line)) == 4}
    assert left_out[("dedup", "dedup_exact")] == str(COPIES)
    assert left_out[("ingest", "invalid_json")] == "1"
    assert left_out[("retired", "source_changed")] == "1"
    assert sum(int(n) for (stage, _), n in left_out.items() if stage == "quality") == 1  # the junk record, once
    assert "**50 documents**" in card
    assert "- **dedup** (exact and near" in card and "threshold 0.8" in card
    assert re.search(r"`gopher_quality`: min_doc_words 50;.* min_alpha_words_ratio 0.5;", card)
    assert re.search(r"^\| drop \| .*drop \| auto \| append \| 2 \| 50 \|$", card, re.M)
    assert 'ds.dataset("news/data", format="parquet")' in card
    assert 'load_dataset("parquet", data_dir="news")' in card


def test_unknown_dataset_or_version_is_one_line_naming_what_exists(nights, tmp_path):
    result = runner.invoke(app, ["export", "--config", str(nights["config"]), "--dataset", "web", str(tmp_path / "o")])
    assert result.exit_code == 3
    assert one_line(result) == "unknown dataset 'web'; the datasets here are: news"

    result = export(nights, tmp_path / "o", "--version", "20200101-000000-0000")
    assert result.exit_code == 3
    line = one_line(result)
    assert line.startswith("dataset 'news' has no version '20200101-000000-0000'")
    assert line.endswith(f"{nights['v1']}, {nights['v2']}")
    assert not (tmp_path / "o").exists()


def test_a_non_empty_folder_is_replaced_only_with_force_and_only_if_an_export(nights, tmp_path):
    out = tmp_path / "news"
    assert export(nights, out, "--version", nights["v1"]).exit_code == 0
    first = {p.name: p.read_bytes() for p in (out / "data").iterdir()}

    result = export(nights, out)
    assert result.exit_code == 3 and "--force" in one_line(result)
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == first

    result = export(nights, out, "--force")
    assert result.exit_code == 0, result.output
    assert read_back(out).num_rows == 50
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    (out / "notes.txt").write_text("mine")
    result = export(nights, out, "--force")
    assert result.exit_code == 3 and "more than an earlier export" in one_line(result)
    assert (out / "notes.txt").read_text() == "mine" and read_back(out).num_rows == 50


def test_an_export_that_fails_leaves_the_folder_as_it_was(nights, tmp_path, monkeypatch):
    import refinery.storage.exports as exports

    out = tmp_path / "news"
    assert export(nights, out, "--version", nights["v1"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    write_shards = exports._write_shards

    def fail_after_writing(*args, **kwargs):
        write_shards(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(exports, "_write_shards", fail_after_writing)
    with pytest.raises(OSError, match="disk full"):
        nights["catalog"].export_dataset("news", out, force=True)
    with pytest.raises(OSError, match="disk full"):
        nights["catalog"].export_dataset("news", tmp_path / "new")
    assert {p.name: p.read_bytes() for p in (out / "data").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["news"]


def test_a_killed_exports_leftovers_are_swept(nights, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".news.export-{dead.pid}-0a1b2c3d"
    (stale / "data").mkdir(parents=True)
    assert export(nights, tmp_path / "news").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["news"]


def test_datasets_lists_datasets_and_versions(nights):
    result = runner.invoke(app, ["datasets", "--config", str(nights["config"]), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["dataset"], row["latest_version"], row["documents"], row["nights"]) == ("news", nights["v2"], 50, 2)

    result = runner.invoke(app, ["datasets", "news", "--config", str(nights["config"]), "--format", "json"])
    assert [(r["night"], r["version"], r["added"], r["retired"], r["documents"]) for r in json.loads(result.stdout)] \
        == [(1, nights["v1"], 30, 0, 30), (2, nights["v2"], 21, 1, 50)]

    result = runner.invoke(app, ["datasets", "news", "--config", str(nights["config"])])
    assert result.exit_code == 0 and nights["v2"] in result.stdout and "versions of dataset news" in result.stdout

    result = runner.invoke(app, ["datasets", "web", "--config", str(nights["config"])])
    assert result.exit_code == 3 and one_line(result) == "unknown dataset 'web'; the datasets here are: news"


def test_huggingface_datasets_loads_an_export(nights, tmp_path):
    import datasets  # in the locked dev set for this test

    out = tmp_path / "news"
    assert export(nights, out, "--rows-per-shard", "16").exit_code == 0
    loaded = datasets.load_dataset("parquet", data_dir=str(out))
    assert list(loaded) == ["train"] and loaded["train"].num_rows == 50
    assert sorted(loaded["train"]["record_id"]) == sorted(NIGHT1_IDS | NIGHT2_NEW_IDS)


def test_a_mixture_is_a_sample_drawn_by_weight_and_cap(nights, tmp_path):
    catalog = nights["catalog"]
    curated = catalog.query("SELECT doc_id, added_in, n_chars FROM curated WHERE dataset = 'news'").to_pylist()
    # at a tiny temperature the weight decides: the ten longest documents of the version
    out = tmp_path / "longest"
    result = export(nights, out, "--sample", "10", "--weight", "n_chars", "--temperature", "0.0001")
    assert result.exit_code == 0, result.output
    assert "10 documents (a sample of 50)" in result.output
    longest = sorted(curated, key=lambda r: -r["n_chars"])[:10]
    assert sorted(read_back(out).column("doc_id").to_pylist()) == sorted(r["doc_id"] for r in longest)
    card = (out / "README.md").read_text()
    assert "## A mixture" in card and "10 of 50 candidate documents" in card

    # a quality score as the weight: read from the scores each night kept with the dataset
    scores = catalog.query("""
        SELECT c.doc_id, a.value FROM curated c JOIN doc_attributes a ON a.run_id = c.added_in AND a.doc_id = c.doc_id
        WHERE c.dataset = 'news' AND a.name = 'gopher_quality.mean_word_length'""").to_pylist()
    assert len(scores) == 50
    out = tmp_path / "wordy"
    result = export(nights, out, "--sample", "5", "--weight", "gopher_quality.mean_word_length", "--temperature", "1e-6")
    assert result.exit_code == 0, result.output
    top = sorted(scores, key=lambda r: -r["value"])[:5]
    assert sorted(read_back(out).column("doc_id").to_pylist()) == sorted(r["doc_id"] for r in top)

    # a cap per source: one source here, so the cap is the size
    out = tmp_path / "capped"
    result = export(nights, out, "--sample", "40", "--cap-by", "source", "--cap", "7", "--seed", "2")
    assert result.exit_code == 0, result.output
    table = read_back(out)
    assert table.num_rows == 7 and set(table.column("doc_id").to_pylist()) <= {r["doc_id"] for r in curated}
    assert "| drop | 50 | 7 |" in (out / "README.md").read_text()


def test_a_mixture_needs_its_size_and_a_known_weight(nights, tmp_path):
    result = export(nights, tmp_path / "x", "--cap-by", "source", "--cap", "3")
    assert result.exit_code == 3 and "--sample" in one_line(result)
    result = export(nights, tmp_path / "y", "--sample", "3", "--weight", "no_such_score")
    assert result.exit_code == 2 and "no attribute 'no_such_score'" in one_line(result)
    assert not (tmp_path / "y").exists()
