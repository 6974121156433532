"""`refinery refilter --dataset`: a dataset re-decided under new thresholds from the attributes its
versions kept, published as a new version (what now fails retired with its reason, what now passes
back), and later nights still deduplicating against what came back.

Real nightly flows (curation only) and real refilters on the session's Prefect API and Dask
cluster, over titleless JSONL of real articles (the `Nights` helper of test_datasets.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import DataHome
from tests.flows.test_datasets import Nights, bodies, edit, write_jsonl

runner = CliRunner()
WORDS = "gopher_quality.word_count"
MAX_WORDS = "gopher_quality.max_word_count"


def thresholds(nights: Nights, name: str, **gopher_quality) -> Path:
    """A copy of the nights' config with other gopher_quality thresholds."""
    data = yaml.safe_load(nights.config.read_text())
    data["quality"] = {**data["quality"], "gopher_quality": gopher_quality}
    path = nights.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def opening(text: str, words: int = 60) -> str:
    """The first paragraphs of an article, up to about ``words`` words: a short text of whole sentences."""
    kept: list[str] = []
    for line in text.splitlines():
        kept.append(line)
        if len(" ".join(kept).split()) >= words:
            break
    return "\n".join(kept)


def refilter(nights: Nights, config: Path, dataset: str = "news") -> dict:
    from refinery.flows.refilter_dataset import refilter_dataset
    from refinery.tasks.config import load_config

    return refilter_dataset(dataset, load_config(config), nights.dask_address)


def versions(nights: Nights) -> list[dict]:
    return nights.query("SELECT version, docs_added, docs_retired, docs_total FROM dataset_versions"
                        " WHERE dataset = 'news' ORDER BY seq")


def ids(nights: Nights, sql: str = "SELECT record_id, doc_id FROM curated WHERE dataset = 'news'") -> dict[str, str]:
    return {r["record_id"]: r["doc_id"] for r in nights.query(sql)}


