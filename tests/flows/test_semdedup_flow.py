"""Semantic dedup in a real night (ingest, dedup, quality): a hand-written paraphrase of a document,
which MinHash does not catch, is dropped as ``semdedup`` with the kept document named in SQL;
unrelated documents stay, the books balance, and with it off nothing is dropped as semdedup. A
refilter decides again over its own corpus: when the kept document falls to a rule, its
paraphrase is kept instead of being lost with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refinery.flows.quality import refilter_run
from refinery.storage import read_shards
from refinery.storage import StageMarker
from refinery.tasks.config import load_config, parse_config
from refinery.tasks.ingest.readers import bbc_folder
from refinery.tasks.runs import RunSpec

# Two stories, each with a paraphrase written for this test: 5-gram Jaccard 0.0 and 0.06 (MinHash
# keeps both), cosine ~0.90 and ~0.93 under all-MiniLM-L6-v2, ~0.1 across the stories and below
# 0.65 to the BBC articles.
PARAPHRASES = {
    "council": (
        "The city council approved a new budget on Tuesday that raises spending on buses and trams by a fifth. "
        "Council leaders said the extra money would pay for longer evening services and for new routes to the "
        "growing estates on the edge of town. Opposition members argued that the plan relies on fares rising "
        "next spring. They also warned that the council has not said how it will cover the cost if fewer people "
        "travel. The budget passed by twelve votes to nine after a debate that lasted more than four hours, and "
        "the first of the new routes is expected to start running in the autumn.",
        "On Tuesday councillors voted through a budget that lifts the money spent on the town's trams and buses by "
        "twenty per cent. According to the leaders of the council, the additional funds will cover later services "
        "in the evening as well as fresh routes serving the new housing estates at the edge of the town. Members of "
        "the opposition said the scheme depends on higher fares from next spring. They cautioned that nobody has "
        "explained how the gap would be filled if passenger numbers fall. After a debate of over four hours the "
        "budget was approved by twelve votes to nine, with the first new route due to open in the autumn."),
    "final": (
        "The home side came from two goals down to win the cup final by three goals to two on Saturday afternoon "
        "in front of a full stadium. "
        "The visitors had looked in control after scoring twice in the first half. However, the manager changed "
        "his team at half time and the gamble paid off within ten minutes of the restart. The winning goal came in "
        "the last minute of normal time, when the young striker headed in a corner at the far post. The captain "
        "said afterwards that it was the proudest day of his career and thanked the supporters who had travelled "
        "across the country to watch the final.",
        "Two goals behind, the home team fought back to win Saturday afternoon's cup final by three goals to two. "
        "The visiting side had seemed in control after they scored two goals in the first half. But the manager "
        "made changes to his team at half time, and the gamble was rewarded within ten minutes of the second half "
        "starting. In the final minute of normal time the young striker headed a corner in at the far post to win "
        "it. Afterwards the captain said it was the proudest day of his career, and he thanked the fans who had "
        "travelled across the country to watch the cup final."),
}
# Word counts: council 107 and 113, final 110 and 109, so a word-count bound that drops either
# council story (108 minimum or 112 maximum) leaves both final stories to the refilter.
ARTICLES = 4  # unrelated BBC articles from each of two categories
# cosine > 0.85 is a duplicate: both paraphrases, with margin on either side
EPSILON = 0.15


def night(root: Path, name: str, semdedup: dict, dask_address: str) -> RunSpec:
    from refinery.flows.nightly import nightly

    records = [{"id": f"{story}-{i}", "text": text} for story, pair in PARAPHRASES.items() for i, text in enumerate(pair)]
    for category in ("business", "tech"):
        for i, path in enumerate(sorted((bbc_folder() / category).glob("*.txt"))[:ARTICLES]):
            records.append({"id": f"{category}-{i}", "text": path.read_text(encoding="utf-8").partition("\n")[2]})
    data = root / "corpus.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / name), "stages": ["ingest", "dedup", "quality"],
        "ingest": {"shard_size": 5, "sources": [{"path": str(data), "name": "mixed"}]},
        "quality": {"semdedup": semdedup},
        "evaluate": {"encoder": "torch"},  # no ONNX export in a test
    }))
    stats = nightly(config_path=str(config), dask_address=dask_address)
    return RunSpec(run_id=stats["run_id"], home=str(root / name), config=load_config(config))


@pytest.fixture(scope="module")
def nights(tmp_path_factory, prefect_api, dask_address):
    root = tmp_path_factory.mktemp("semdedup")
    return {"on": night(root, "on", {"enabled": True, "epsilon": EPSILON}, dask_address),
            "off": night(root, "off", {"enabled": False, "epsilon": EPSILON}, dask_address)}


def record_ids(run: RunSpec) -> dict[str, str]:
    return {r["doc_id"]: r["record_id"] for r in run.catalog.query(
        "SELECT doc_id, record_id FROM documents WHERE run_id = ?", [run.run_id]).to_pylist()}


def drops(run: RunSpec) -> dict[str, str]:
    names = record_ids(run)
    return {names[r["doc_id"]]: r["reason"] for r in run.catalog.query(
        "SELECT doc_id, reason FROM drops WHERE run_id = ?", [run.run_id]).to_pylist()}


def semantic_clusters(run: RunSpec) -> list[tuple[str, str, bool]]:
    names = record_ids(run)
    return sorted((names[r["cluster_id"]], names[r["doc_id"]], r["is_survivor"]) for r in run.catalog.query(
        "SELECT cluster_id, doc_id, is_survivor FROM dedup_clusters WHERE run_id = ? AND kind = 'semantic'",
        [run.run_id]).to_pylist())


def kept(run: RunSpec, stats: dict) -> set[str]:
    names = record_ids(run)
    return {names[d] for d in read_shards(stats["corpus_shards"], ["doc_id"]).column("doc_id").to_pylist()}


def quality_stats(run: RunSpec) -> dict:
    return StageMarker(run.stage_dir("quality")).read()


def test_a_paraphrase_is_dropped_and_filed_under_the_kept_document(nights):
    run = nights["on"]
    semdedup = {record for record, reason in drops(run).items() if reason == "semdedup"}
    # exactly one of each pair goes; MinHash (dedup) dropped neither
    assert len(semdedup) == 2 and all(len(semdedup & {f"{s}-0", f"{s}-1"}) == 1 for s in PARAPHRASES)
    assert not [r for r, reason in drops(run).items() if reason.startswith("dedup")]
    survivors = {f"{s}-{1 - int(d[-1])}" for d in semdedup for s in PARAPHRASES if d.startswith(s)}
    assert semantic_clusters(run) == sorted(
        [(k, k, True) for k in survivors] + [(k, d, False) for d in semdedup for k in survivors if k[:-1] == d[:-1]])
    stats = quality_stats(run)
    assert kept(run, stats) == set(record_ids(run).values()) - set(drops(run))
    # the unrelated articles: none is a semantic duplicate (a rule may drop one)
    assert {f"{c}-{i}" for c in ("business", "tech") for i in range(ARTICLES)} - kept(run, stats) == {
        r for r, reason in drops(run).items() if not r.startswith(tuple(PARAPHRASES)) and reason != "semdedup"}
    assert stats["drops_by_reason"]["semdedup"] == 2 and stats["semdedup_dropped"] == 2
    (books,) = run.catalog.query("SELECT docs_in, docs_kept, docs_dropped FROM runs WHERE run_id = ?",
                                 [run.run_id]).to_pylist()
    assert books == {"docs_in": 12, "docs_kept": 12 - len(drops(run)), "docs_dropped": len(drops(run))}
    report = (run.run_dir / "report.md").read_text()
    assert "## Semantic dedup" in report and "dropped **2** of the documents" in report
    assert "## Semantic dedup" not in (nights["off"].run_dir / "report.md").read_text()
    clusters = run.catalog.query("SELECT DISTINCT value FROM doc_attributes WHERE run_id = ? AND name = "
                                 "'semantic_cluster'", [run.run_id]).column("value").to_pylist()
    assert clusters == [0.0]  # 12 documents: one cluster
    (n,) = run.catalog.query("SELECT count(*) AS n FROM doc_attributes WHERE run_id = ? AND name = "
                             "'semdedup_max_cosine'", [run.run_id]).column("n").to_pylist()
    assert n == len(kept(run, stats)) + 2


def test_off_drops_nothing_as_semdedup(nights):
    assert "semdedup" not in drops(nights["off"]).values()
    assert {r: x for r, x in drops(nights["on"]).items() if x != "semdedup"} == drops(nights["off"])
    assert semantic_clusters(nights["off"]) == []
    assert not nights["off"].catalog.query("SELECT 1 FROM doc_attributes WHERE name = 'semantic_cluster' AND "
                                           "run_id = ?", [nights["off"].run_id]).num_rows


def test_a_refilter_decides_semdedup_again_over_its_corpus(nights, dask_address):
    run = nights["on"]
    dropped = {r for r, reason in drops(run).items() if reason == "semdedup"}
    survivor = next(k for k, _, is_survivor in semantic_clusters(run) if is_survivor and k.startswith("council"))
    paraphrase = next(d for d in dropped if d.startswith("council"))
    words = {record_ids(run)[r["doc_id"]]: r["value"] for r in run.catalog.query(
        "SELECT doc_id, value FROM doc_attributes WHERE run_id = ? AND name = 'gopher_quality.word_count'",
        [run.run_id]).to_pylist()}
    # a word-count threshold that the kept council story fails and its paraphrase passes
    bound = ({"min_doc_words": int(words[survivor]) + 1} if words[survivor] < words[paraphrase]
             else {"max_doc_words": int(words[survivor]) - 1})
    data = run.config.model_dump(mode="json")
    data["quality"]["gopher_quality"].update(bound)
    stats = refilter_run(run.run_id, parse_config(data, "a test's refilter"), dask_address=dask_address)
    after = drops(run)
    assert after[survivor].startswith("gopher_quality.")
    assert paraphrase not in after and paraphrase in kept(run, stats)
    assert [r for r, x in after.items() if x == "semdedup"] == [d for d in dropped if d.startswith("final")]
    assert stats["books"]["docs_kept"] + stats["books"]["docs_dropped"] == 12


def test_a_dataset_refilter_refuses_semdedup_it_cannot_run(tmp_path):
    from refinery.flows.refilter_dataset import refilter_sources
    from refinery.storage import DataHome
    from refinery.tasks.exceptions import ConfigError

    config = parse_config({"home": str(tmp_path), "quality": {"semdedup": {"enabled": True}}}, "a test")
    with pytest.raises(ConfigError, match="quality.semdedup.enabled: false"):
        refilter_sources(DataHome.resolve(config.home, config.catalog), "news", config)


def dataset_night(root: Path, records: list[dict], night_no: int, semdedup: dict, dask_address: str) -> RunSpec:
    """One night of a dataset whose source is a drop folder: tonight's records arrive as a new file."""
    from refinery.flows.nightly import nightly

    (root / "drop").mkdir(exist_ok=True)
    (root / "drop" / f"night-{night_no}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = root / f"night-{night_no}.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": "notes", "stages": ["ingest", "dedup", "quality"],
        "ingest": {"shard_size": 5, "sources": [{"path": str(root / "drop"), "name": "notes"}]},
        "quality": {"semdedup": semdedup}, "evaluate": {"encoder": "torch"}}))
    stats = nightly(config_path=str(config), dask_address=dask_address)
    return RunSpec(run_id=stats["run_id"], home=str(root / "home"), config=load_config(config))


