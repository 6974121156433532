"""URLs across nights: re-crawls of one URL keep the newest fetch, a newer fetch of a page already
in the dataset takes its place, an older or unchanged one is dropped, and blocked domains never get
in. Real nightly flows (curation only) on the session's Prefect API and Dask cluster, WET files
written by warcio, real articles as their text."""

from __future__ import annotations

import pytest
import yaml

from tests.fixtures.web import write_wet_records
from tests.flows.test_datasets import Nights, bodies

A, B, D = "https://news.example.com/a", "https://news.example.com/b", "https://other.example.org/d"
E = "https://news.example.com/e"


@pytest.fixture(scope="module")
def crawls(tmp_path_factory, prefect_api, dask_address):
    root = tmp_path_factory.mktemp("urls")
    nights = Nights(root, dask_address, dataset="web")
    config = yaml.safe_load(nights.config.read_text())
    config["dedup"] = {"url_blocklist": ["spam.example"]}
    nights.config.write_text(yaml.safe_dump(config))
    texts = bodies("business", 8)
    monday = [(A, texts[0], "2026-11-01T08:00:00Z"),
              ("HTTPS://NEWS.Example.com:443/a?#comments", texts[1], "2026-11-02T08:00:00Z"),  # a re-crawl of A
              (B, texts[2], "2026-11-01T08:00:00Z"),
              ("https://ads.spam.example/c", texts[3], "2026-11-01T08:00:00Z"),
              (D, texts[4], "2026-11-01T08:00:00Z")]
    write_wet_records(nights.folder / "monday.warc.wet.gz", monday)
    one = nights.run()
    tuesday = [(A, texts[5], "2026-11-10T08:00:00Z"),  # A changed since
               (B, texts[6], "2026-10-01T08:00:00Z"),  # an older copy of B (a late archive)
               (D, texts[4], "2026-11-10T08:00:00Z")]  # D again, unchanged
    write_wet_records(nights.folder / "tuesday.warc.wet.gz", tuesday)
    two = nights.run()
    config["dedup"]["url_blocklist"].append("other.example.org")  # D's domain, blocked from now on
    nights.config.write_text(yaml.safe_dump(config))
    write_wet_records(nights.folder / "wednesday.warc.wet.gz", [(E, texts[7], "2026-11-12T08:00:00Z")])
    three = nights.run()
    return {"nights": nights, "texts": texts, "runs": [one["run_id"], two["run_id"], three["run_id"]]}


def _drops(nights: Nights, run_id: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(URL, first words) -> (reason, the URL of the document it is filed under) of a night's dedup drops."""
    rows = nights.query("""
        SELECT d.url, d.text, x.reason, s.url AS under FROM drops x JOIN documents d USING (run_id, doc_id)
        LEFT JOIN dedup_clusters c ON c.run_id = x.run_id AND c.doc_id = x.doc_id
        LEFT JOIN (SELECT doc_id, url FROM documents UNION ALL SELECT doc_id, url FROM curated) s
               ON s.doc_id = c.cluster_id
        WHERE x.run_id = ? AND x.stage = 'dedup'""", [run_id])
    return {(r["url"], " ".join(r["text"].split()[:5])): (r["reason"], r["under"]) for r in rows}


def _start(text: str) -> str:
    return " ".join(text.split()[:5])


def test_a_night_keeps_the_newest_fetch_of_a_url_and_drops_blocked_domains(crawls):
    nights, texts = crawls["nights"], crawls["texts"]
    got = _drops(nights, crawls["runs"][0])
    assert got == {(A, _start(texts[0])): ("dedup_url", A),
                   ("https://ads.spam.example/c", _start(texts[3])): ("url_blocklist", None)}


def test_a_newer_fetch_replaces_the_dataset_document_and_an_older_or_unchanged_one_is_dropped(crawls):
    nights, texts = crawls["nights"], crawls["texts"]
    one, two, _ = crawls["runs"]
    assert _drops(nights, two) == {(B, _start(texts[6])): ("dedup_url", B), (D, _start(texts[4])): ("dedup_url", D)}
    current = {r["url"]: r["text"] for r in nights.query("SELECT url, text FROM curated_at('web', ?)", [two])}
    assert current == {A: texts[5], B: texts[2], D: texts[4]}
    retired = nights.query("SELECT d.url, d.text, r.reason FROM dataset_retired r JOIN dataset_documents d"
                           " USING (dataset, doc_id, added_in) WHERE r.dataset = 'web' AND r.retired_in = ?", [two])
    assert [(r["url"], r["text"], r["reason"]) for r in retired] == [(A, texts[1], "dedup_url")]
    version = nights.query("SELECT docs_added, docs_retired, docs_total FROM dataset_versions"
                           " WHERE dataset = 'web' AND version = ?", [two])[0]
    assert version == {"docs_added": 1, "docs_retired": 1, "docs_total": 3}


def test_a_domain_blocked_later_leaves_the_dataset_when_the_next_version_is_published(crawls):
    nights, texts = crawls["nights"], crawls["texts"]
    three = crawls["runs"][2]
    current = {r["url"]: r["text"] for r in nights.query("SELECT url, text FROM curated WHERE dataset = 'web'")}
    assert current == {A: texts[5], B: texts[2], E: texts[7]}
    retired = nights.query("SELECT d.url, r.reason FROM dataset_retired r JOIN dataset_documents d"
                           " USING (dataset, doc_id, added_in) WHERE r.dataset = 'web' AND r.retired_in = ?", [three])
    assert retired == [{"url": D, "reason": "url_blocklist"}]


def test_url_and_domain_are_queryable_and_the_older_dataset_version_still_reads_as_it_was(crawls):
    nights, texts = crawls["nights"], crawls["texts"]
    one, two, _ = crawls["runs"]
    rows = nights.query("SELECT domain, count(*) AS docs FROM curated_at('web', ?) GROUP BY domain ORDER BY 1", [two])
    assert rows == [{"domain": "news.example.com", "docs": 2}, {"domain": "other.example.org", "docs": 1}]
    before = {r["url"]: r["text"] for r in nights.query("SELECT url, text FROM curated_at('web', ?)", [one])}
    assert before == {A: texts[1], B: texts[2], D: texts[4]}
