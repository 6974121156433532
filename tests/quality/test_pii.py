"""Personal data (``quality.pii``): e-mail addresses, public IP addresses and phone numbers counted as
``pii.*`` attributes, redacted in the kept documents of web pages (or counted only, or the documents
dropped), with no false positives on technical text; every path that writes kept documents (the
quality stage, a refilter, a dataset refilter's returned documents) redacts them."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from refinery.storage import read_shard, write_shard
from refinery.tasks.dedup import DedupConfig
from refinery.tasks.dedup.against import DatasetRef
from refinery.tasks.quality import FAMILIES, PiiConfig, QualityConfig, decide, family_fingerprints, score_documents
from refinery.tasks.quality.dataset_refilter import returned_documents
from refinery.tasks.quality.guard import drop_rate_warnings
from refinery.tasks.quality.pii import find_pii, pii_attributes, redact, redact_documents
from refinery.tasks.quality.refilter import rescored_families, stored_attributes
from refinery.tasks.quality.shard_tasks import quality_shard, refilter_shard
from tests.fixtures.crafted import bbc_files

PAGE = (
    "The council said the consultation on the new cycle lanes closes on 12 March 2024.\n\n"
    "Residents can write to Planning.Team@camden-council.gov.uk or call 020 7946 0958; "
    "the council's partner in California answers on +1 (415) 555-2671.\n\n"
    "The defacement of its website came from 93.184.216.34 and 2606:4700:4700::1111, the police said.\n"
)
REDACTED = (
    "The council said the consultation on the new cycle lanes closes on 12 March 2024.\n\n"
    "Residents can write to |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER|||; "
    "the council's partner in California answers on |||PHONE_NUMBER|||.\n\n"
    "The defacement of its website came from |||IP_ADDRESS||| and |||IP_ADDRESS|||, the police said.\n"
)
ORIGINALS = ("Planning.Team@camden-council.gov.uk", "020 7946 0958", "+1 (415) 555-2671", "93.184.216.34",
             "2606:4700:4700::1111")

# only the pii family, so the tests of its decisions do not depend on the other families
PII_ONLY = {f: {"enabled": False} for f in FAMILIES if f != "pii"}


def only_pii(**pii) -> QualityConfig:
    return QualityConfig(**PII_ONLY, pii=pii)


def found(text: str) -> list[tuple[str, str]]:
    return [(text[start:end], kind) for start, end, kind in find_pii(text)]


def test_a_page_s_personal_data_is_counted_and_redacted() -> None:
    attrs = pii_attributes([PAGE], PiiConfig())
    assert {k: v.tolist() for k, v in attrs.items()} == {
        "pii.emails": [1.0], "pii.ips": [2.0], "pii.phones": [2.0], "pii.count": [5.0]}
    assert all(v.dtype == np.float64 for v in attrs.values())
    redacted = redact(PAGE, PiiConfig())
    assert redacted == REDACTED  # the text around each match is left as it was
    assert not any(original in redacted for original in ORIGINALS)
    custom = PiiConfig(email_placeholder="<email>", ip_placeholder="<ip>", phone_placeholder="<phone>")
    assert redact(PAGE, custom) == REDACTED.replace("|||EMAIL_ADDRESS|||", "<email>").replace(
        "|||IP_ADDRESS|||", "<ip>").replace("|||PHONE_NUMBER|||", "<phone>")


@pytest.mark.parametrize(("text", "expected"), [
    ("Mail John.Smith@Example.COM today.", [("John.Smith@Example.COM", "email")]),
    ("mailto:press+tips@news.bbc.co.uk, or 'desk@example.org'.",
     [("press+tips@news.bbc.co.uk", "email"), ("desk@example.org", "email")]),
    ("Seen from 8.26.56.26:443 and [2a00:1450:4009:81f::200e]:443.",
     [("8.26.56.26", "ip"), ("2a00:1450:4009:81f::200e", "ip")]),
    ("Call (415) 555-2671, 415.555.2671 or 1-800-555-0199.",
     [("(415) 555-2671", "phone"), ("415.555.2671", "phone"), ("1-800-555-0199", "phone")]),
    ("London +44 (0)20 7946 0958, Paris 01 23 45 67 89, Berlin +49 30 12345678, 0845 8 505 505.",
     [("+44 (0)20 7946 0958", "phone"), ("01 23 45 67 89", "phone"), ("+49 30 12345678", "phone"),
      ("0845 8 505 505", "phone")]),
    ("Text 4155552671@txt.example.com", [("4155552671@txt.example.com", "email")]),  # one match, not two
])
def test_each_detector_finds_its_kind(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


TECHNICAL = {
    "versions": "Python 3.11.2 needs numpy 1.26.4; build 10.0.19041.1, version 1.2.3.4, release 2.7.2.2.",
    "section numbers": "See RFC 2616 section 14.9.4.1 and 3.1.1.6 of the standard.",
    "dates and times": "Released 2023-10-12 (12.10.2023, 10/12/2023) at 12:30:45, between 1990-2000.",
    "ISBN and DOI": "ISBN 978-3-16-148410-0, ISBN 0-306-40615-2, 9783161484100, doi:10.1000/182.",
    "long integers": "seed = 12345678901234567890; pi ~ 3141592653 and 4155552671 and +12.5 13.75 14.25",
    # a signed, zero-padded number (Python's format spec docs): no country code starts with 0
    "signed numbers": "format(120, '+010') gives '+000000120'; offsets +0000 and -0500, +00 44 20 7946 0958",
    "hashes and ids": "commit 3f2a9c0d1e4b5a6978e1, uuid 123e4567-e89b-12d3-a456-426614174000, "
                      "MAC 00:1a:2b:3c:4d:5e, OID 1.3.6.1.4.1.2021, 1.2.3.4.5",
    "number tables": "2019 2020 2021\n12 14 15 18\n0101 1100 1010 0011\n0001 0002 0003",
    "python": "@dataclass(frozen=True)\nclass A:\n    @property\n    def w(self):\n        return x@W.T + a @ b\n"
              "# needs python@3.11, pkg@1.2.3 and user@localhost\nv = a[2::3]; std::vector<int> v;",
    "git and URLs": "git clone git@github.com:org/repo.git; https://medium.com/@user.name/post-123; "
                    "cargo's spec git+ssh://git@github.com/rust-lang/regex.git#regex@1.4.3, ftp://anonymous@ftp.example.org/",
    "private addresses": "Bind 127.0.0.1, 192.168.1.1, 10.0.0.1, 0.0.0.0, 224.0.0.1 or 2001:db8::1 and fe80::1.",
    "not addresses": "999.999.999.999, 108.0.0.01, 912.456.123.123, 192.168.l.1, 00.0000.00.00",
}


@pytest.mark.parametrize("name", sorted(TECHNICAL))
def test_nothing_is_found_in_technical_text(name: str) -> None:
    text = TECHNICAL[name]
    assert found(text) == []
    assert redact(text, PiiConfig()) == text


def test_news_articles_hold_only_their_freephone_numbers() -> None:
    """Precision on real prose full of figures (scores, prices, dates, times, years): the 2,225 BBC
    articles hold three phone numbers, and nothing else is found."""
    hits = [hit for _, text in bbc_files() for hit in found(text)]
    assert hits == [("0845 8 505 505", "phone"), ("0800 555 111", "phone"), ("0800 028 9276", "phone")]


def test_a_detector_switched_off_is_not_looked_for() -> None:
    cfg = PiiConfig(emails=False)
    attrs = pii_attributes([PAGE], cfg)
    assert np.isnan(attrs["pii.emails"][0]) and attrs["pii.count"][0] == 4.0
    assert "Planning.Team@camden-council.gov.uk" in redact(PAGE, cfg)
    assert "020 7946 0958" not in redact(PAGE, cfg)


def test_only_web_pages_by_default() -> None:
    texts = [PAGE, PAGE, "No personal data here."]
    has_url = np.array([True, False, True])
    web = score_documents(texts, only_pii(mode="drop"), has_url=has_url)
    np.testing.assert_array_equal(web["pii.count"], [5.0, np.nan, 0.0])
    assert all(np.isnan(web[name][1]) for name in ("pii.emails", "pii.ips", "pii.phones"))
    assert decide(web, only_pii(mode="drop")) == ["pii.found", None, None]  # NaN never fails a rule
    # without has_url no document is a web page
    assert np.isnan(score_documents(texts, only_pii())["pii.count"]).all()
    every = score_documents(texts, only_pii(mode="drop", apply_to="all"), has_url=has_url)
    np.testing.assert_array_equal(every["pii.count"], [5.0, 5.0, 0.0])
    assert decide(every, only_pii(mode="drop", apply_to="all")) == ["pii.found", "pii.found", None]


def test_only_drop_mode_drops() -> None:
    texts = ["Nothing.", "Write to a.b@example.org.", PAGE]
    attrs = score_documents(texts, only_pii(apply_to="all"))
    assert attrs["pii.count"].tolist() == [0.0, 1.0, 5.0]
    assert decide(attrs, only_pii(mode="drop")) == [None, "pii.found", "pii.found"]
    assert decide(attrs, only_pii(mode="drop", max_count=1)) == [None, None, "pii.found"]
    assert decide(attrs, only_pii(mode="redact")) == [None] * 3
    assert decide(attrs, only_pii(mode="count")) == [None] * 3


# --- the files: quality stage, refilter, dataset refilter -----------------------------------------

CONTACT = "\n\nReaders can write to news.desk@example-paper.co.uk or call 020 7946 0958.\n"
REDACTED_CONTACT = "\n\nReaders can write to |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER|||.\n"


@pytest.fixture(scope="module")
def shard(tmp_path_factory) -> tuple:
    """A documents shard as ingest writes it: web pages (with a URL) and a plain text (without),
    real articles with a contact line, and a junk page the rules drop."""
    root = tmp_path_factory.mktemp("pii")
    articles = [text for _, text in bbc_files()[:3]]
    texts = [articles[0] + CONTACT, articles[1], articles[2] + CONTACT, "lorem ipsum " * 3 + CONTACT]
    urls = ["https://example-paper.co.uk/a", "https://example-paper.co.uk/b", None, "https://spam.example/"]
    ids = [f"{i:016x}" for i in range(len(texts))]
    docs = write_shard(pa.table({"doc_id": ids, "source": ["web"] * 4, "text": texts,
                                 "n_chars": pa.array([len(t) for t in texts], pa.int64()),
                                 "url": pa.array(urls, pa.string())}), root / "documents-web-00000.parquet")
    no_drops = write_shard(pa.table({"doc_id": pa.array([], pa.string())}), root / "dedup-drops.parquet")
    return docs, no_drops, texts


def texts_of(path) -> dict[str, str]:
    table = read_shard(path)
    assert table.column("n_chars").to_pylist() == [len(t) for t in table.column("text").to_pylist()]
    return dict(zip(table.column("doc_id").to_pylist(), table.column("text").to_pylist()))


def test_the_quality_stage_redacts_the_kept_web_pages(tmp_path, shard) -> None:
    docs, no_drops, texts = shard
    result = quality_shard(docs, no_drops, tmp_path, QualityConfig())
    assert result["kept"] == 3
    drops = read_shard(result["drops"]).to_pylist()
    assert [d["doc_id"] for d in drops] == ["0000000000000003"] and not drops[0]["reason"].startswith("pii")
    assert texts_of(result["corpus"]) == {
        "0000000000000000": texts[0].replace(CONTACT, REDACTED_CONTACT),
        "0000000000000001": texts[1],  # a web page without personal data
        "0000000000000002": texts[2],  # no URL: not a web page, left as it is
    }
    assert read_shard(docs).column("text").to_pylist() == texts  # the ingested documents keep the original
    attributes = read_shard(result["attributes"]).to_pylist()
    count = {a["doc_id"]: a["value"] for a in attributes if a["name"] == "pii.count"}
    # the document without a URL was not looked at: NULL, not a count of 0
    assert count["0000000000000000"] == 2 and count["0000000000000001"] == 0 and count["0000000000000002"] is None
    # so SQL over the attributes finds the pages with personal data only (NaN would count: DuckDB sorts it
    # above every number) and averages over the pages looked at
    found = duckdb.sql(f"SELECT list(doc_id ORDER BY doc_id) AS ids, avg(value) AS mean FROM '{result['attributes']}'"
                       " WHERE name = 'pii.count' AND value > 0").fetchall()[0]
    assert found == (["0000000000000000", "0000000000000003"], 2.0)
    # and read back for a refilter it is NaN again, which no rule fails on
    assert np.isnan(stored_attributes(result["attributes"], pa.array(["0000000000000002"]))["pii.count"]).all()


def test_count_mode_keeps_the_text(tmp_path, shard) -> None:
    docs, no_drops, texts = shard
    result = quality_shard(docs, no_drops, tmp_path, QualityConfig(pii={"mode": "count"}))
    assert texts_of(result["corpus"]) == {f"{i:016x}": texts[i] for i in range(3)}
    count = {a["doc_id"]: a["value"] for a in read_shard(result["attributes"]).to_pylist() if a["name"] == "pii.count"}
    assert count["0000000000000000"] == 2


def test_a_refilter_redacts_with_its_own_settings(tmp_path, shard) -> None:
    docs, no_drops, texts = shard
    quality_shard(docs, no_drops, tmp_path, QualityConfig(pii={"mode": "count"}))  # a run that only counted
    redacted = refilter_shard(docs, no_drops, tmp_path, QualityConfig())
    assert texts_of(redacted["corpus"])["0000000000000000"] == texts[0].replace(CONTACT, REDACTED_CONTACT)
    counted = refilter_shard(docs, no_drops, tmp_path, QualityConfig(pii={"mode": "count"}))
    assert texts_of(counted["corpus"])["0000000000000000"] == texts[0]
    # the same decisions with other text: other files, never the earlier ones taken for these
    other = refilter_shard(docs, no_drops, tmp_path, QualityConfig(pii={"email_placeholder": "<email>"}))
    assert len({redacted["corpus"], counted["corpus"], other["corpus"]}) == 3
    assert "<email>" in texts_of(other["corpus"])["0000000000000000"]
    assert refilter_shard(docs, no_drops, tmp_path, QualityConfig()) == redacted
    dropped = refilter_shard(docs, no_drops, tmp_path, QualityConfig(pii={"mode": "drop"}))
    reasons = {d["doc_id"]: d["reason"] for d in read_shard(dropped["drops"]).to_pylist()}
    assert reasons["0000000000000000"] == "pii.found" and "0000000000000002" not in reasons  # no URL: kept


def test_a_refilter_of_a_run_scored_before_pii_existed_redacts_from_the_text(tmp_path, shard) -> None:
    docs, no_drops, texts = shard
    quality_shard(docs, no_drops, tmp_path, QualityConfig(pii={"enabled": False}))  # no pii.* attribute stored
    redacted = refilter_shard(docs, no_drops, tmp_path, QualityConfig())
    assert texts_of(redacted["corpus"])["0000000000000000"] == texts[0].replace(CONTACT, REDACTED_CONTACT)
    assert texts_of(redacted["corpus"])["0000000000000002"] == texts[2]  # no URL: left as it is


def test_documents_a_dataset_refilter_brings_back_are_redacted(tmp_path, shard) -> None:
    docs, _, texts = shard
    nothing_published = DatasetRef.of([], pa.table({"doc_id": pa.array([], pa.string()),
                                                    "added_in": pa.array([], pa.string())}))
    result = returned_documents([(str(docs), ["0000000000000000", "0000000000000002"])], DedupConfig(),
                                nothing_published, str(tmp_path / "docs"), str(tmp_path / "index"), "v2",
                                quality=QualityConfig())
    assert result["returned"] == 2
    assert texts_of(result["files"][0]) == {"0000000000000000": texts[0].replace(CONTACT, REDACTED_CONTACT),
                                            "0000000000000002": texts[2]}


def test_redaction_reads_documents_without_a_url_column(shard) -> None:
    docs, _, texts = shard
    old = read_shard(docs).drop_columns(["url"])  # a shard ingested before the column existed
    assert redact_documents(old, QualityConfig()) is old
    every = redact_documents(old, QualityConfig(pii={"apply_to": "all"}))
    assert every.column("text").to_pylist()[2] == texts[2].replace(CONTACT, REDACTED_CONTACT)


# --- fingerprints and the guard ----------------------------------------------------------------------

# family_fingerprints(QualityConfig()) of the code before the pii family: a run scored then
# recorded these, and its stored attributes stay good for every family
BEFORE_PII = {"c4": "a651d76a110974a6", "fineweb": "1201126862e4d8e3", "gopher_quality": "c4c21d88f167e998",
              "gopher_repetition": "70eca216588b3a66", "langid": "1992da5375055e95"}


def test_runs_scored_before_the_pii_family_keep_their_attributes() -> None:
    now = family_fingerprints(QualityConfig())
    assert {k: v for k, v in now.items() if k != "pii"} == BEFORE_PII
    # a refilter of such a run: redaction reads the text, not attributes; only a pii rule needs them
    assert rescored_families(BEFORE_PII, QualityConfig()) == []
    assert rescored_families(BEFORE_PII, QualityConfig(pii={"mode": "count"})) == []
    assert rescored_families(BEFORE_PII, QualityConfig(pii={"mode": "drop"})) == ["pii"]
    assert rescored_families(BEFORE_PII, QualityConfig(pii={"enabled": False})) == []


def test_only_what_pii_looks_for_changes_its_fingerprint() -> None:
    base = family_fingerprints(QualityConfig())
    for scoring in ({"apply_to": "all"}, {"emails": False}, {"ips": False}, {"phones": False}):
        changed = family_fingerprints(QualityConfig(pii=scoring))
        assert changed["pii"] != base["pii"] and {k: v for k, v in changed.items() if k != "pii"} == BEFORE_PII
    for deciding in ({"mode": "drop", "max_count": 3}, {"mode": "count"}, {"phone_placeholder": "[phone]"}):
        assert family_fingerprints(QualityConfig(pii=deciding)) == base, deciding


def test_the_guard_names_the_pii_setting_and_no_profile() -> None:
    cfg = QualityConfig(pii={"mode": "drop"})
    example = lambda reason, attribute: ("0000000000000000", PAGE, 5.0)  # noqa: E731
    (warning,) = drop_rate_warnings(100, {"pii.found": 60}, cfg, example)
    assert warning["rule"] == "pii.found" and warning["setting"] == "quality.pii.max_count"
    assert warning["profiles_that_keep"] == []  # no profile changes pii
    assert drop_rate_warnings(100, {}, QualityConfig()) == []  # redaction drops nothing