def articles(category: str) -> list[dict]:
    return [{"id": f"{category}-{i}", "text": path.read_text(encoding="utf-8").partition("\n")[2]}
            for i, path in enumerate(sorted((bbc_folder() / category).glob("*.txt"))[:ARTICLES])]


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, prefect_api, dask_address):
    """Night 1 brings one story of each pair, night 2 (a new file) its paraphrase."""
    root = tmp_path_factory.mktemp("semdedup-nights")
    semdedup = {"enabled": True, "epsilon": EPSILON, "clusters": 2}
    first = dataset_night(root, [{"id": f"{s}-0", "text": pair[0]} for s, pair in PARAPHRASES.items()]
                          + articles("business"), 1, semdedup, dask_address)
    second = dataset_night(root, [{"id": f"{s}-1", "text": pair[1]} for s, pair in PARAPHRASES.items()]
                           + articles("tech"), 2, semdedup, dask_address)
    return root, first, second


def test_a_later_night_drops_a_paraphrase_of_a_document_an_earlier_night_kept(two_nights):
    _, first, second = two_nights
    assert "semdedup" not in drops(first).values()
    assert {r for r, reason in drops(second).items() if reason == "semdedup"} == {f"{s}-1" for s in PARAPHRASES}
    # filed under the earlier night's document, which stays in the dataset
    names = record_ids(first) | record_ids(second)
    rows = sorted((names[r["cluster_id"]], names[r["doc_id"]], r["is_survivor"]) for r in second.catalog.query(
        "SELECT cluster_id, doc_id, is_survivor FROM dedup_clusters WHERE run_id = ? AND kind = 'semantic'",
        [second.run_id]).to_pylist())
    assert rows == sorted([(f"{s}-0", f"{s}-0", True) for s in PARAPHRASES]
                          + [(f"{s}-0", f"{s}-1", False) for s in PARAPHRASES])
    curated = {names[d] for d in second.catalog.query("SELECT doc_id FROM curated WHERE dataset = 'notes'")
               .column("doc_id").to_pylist()}
    assert {f"{s}-0" for s in PARAPHRASES} <= curated and not {f"{s}-1" for s in PARAPHRASES} & curated
    # the clusters are the dataset's: a paraphrase is in its original's cluster on the other night
    cluster = {names[r["doc_id"]]: r["value"] for r in second.catalog.query(
        "SELECT doc_id, value FROM doc_attributes WHERE name = 'semantic_cluster'").to_pylist()}
    assert all(cluster[f"{s}-1"] == cluster[f"{s}-0"] for s in PARAPHRASES)
    (books,) = second.catalog.query("SELECT docs_in, docs_kept, docs_dropped FROM runs WHERE run_id = ?",
                                    [second.run_id]).to_pylist()
    assert books["docs_in"] == books["docs_kept"] + books["docs_dropped"] == 2 + ARTICLES


def test_a_later_night_that_would_cluster_differently_is_refused(two_nights):
    from refinery.flows.quality import _semantic_prior
    from refinery.tasks.exceptions import ConfigError

    root, _, second = two_nights
    data = second.config.model_dump(mode="json")
    data["quality"]["semdedup"]["clusters"] = 5
    changed = parse_config(data, "a test")
    later = RunSpec(run_id="20991231-000000-beef", home=second.home, config=changed)
    with pytest.raises(ConfigError, match=r"clusters: 2 -> 5"):
        _semantic_prior(later, changed.quality, root / "out")
    # epsilon decides only the night's own documents: it may change
    data["quality"]["semdedup"].update(clusters=2, epsilon=0.3)
    looser = parse_config(data, "a test")
    prior = _semantic_prior(RunSpec(run_id=later.run_id, home=second.home, config=looser), looser.quality, root / "out")
    assert [v for v, _ in prior["folders"]] == [r["version"] for r in second.catalog.dataset_versions_of("notes")]
