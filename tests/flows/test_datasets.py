"""Datasets that grow night by night: each night reads only what is new, drops what duplicates the
dataset, and publishes a version; `curated` is the dataset now, `curated_at` an earlier version.

Real nightly flows (curation only) on the session's Prefect API and Dask cluster, several nights
into one data home, over titleless JSONL of real articles.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.storage import Catalog
from refinery.tasks.ingest.readers import bbc_folder

CURATION = ["ingest", "dedup", "quality"]


def bodies(category: str, n: int, start: int = 0) -> list[str]:
    files = sorted((bbc_folder() / category).glob("*.txt"))[start : start + n]
    assert len(files) == n, f"{category} has fewer than {start + n} articles"
    return [p.read_text(encoding="utf-8").partition("\n")[2].strip() for p in files]


def write_jsonl(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in records))
    return path


def edit(text: str) -> str:
    """A near copy: one word in ~60 changed (still far above the 0.8 Jaccard threshold)."""
    words = text.split()
    return " ".join("zebra" if k % 60 == 30 else w for k, w in enumerate(words))


def write_numbered(path: Path, texts: list[str]) -> Path:
    """A file that numbers its records' ids from 0, as `split` or a per-shard export makes them."""
    return write_jsonl(path, [(str(i), t) for i, t in enumerate(texts)])


class Nights:
    """One data home, one config, nights run one after another."""

    def __init__(self, root: Path, dask_address: str, *, dataset: str = "news", mode: str = "append",
                 folder: Path | None = None, id_scope: str = "source"):
        self.root, self.dask_address = root, dask_address
        self.folder = folder or root / "drop"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = root / f"{dataset}.yaml"
        self.config.write_text(yaml.safe_dump({
            "home": str(root / "home"), "dataset": dataset, "stages": CURATION,
            "ingest": {"sources": [{"path": str(self.folder), "name": "drop", "mode": mode, "id_scope": id_scope}]},
            "quality": {"profile": "prose"}}))
        self.catalog = Catalog(root / "home" / "catalog.duckdb")

    def run(self) -> dict:
        from refinery.flows.nightly import nightly

        return nightly(config_path=str(self.config), dask_address=self.dask_address)

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        return self.catalog.query(sql, params).to_pylist()

    def curated(self, dataset: str = "news") -> dict[str, str]:
        """record id -> text of the dataset's current documents."""
        return {r["record_id"]: r["text"] for r in self.query("SELECT record_id, text FROM curated WHERE dataset = ?",
                                                               [dataset])}


@pytest.fixture(scope="module")
def drop_folder(tmp_path_factory, prefect_api, dask_address):
    """Three nights over a drop folder whose files are archived after each night: night 2 brings new
    articles plus exact and near copies of night 1's; night 3 brings nothing."""
    root = tmp_path_factory.mktemp("drop")
    nights = Nights(root, dask_address)
    first = bodies("tech", 40)
    write_jsonl(nights.folder / "monday.jsonl", [(f"m{i}", t) for i, t in enumerate(first)])
    one = nights.run()
    (nights.folder / "monday.jsonl").rename(root / "monday.archived")
    kept_first = nights.curated()
    originals = sorted(kept_first)[:10]
    by_id = {f"m{i}": t for i, t in enumerate(first)}
    records = [(f"t{i}", t) for i, t in enumerate(bodies("sports", 30))]
    records += [(f"exact-{r}", by_id[r]) for r in originals[:5]]
    records += [(f"near-{r}", edit(by_id[r])) for r in originals[5:]]
    write_jsonl(nights.folder / "tuesday.jsonl", records)
    two = nights.run()
    three = nights.run()
    return {"nights": nights, "runs": [one, two, three], "kept_first": kept_first, "originals": originals}


