"""A night over web input, as a user's crawl comes: a WARC of real documentation pages (pdoc's, of
standard-library modules) beside a folder of the same pages as HTML files. Ingest reads both into
the same documents, with their titles and URLs queryable in SQL; the books of every file balance
(the WARC read in ranges by several tasks);
the whole chain runs on what it keeps (tiny training)."""

from __future__ import annotations

import pytest
import yaml

from refinery.storage import Catalog
from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import plan_units
from tests.fixtures.web import pdoc_pages, write_pages, write_warc

MODULES = ("abc", "colorsys", "copy", "fnmatch", "getopt", "glob", "hashlib", "heapq", "hmac", "html", "keyword",
           "linecache", "numbers", "queue", "quopri", "reprlib", "sched", "secrets", "shelve", "string", "struct",
           "timeit", "warnings", "zlib", "email.parser")


@pytest.fixture(scope="module")
def web_night(tmp_path_factory, prefect_api, dask_address):
    from refinery.flows.nightly import nightly

    root = tmp_path_factory.mktemp("web")
    pages = pdoc_pages(MODULES)
    write_pages(root / "site", pages)
    (root / "crawl").mkdir()
    write_warc(root / "crawl" / "crawl.warc.gz", pages)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(root / "home"), "dataset": "web",
        "ingest": {"shard_size": 16, "split_bytes": 100_000, "sources": [{"path": str(root / "crawl"), "name": "crawl"},
                                                  {"path": str(root / "site"), "name": "site"}]},
        "quality": {"profile": "technical"},  # API documentation: signatures and code are not prose
        "synthesize": {"generators": ["inverse_cloze"], "inverse_cloze_passages": 200},
        "train": {"epochs": 1, "batch_size": 8, "max_seq_length": 64},
        "evaluate": {"pool_docs": 80, "max_seq_length": 128}}))
    run = nightly(config_path=str(config), dask_address=dask_address)
    return {"run": run, "pages": pages, "catalog": Catalog(root / "home" / "catalog.duckdb"), "root": root}


@pytest.mark.slow  # a whole night, with training
def test_a_night_over_a_warc_and_a_folder_of_the_same_pages(web_night):
    catalog, run, pages = web_night["catalog"], web_night["run"], web_night["pages"]
    q = lambda sql: catalog.query(sql, [run["run_id"]]).to_pylist()  # noqa: E731
    docs = q("SELECT source, title, text, url, domain, fetched_at FROM documents WHERE run_id = ?")
    by_source = {s: sorted((d["title"], d["text"]) for d in docs if d["source"] == s) for s in ("crawl", "site")}
    assert by_source["crawl"] == by_source["site"] and len(by_source["crawl"]) == len(pages)
    assert {(d["domain"], d["url"]) for d in docs if d["source"] == "crawl"} == {
        ("docs.example.org", f"https://docs.example.org/stdlib/{p.name}") for p in pages}
    # the WARC was read in ranges by several tasks; its books add up over them
    crawl = IngestConfig(sources=[SourceConfig(path=str(web_night["root"] / "crawl"))], split_bytes=100_000)
    assert len(plan_units(crawl)) > 1
    books = {r["path"]: r for r in q("SELECT * FROM file_books WHERE run_id = ?")}
    assert books["crawl.warc.gz"]["records_read"] == len(pages) + 2 == (
        books["crawl.warc.gz"]["documents"] + books["crawl.warc.gz"]["rejected"])
    assert all(books[p.name]["documents"] == books[p.name]["records_read"] == 1 for p in pages)
    # each page and its copy are one dedup cluster; what curation keeps goes on to training
    kept = q("SELECT count(*) AS n FROM corpus WHERE run_id = ?")[0]["n"]
    assert kept >= 0.8 * len(pages), f"curation kept {kept} of {len(pages)} pages"
    assert q("SELECT count(*) AS n FROM metrics WHERE run_id = ? AND stage = 'evaluate'")[0]["n"] > 0
    curated = catalog.query("SELECT count(*) AS n FROM curated WHERE dataset = 'web' AND domain = 'docs.example.org'"
                            ).to_pylist()[0]["n"]
    assert curated > 0
