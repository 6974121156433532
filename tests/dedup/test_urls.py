"""The URL step of dedup: blocked domains (subdomains included) and one document per URL, the
newest fetch kept. Cross-night behaviour (a newer fetch retiring the dataset's document) is
tested on real nights in tests/flows/test_url_dedup.py."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from refinery.tasks.dedup import DedupConfig
from refinery.tasks.dedup.urls import (KIND_URL, REASON_BLOCKLIST, blocked_domains, blocklist_entry, fetch_times,
                                       is_blocked, url_decisions, url_keys)
from refinery.tasks.exceptions import ConfigError
from refinery.tasks.ingest.web import normalize_url, url_domain


def night(rows: list[tuple[str, str | None, str | None]], cfg: DedupConfig):
    """url_decisions over rows of (doc id, URL as a crawler wrote it, fetch time ISO or None),
    the URLs normalized as ingest stores them."""
    rows = sorted(rows)
    doc_ids = np.array([r[0] for r in rows], dtype=object)
    urls = [normalize_url(u) if u else None for _, u, _ in rows]
    domains = [url_domain(u) for u in urls]
    times = pa.array([datetime.fromisoformat(t).replace(tzinfo=timezone.utc) if t else None for _, _, t in rows],
                     pa.timestamp("us", tz="UTC"))
    keys = np.arange(len(rows), dtype=np.uint64)  # every text differs
    return dict(zip(doc_ids, zip(*_decided(url_decisions(doc_ids, keys, url_keys(urls, domains),
                                                         fetch_times(times, len(rows)), domains, cfg)))))


def _decided(d):
    return d.reasons.tolist(), d.matched.tolist(), d.kinds.tolist()


def test_a_domain_and_its_subdomains_are_blocked_not_a_longer_name_that_ends_alike():
    blocked = frozenset({"spam.example"})
    assert is_blocked("spam.example", blocked)
    assert is_blocked("ads.cdn.spam.example", blocked)
    assert not is_blocked("notspam.example", blocked)
    assert not is_blocked("spam.example.org", blocked)
    assert not is_blocked(None, blocked)


@pytest.mark.parametrize("line, domain", [
    ("Example.COM", "example.com"), ("*.ads.example.com", "ads.example.com"), (".example.com", "example.com"),
    ("https://user@Ads.Example.com:8443/x?y=1", "ads.example.com"), ("  # a comment", None), ("", None),
    ("tracker.example  # inline comment", "tracker.example"),
])
def test_blocklist_lines_are_read_as_domains(line, domain):
    assert blocklist_entry(line) == domain


def test_the_blocklist_file_adds_to_the_list_and_an_unreadable_file_is_a_config_error(tmp_path):
    listed = tmp_path / "blocked.txt"
    listed.write_text("# ad servers\nads.example\n\n*.tracker.example\n")
    cfg = DedupConfig(url_blocklist=["spam.example"], url_blocklist_file=str(listed))
    assert blocked_domains(cfg) == {"spam.example", "ads.example", "tracker.example"}
    with pytest.raises(ConfigError, match="url_blocklist_file.*missing.txt"):
        blocked_domains(DedupConfig(url_blocklist_file=str(tmp_path / "missing.txt")))


def test_only_absolute_urls_get_a_key_and_spellings_of_one_url_share_it():
    urls = [normalize_url(u) for u in ("HTTP://Example.com:80/a?b=2&a=1#top", "http://example.com/a?a=1&b=2",
                                       "http://example.com/b", "guide/index.html")]
    keys = url_keys(urls, [url_domain(u) for u in urls])
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] == 0  # a page read from a folder: its URL is its file path


def test_of_one_url_fetched_three_times_tonight_the_newest_is_kept_and_the_others_filed_under_it():
    got = night([("d1", "https://news.example.com/a", "2026-11-01T08:00:00"),
                 ("d2", "HTTPS://NEWS.example.com:443/a#comments", "2026-11-03T08:00:00"),
                 ("d3", "https://news.example.com/a", None),
                 ("d4", "https://news.example.com/b", "2026-11-01T08:00:00")], DedupConfig())
    assert got["d2"] == ("", None, KIND_URL)  # the survivor of its URL's cluster
    assert got["d1"] == ("dedup_url", "d2", KIND_URL)
    assert got["d3"] == ("dedup_url", "d2", KIND_URL)  # no fetch time: older than any
    assert got["d4"] == ("", None, "")


def test_equal_fetch_times_keep_the_smallest_doc_id_and_file_paths_are_never_url_duplicates():
    got = night([("b", "https://x.example/p", "2026-11-01T00:00:00"), ("a", "https://x.example/p", "2026-11-01T00:00:00"),
                 ("c", "pages/index.html", None), ("d", "pages/index.html", None)], DedupConfig())
    assert got["a"][0] == "" and got["b"] == ("dedup_url", "a", KIND_URL)
    assert got["c"][0] == got["d"][0] == ""


def test_blocked_documents_are_dropped_even_with_url_dedup_off_and_dedup_off_keeps_every_fetch():
    rows = [("d1", "https://www.spam.example/x", None), ("d2", "https://ok.example/x", "2026-11-01T00:00:00"),
            ("d3", "https://ok.example/x", "2026-11-02T00:00:00")]
    got = night(rows, DedupConfig(url=False, url_blocklist=["spam.example"]))
    assert [got[d][0] for d in ("d1", "d2", "d3")] == [REASON_BLOCKLIST, "", ""]


def test_against_the_dataset_index_a_newer_fetch_supersedes_and_an_older_or_unchanged_one_is_dropped(tmp_path):
    from refinery.storage.dataset_index import doc_ids_of
    from refinery.tasks.dedup.against import write_indexed
    from refinery.tasks.dedup.minhash import signatures

    cfg = DedupConfig()

    def micros(iso: str) -> int:
        return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1_000_000)

    # the dataset: three pages published in v1, fetched on Nov 1
    urls = ["https://a.example/1", "https://a.example/2", "https://a.example/3"]
    old_ids = np.array(["0000000000000001", "0000000000000002", "0000000000000003"], dtype=object)
    old_keys = np.array([11, 12, 13], dtype=np.uint64)
    files = write_indexed(old_ids, np.array([100, 100, 100]), old_keys, signatures(["x y z"] * 3, cfg), cfg,
                          str(tmp_path), "v1", "v1",
                          urls=(url_keys(urls, [url_domain(u) for u in urls]), np.full(3, micros("2026-11-01"))))
    # tonight: page 1 fetched later with another text, page 2 fetched earlier, page 3 later but unchanged,
    # and a page new to the dataset
    night_ids = np.array(["00000000000000a1", "00000000000000a2", "00000000000000a3", "00000000000000a4"], dtype=object)
    night_urls = [*urls, "https://a.example/4"]
    got = url_decisions(night_ids, np.array([21, 22, 13, 24], dtype=np.uint64),
                        url_keys(night_urls, [url_domain(u) for u in night_urls]),
                        np.array([micros("2026-11-05"), micros("2026-10-01"), micros("2026-11-05"), micros("2026-11-05")]),
                        [url_domain(u) for u in night_urls], cfg, tuple(files))
    assert got.reasons.tolist() == ["", "dedup_url", "dedup_url", ""]
    assert got.matched.tolist() == [None, "0000000000000002", "0000000000000003", None]
    assert doc_ids_of(got.superseded.column("doc").to_pylist()) == ["0000000000000001"]
    assert got.superseded.column("by").to_pylist() == ["00000000000000a1"]
    assert got.superseded.column("added_in").to_pylist() == ["v1"]