def test_a_night_drops_what_copies_an_earlier_night_and_names_the_curated_document(drop_folder):
    nights, originals = drop_folder["nights"], drop_folder["originals"]
    two = drop_folder["runs"][1]["run_id"]
    rows = nights.query("""
        SELECT d.record_id, x.reason, c.cluster_id, c.kind, s.record_id AS survivor
        FROM drops x JOIN documents d USING (run_id, doc_id)
        JOIN dedup_clusters c USING (run_id, doc_id)
        JOIN curated s ON s.doc_id = c.cluster_id
        WHERE x.run_id = ? AND x.stage = 'dedup'""", [two])
    got = {r["record_id"]: (r["reason"], r["kind"], r["survivor"]) for r in rows
           if r["record_id"].startswith(("exact-", "near-"))}
    want = {f"exact-{r}": ("dedup_exact", "exact_earlier_night", r) for r in originals[:5]}
    want |= {f"near-{r}": ("dedup_near", "near_earlier_night", r) for r in originals[5:]}
    assert got == want
    # the copies are not in the dataset; what night 1 kept still is, with night 1 as its origin
    current = nights.curated()
    assert not any(k.startswith(("exact-", "near-")) for k in current)
    assert set(drop_folder["kept_first"]) <= set(current)
    added = {r["record_id"]: r["added_in"] for r in nights.query("SELECT record_id, added_in FROM curated")}
    assert {added[k] for k in drop_folder["kept_first"]} == {drop_folder["runs"][0]["run_id"]}


def test_versions_count_each_night_and_an_earlier_version_can_be_read(drop_folder):
    nights = drop_folder["nights"]
    one, two, three = (r["run_id"] for r in drop_folder["runs"])
    versions = nights.query("SELECT version, docs_added, docs_retired, docs_total FROM dataset_versions"
                            " WHERE dataset = 'news' ORDER BY seq")
    assert [v["version"] for v in versions] == [one, two]  # night 3 read nothing new: no version
    assert versions[0]["docs_total"] == len(drop_folder["kept_first"])
    assert versions[1]["docs_total"] == versions[0]["docs_total"] + versions[1]["docs_added"]
    assert versions[1]["docs_total"] == len(nights.curated())
    earlier = nights.query("SELECT record_id FROM curated_at('news', ?)", [one])
    assert sorted(r["record_id"] for r in earlier) == sorted(drop_folder["kept_first"])
    # night 2 kept articles it did not copy: the 30 new ones, less what quality dropped of them
    new = {k for k in nights.curated() if k.startswith("t")}
    assert versions[1]["docs_added"] == len(new) > 20
    report = (Path(drop_folder["runs"][1]["run_dir"]) / "report.md").read_text()
    assert (f"Version `{two}` of dataset **news**: {len(new)} documents added, 0 retired, "
            f"{versions[1]['docs_total']} in the dataset. Input files: 1 new, 1 removed.") in report


def test_a_night_with_nothing_new_reads_nothing_and_publishes_nothing(drop_folder):
    nights = drop_folder["nights"]
    three = drop_folder["runs"][2]
    assert three["publish"]["published"] is False
    run = nights.query("SELECT docs_in, status FROM runs WHERE run_id = ?", [three["run_id"]])[0]
    assert run == {"docs_in": 0, "status": "completed"}
    books = nights.query("SELECT path, records_read, status FROM file_books WHERE run_id = ?", [three["run_id"]])
    assert books == [{"path": "tuesday.jsonl", "records_read": 0, "status": "unchanged"}]
    report = (Path(three["run_dir"]) / "report.md").read_text()
    assert "No new version of dataset **news**: nothing new in the sources. Input files: 1 unchanged." in report