@pytest.fixture(scope="module")
def refiltered(tmp_path_factory, prefect_api, dask_address):
    """Two nights into one dataset over a drop folder; a refilter under a stricter max words (the
    longest curated documents fail); a refilter back under the nights' thresholds, whose first try
    is stopped just before it publishes and is run again; a refilter with nothing to change; then a
    night bringing copies of documents that came back."""
    root = tmp_path_factory.mktemp("refilter")
    nights = Nights(root, dask_address)
    write_jsonl(nights.folder / "monday.jsonl", [(f"m{i}", t) for i, t in enumerate(bodies("tech", 24))])
    one = nights.run()
    (nights.folder / "monday.jsonl").rename(root / "monday.archived")
    write_jsonl(nights.folder / "tuesday.jsonl", [(f"t{i}", t) for i, t in enumerate(bodies("sports", 24))])
    two = nights.run()
    (nights.folder / "tuesday.jsonl").rename(root / "tuesday.archived")
    before, texts = ids(nights), nights.curated()
    # the words each curated document was scored with, as the nights stored them
    words = {r["record_id"]: r["value"] for r in nights.query(
        "SELECT c.record_id, a.value FROM curated c JOIN doc_attributes a ON a.doc_id = c.doc_id"
        " AND a.run_id = c.added_in WHERE a.name = ?", [WORDS])}
    assert set(words) == set(before)
    cut = int(sorted(words.values())[len(words) * 2 // 3])  # about a third of the documents are longer
    longer = {k for k, w in words.items() if w > cut}
    strict = runner.invoke(app, ["refilter", "--dataset", "news", "--config",
                                 str(thresholds(nights, "strict", max_doc_words=cut)), "--dask-address", dask_address])
    after_strict = {"ids": ids(nights), "versions": versions(nights)}

    original = thresholds(nights, "original")  # the prose profile's, as the nights had
    from refinery.storage import Catalog

    class Stopped(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stopped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Catalog, "publish_refilter", stop)
        with pytest.raises(Stopped):
            refilter(nights, original)
    stopped = sorted(p.name for p in (DataHome(root / "home").dataset_dir("news") / "refilter").iterdir()
                     if p.name not in {v["version"] for v in after_strict["versions"]})
    back = refilter(nights, original)
    after_back = {"ids": ids(nights), "texts": nights.curated(), "versions": versions(nights)}
    # the command line names the dataset; the config names another (the command line wins)
    elsewhere = nights.root / "elsewhere.yaml"
    elsewhere.write_text(yaml.safe_dump({**yaml.safe_load(original.read_text()), "dataset": "elsewhere"}))
    again = runner.invoke(app, ["refilter", "--dataset", "news", "--config", str(elsewhere),
                                "--dask-address", dask_address])

    returned = sorted(longer)
    by_record = {**{f"m{i}": t for i, t in enumerate(bodies("tech", 24))},
                 **{f"t{i}": t for i, t in enumerate(bodies("sports", 24))}}
    write_jsonl(nights.folder / "wednesday.jsonl", [
        ("copy", by_record[returned[0]]), ("nearcopy", edit(by_record[returned[1]])),
        *((f"w{i}", t) for i, t in enumerate(bodies("politics", 6)))])
    three = nights.run()
    return {"nights": nights, "runs": [one, two, three], "before": before, "texts": texts, "longer": longer,
            "cut": cut, "strict": strict, "after_strict": after_strict, "stopped": stopped, "back": back,
            "after_back": after_back, "again": again, "returned": returned, "configs": (original,)}


def test_a_stricter_threshold_retires_the_documents_that_now_fail_with_its_reason(refiltered):
    nights, longer, before = refiltered["nights"], refiltered["longer"], refiltered["before"]
    strict = refiltered["strict"]
    assert strict.exit_code == 0, strict.output
    assert 0 < len(longer) < len(before)
    version = refiltered["after_strict"]["versions"][2]["version"]
    retired = {r["record_id"]: r["reason"] for r in nights.query(
        "SELECT d.record_id, r.reason FROM dataset_retired r JOIN dataset_documents d USING (dataset, doc_id, added_in)"
        " WHERE r.retired_in = ?", [version])}
    assert retired == {k: MAX_WORDS for k in longer}
    assert refiltered["after_strict"]["ids"] == {k: v for k, v in before.items() if k not in longer}
    one, two = (r["run_id"] for r in refiltered["runs"][:2])
    assert refiltered["after_strict"]["versions"][2] == {
        "version": version, "docs_added": 0, "docs_retired": len(longer), "docs_total": len(before) - len(longer)}
    # the summary: what was retired, by reason; what came back; the total
    assert f"│ {MAX_WORDS} │ {len(longer)} " in strict.output
    assert (f"dataset news: version {version} published: retired {len(longer)}, came back 0, "
            f"{len(before) - len(longer)} documents.") in strict.output
    # the refilter is a version of the dataset, not a run
    assert [v["version"] for v in refiltered["after_strict"]["versions"][:2]] == [one, two]
    assert nights.query("SELECT count(*) AS n FROM runs WHERE run_id = ?", [version]) == [{"n": 0}]


def test_earlier_versions_read_as_they_were(refiltered):
    nights, before = refiltered["nights"], refiltered["before"]
    one, two = (r["run_id"] for r in refiltered["runs"][:2])
    at_two = ids(nights, f"SELECT record_id, doc_id FROM curated_at('news', '{two}')")
    assert at_two == before
    at_one = ids(nights, f"SELECT record_id, doc_id FROM curated_at('news', '{one}')")
    assert at_one == {k: v for k, v in before.items() if k.startswith("m")}
    strict = refiltered["after_strict"]["versions"][2]["version"]
    at_strict = ids(nights, f"SELECT record_id, doc_id FROM curated_at('news', '{strict}')")
    assert at_strict == refiltered["after_strict"]["ids"]


def test_the_nights_thresholds_again_bring_back_the_same_documents(refiltered):
    nights, longer, back = refiltered["nights"], refiltered["longer"], refiltered["back"]
    assert refiltered["after_back"]["ids"] == refiltered["before"]  # the same doc ids ...
    assert refiltered["after_back"]["texts"] == refiltered["texts"]  # ... with the same texts
    added = {r["record_id"]: r["added_in"] for r in nights.query(
        "SELECT record_id, added_in FROM curated_at('news', ?)", [back["version"]])}
    assert {k for k, v in added.items() if v == back["version"]} == longer
    assert refiltered["after_back"]["versions"][3] == {
        "version": back["version"], "docs_added": len(longer), "docs_retired": 0,
        "docs_total": len(refiltered["before"])}


def test_a_stopped_refilter_run_again_publishes_the_version_it_started(refiltered):
    nights, back = refiltered["nights"], refiltered["back"]
    assert refiltered["stopped"] == [back["version"]]
    home = DataHome(nights.root / "home")
    published = {v["version"] for v in versions(nights)}
    # nothing of the stopped try is left beside what the versions list
    listed = {f for (files,) in [(r["files"] + r["index_files"],) for r in nights.query(
        "SELECT files, index_files FROM dataset_versions")] for f in files}
    on_disk = {str(p) for p in home.dataset_dir("news").rglob("*.parquet") if "/scored/" not in str(p)
               and "/refilter/" not in str(p)}
    assert on_disk == listed
    assert {p.name for p in (home.dataset_dir("news") / "refilter").iterdir()} <= published


def test_a_refilter_with_nothing_changed_publishes_nothing(refiltered):
    again = refiltered["again"]
    assert again.exit_code == 0, again.output
    assert "names dataset elsewhere; refiltering dataset news, as --dataset says" in again.output
    assert "no decision changed under these thresholds; no new version" in again.output
    assert f"({len(refiltered['before'])} documents)" in again.output
    nights = refiltered["nights"]
    three = refiltered["runs"][2]["run_id"]
    assert [v["version"] for v in versions(nights)] == [
        *(r["run_id"] for r in refiltered["runs"][:2]), refiltered["after_strict"]["versions"][2]["version"],
        refiltered["back"]["version"], three]


def test_a_night_after_the_refilter_dedups_against_the_documents_that_came_back(refiltered):
    nights, returned, before = refiltered["nights"], refiltered["returned"], refiltered["before"]
    three = refiltered["runs"][2]["run_id"]
    rows = nights.query("""
        SELECT d.record_id, x.reason, c.cluster_id, c.kind FROM drops x JOIN documents d USING (run_id, doc_id)
        JOIN dedup_clusters c USING (run_id, doc_id) WHERE x.run_id = ? AND x.stage = 'dedup'""", [three])
    assert {r["record_id"]: (r["reason"], r["cluster_id"], r["kind"]) for r in rows} == {
        "copy": ("dedup_exact", before[returned[0]], "exact_earlier_night"),
        "nearcopy": ("dedup_near", before[returned[1]], "near_earlier_night")}
    assert not {"copy", "nearcopy"} & set(nights.curated())


def test_the_refilter_summary_errors_and_the_config_check(refiltered):
    nights = refiltered["nights"]
    (original,) = refiltered["configs"]
    unknown = runner.invoke(app, ["refilter", "--dataset", "nope", "--config", str(original)])
    assert unknown.exit_code == 3
    assert unknown.output.strip().splitlines() == [f"no dataset nope under {nights.root / 'home'} (its datasets: news)"]
    both = runner.invoke(app, ["refilter", "r1", "--dataset", "news", "--config", str(original)])
    assert both.exit_code == 2 and "give a run id or --dataset NAME, not both" in both.output
    # other stop words score gopher_quality differently: the stored attributes cannot be reused
    rescored = thresholds(nights, "rescored", stop_words=["the", "be"])
    result = runner.invoke(app, ["refilter", "--dataset", "news", "--config", str(rescored)])
    assert result.exit_code == 3, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("these families compute different scores") and "gopher_quality" in line


def test_what_comes_back_is_the_latest_text_of_a_record_still_in_its_source_and_no_duplicate(
        tmp_path, prefect_api, dask_address):
    """Night 1 drops long documents (max 200 words); night 2 keeps them (no maximum) and changes
    the folder. Refiltered with no maximum, of night 1's long documents only the one whose record
    is as it was and that nothing in the dataset copies comes back."""
    nights = Nights(tmp_path, dask_address, mode="mirror")
    long = [t for t in bodies("business", 60) if len(t.split()) > 320]
    del long[2]  # mostly figures: it fails gopher_quality.min_alpha_words under any maximum
    long = long[:5]
    short = [t for t in map(opening, bodies("entertainment", 20)) if len(t.split()) < 140][:3]
    assert len(short) == 3
    assert len(long) == 5
    strict = thresholds(nights, "strict", max_doc_words=200)
    nights.config.write_text(strict.read_text())
    write_jsonl(nights.folder / "a.jsonl", [("a0", long[0]), ("a1", short[0]), ("a2", long[1])])
    write_jsonl(nights.folder / "c.jsonl", [("c0", long[2]), ("c1", short[1])])
    write_jsonl(nights.folder / "x.jsonl", [("x0", long[3])])
    write_jsonl(nights.folder / "y.jsonl", [("y0", long[4])])
    nights.run()
    assert nights.curated() == {"a1": short[0], "c1": short[1]}
    # night 2: no maximum; a0 edited (to a short text), a2 gone, c.jsonl removed (the folder is
    # mirrored), and a near copy of x0, which night 1 dropped, arrives and is kept
    original = thresholds(nights, "original")
    nights.config.write_text(original.read_text())
    write_jsonl(nights.folder / "a.jsonl", [("a0", short[2]), ("a1", short[0])])
    (nights.folder / "c.jsonl").unlink()
    write_jsonl(nights.folder / "b.jsonl", [("b0", edit(long[3]))])
    nights.run()
    before = nights.curated()
    assert before == {"a0": short[2], "a1": short[0], "b0": edit(long[3])}

    stats = refilter(nights, original)
    # a0's first text is not its text now; a2 left its file; c0 and c1 left with theirs; x0 is
    # copied by b0: only y0 comes back
    read = nights.query("SELECT text FROM documents WHERE record_id = 'y0'")  # as night 1 read it
    assert nights.curated() == {**before, "y0": read[0]["text"]}
    assert stats["returned"] == 1 and stats["retired_by_reason"] == {}
    assert stats["left_out_as_duplicates"] == {"dedup_near": 1}