def test_a_kept_folder_changed_file_grown_file_and_mirror_removal(tmp_path, prefect_api, dask_address):
    nights = Nights(tmp_path, dask_address, mode="mirror")
    texts = bodies("business", 36)
    write_jsonl(nights.folder / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(texts[:12])])
    write_jsonl(nights.folder / "b.jsonl", [(f"b{i}", t) for i, t in enumerate(texts[12:24])])
    write_jsonl(nights.folder / "c.jsonl", [(f"c{i}", t) for i, t in enumerate(texts[24:30])])
    nights.run()
    before = nights.curated()
    in_a = sorted((k for k in before if k.startswith("a")), key=lambda k: int(k[1:]))
    edited, gone = in_a[0], in_a[1]
    assert len(in_a) >= 8 and any(k.startswith("b") for k in before) and any(k.startswith("c") for k in before)
    # a.jsonl: one record edited (another article's text), one gone, the rest as they were;
    # b.jsonl: two records appended; c.jsonl: removed (the folder is mirrored)
    records = [(f"a{i}", texts[30] if f"a{i}" == edited else t) for i, t in enumerate(texts[:12]) if f"a{i}" != gone]
    write_jsonl(nights.folder / "a.jsonl", records)
    with (nights.folder / "b.jsonl").open("a") as fh:
        fh.write("".join(json.dumps({"id": f"b{i}", "text": texts[19 + i]}) + "\n" for i in range(12, 14)))
    (nights.folder / "c.jsonl").unlink()
    night = nights.run()
    run_id = night["run_id"]
    books = {r["path"]: (r["status"], r["records_read"]) for r in nights.query(
        "SELECT path, status, records_read FROM file_books WHERE run_id = ?", [run_id])}
    assert books == {"a.jsonl": ("changed", 11), "b.jsonl": ("grown", 2)}
    # only the grown file's tail was read, its lines numbered as in the whole file
    locations = sorted(r["location"] for r in nights.query(
        "SELECT location FROM documents WHERE run_id = ? AND location LIKE 'b.jsonl%'", [run_id]))
    assert locations == ["b.jsonl:13", "b.jsonl:14"]
    after = nights.curated()
    assert after[edited] == texts[30]  # the edited record replaced its old document
    assert gone not in after and not any(k.startswith("c") for k in after)
    same = [k for k in before if k.startswith(("a", "b")) and k not in (edited, gone)]
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    retired = {r["record_id"]: r["reason"] for r in nights.query(
        "SELECT d.record_id, r.reason FROM dataset_retired r JOIN dataset_documents d USING (dataset, doc_id, added_in)"
        " WHERE r.retired_in = ?", [run_id])}
    assert retired == {edited: "source_changed", gone: "source_changed",
                       **{k: "source_removed" for k in before if k.startswith("c")}}
    unchanged = nights.query("SELECT count(*) AS n FROM drops WHERE run_id = ? AND reason = 'dataset_unchanged'",
                             [run_id])[0]["n"]
    assert unchanged == len(in_a) - 2  # a.jsonl's curated records that did not change: read and skipped
    # the books still balance per night, and over the dataset
    version = nights.query("SELECT docs_added, docs_retired, docs_total FROM dataset_versions ORDER BY seq")
    assert version[1]["docs_total"] == version[0]["docs_total"] + version[1]["docs_added"] - version[1]["docs_retired"]
    assert version[1]["docs_total"] == len(after)


def test_append_mode_keeps_the_documents_of_a_file_that_disappears(tmp_path, prefect_api, dask_address):
    nights = Nights(tmp_path, dask_address, mode="append")
    write_jsonl(nights.folder / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(bodies("politics", 8))])
    nights.run()
    before = nights.curated()
    (nights.folder / "a.jsonl").unlink()
    write_jsonl(nights.folder / "b.jsonl", [(f"b{i}", t) for i, t in enumerate(bodies("politics", 4, start=8))])
    nights.run()
    after = nights.curated()
    assert set(before) < set(after) and {k for k in after if k.startswith("b")}
    # the dataset outlives the runs that published it: gc deletes every run's folder and rows
    from refinery.storage import DataHome
    from refinery.tasks.runs import collect_garbage

    home = DataHome(tmp_path / "home")
    assert len(collect_garbage(home, keep=0).deleted) == 2 and not list((home.root / "runs").iterdir())
    assert nights.curated() == after


def test_two_datasets_in_one_home_are_kept_apart(tmp_path, prefect_api, dask_address):
    folder = tmp_path / "shared"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(bodies("entertainment", 10))])
    first = Nights(tmp_path, dask_address, dataset="first", folder=folder)
    second = Nights(tmp_path, dask_address, dataset="second", folder=folder)
    first.run()
    second.run()  # the same files: new to this dataset, and nothing in it to duplicate
    assert first.curated("first") == second.curated("second") and len(first.curated("first")) >= 8
    assert {r["dataset"] for r in first.query("SELECT DISTINCT dataset FROM curated")} == {"first", "second"}


def test_a_reader_of_curated_sees_the_previous_version_until_the_night_publishes(tmp_path, prefect_api, dask_address):
    from prefect_dask import DaskTaskRunner

    from refinery.flows.dedup import dedup_flow
    from refinery.flows.ingest import ingest_flow
    from refinery.flows.nightly import prepare_run
    from refinery.flows.publish import publish_flow
    from refinery.flows.quality import quality_flow
    from refinery.tasks.config import load_config

    nights = Nights(tmp_path, dask_address)
    write_jsonl(nights.folder / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(bodies("tech", 10))])
    nights.run()
    before = nights.curated()
    write_jsonl(nights.folder / "b.jsonl", [(f"b{i}", t) for i, t in enumerate(bodies("tech", 10, start=10))])
    run = prepare_run(load_config(nights.config))
    runner = DaskTaskRunner(address=dask_address)
    ingest = ingest_flow.with_options(task_runner=runner)(run)
    dedup = dedup_flow.with_options(task_runner=runner)(run, ingest)
    quality = quality_flow.with_options(task_runner=runner)(run, ingest, dedup)
    assert nights.curated() == before  # mid-night: the night's documents are scored, not published
    publish_flow.with_options(task_runner=runner)(run, ingest, dedup, quality)
    assert set(nights.curated()) > set(before)


def test_another_dedup_config_is_an_error_until_the_index_is_rebuilt_and_then_copies_are_still_caught(
        tmp_path, prefect_api, dask_address):
    from refinery.flows.reindex import reindex_dataset
    from refinery.tasks.config import load_config
    from refinery.tasks.exceptions import ConfigError

    nights = Nights(tmp_path, dask_address)
    texts = bodies("tech", 8)
    write_jsonl(nights.folder / "a.jsonl", [(f"a{i}", t) for i, t in enumerate(texts[:6])])
    nights.run()
    first = sorted(nights.curated())
    data = yaml.safe_load(nights.config.read_text())
    data["dedup"] = {"num_perm": 64}
    nights.config.write_text(yaml.safe_dump(data))
    by_id = {f"a{i}": t for i, t in enumerate(texts[:6])}
    write_jsonl(nights.folder / "b.jsonl", [("b0", texts[6]), ("b1", texts[7]), ("copy", by_id[first[0]]),
                                           ("near", edit(by_id[first[1]]))])
    with pytest.raises(ConfigError, match="refinery dataset reindex news"):
        nights.run()
    stats = reindex_dataset("news", load_config(nights.config), dask_address)
    assert stats["files"] >= 1
    night = nights.run()
    reasons = {r["record_id"]: (r["reason"], r["survivor"]) for r in nights.query(
        "SELECT d.record_id, x.reason, s.record_id AS survivor FROM drops x JOIN documents d USING (run_id, doc_id)"
        " JOIN dedup_clusters c USING (run_id, doc_id) JOIN curated s ON s.doc_id = c.cluster_id"
        " WHERE x.run_id = ?", [night["run_id"]])}
    assert reasons == {"copy": ("dedup_exact", first[0]), "near": ("dedup_near", first[1])}
    (settings,) = {r["dedup"] for r in nights.query("SELECT dedup FROM dataset_versions")}
    assert '"num_perm": 64' in settings


@pytest.mark.parametrize("scope", ["source", "file"])
def test_nightly_files_that_number_their_ids_from_0_replace_each_other_unless_ids_are_scoped_per_file(
        scope, tmp_path, prefect_api, dask_address):
    nights = Nights(tmp_path, dask_address, id_scope=scope)
    monday, tuesday = bodies("politics", 10), bodies("politics", 10, start=10)
    write_numbered(nights.folder / "monday.jsonl", monday)
    nights.run()
    curated_texts = lambda: [r["text"] for r in nights.query("SELECT text FROM curated")]  # noqa: E731
    first = set(curated_texts())
    write_numbered(nights.folder / "tuesday.jsonl", tuesday)
    night = nights.run()
    texts = set(curated_texts())
    assert len(texts) == len(curated_texts())
    second = texts - first
    assert len(first) >= 8 and len(second) >= 8
    warnings = night["publish"]["id_reuse"]
    if scope == "source":  # Tuesday's record 3 is Monday's record 3 changed: it replaces it, and the night says so
        assert not texts & first
        (warning,) = warnings
        assert warning["docs"] == len(first) and "set ingest.sources[0].id_scope: file" in warning["message"]
        assert "ingest.sources[0].id_scope: file" in (Path(night["run_dir"]) / "report.md").read_text()
    else:
        assert texts == first | second and warnings == []
