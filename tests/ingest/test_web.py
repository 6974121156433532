"""Web inputs read as a user's crawl is: HTML pages in a folder, the same pages in a WARC, WET text,
and the damage real archives have. Pages are pdoc's documentation of standard-library modules
(tests/fixtures/web.py), so what is asserted is text a real page has."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import pytest

from refinery.tasks.ingest.config import IngestConfig, SourceConfig
from refinery.tasks.ingest.readers import Record, Reject, plan_units, read_unit
from refinery.tasks.ingest.web import decode_page, file_suffix, normalize_url
from tests.fixtures.web import BUILT_WITH, NAV_HEADING, pdoc_pages, write_pages, write_warc, write_wet


@pytest.fixture(scope="module")
def pages():
    return pdoc_pages()


def read(path: Path, **source) -> tuple[list[Record], list[Reject]]:
    items = [i for u in plan_units(IngestConfig(sources=[SourceConfig(path=str(path), name="web", **source)]))
             for i in read_unit(u)]
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_a_folder_of_pages_gives_a_document_a_page_with_title_and_main_text_without_navigation(tmp_path, pages):
    write_pages(tmp_path, pages)
    docs, rejects = read(tmp_path)
    assert not rejects
    by_location = {d.location: d for d in docs}
    assert sorted(by_location) == sorted(p.name for p in pages)  # email.parser.html is read as .html
    for page in pages:
        doc = by_location[page.name]
        assert doc.title == f"{page.module} API documentation"
        assert page.first_paragraph in " ".join(doc.text.split())
        assert NAV_HEADING not in doc.text and BUILT_WITH not in doc.text
        assert doc.lang == "en" and doc.url == page.name and doc.domain is None
    # paragraphs stay paragraphs: the module docstring's first paragraph is one, whole
    heapq = by_location["heapq.html"].text.split("\n\n")
    assert any(" ".join(p.split()) == "Heap queue algorithm (a.k.a. priority queue)." for p in heapq)


def test_a_warc_of_the_same_pages_gives_the_same_documents_with_urls_and_fetch_dates(tmp_path, pages):
    write_pages(tmp_path / "folder", pages)
    write_warc(tmp_path / "crawl" / "crawl.warc.gz", pages) if (tmp_path / "crawl").mkdir() is None else None
    folder, _ = read(tmp_path / "folder")
    docs, rejects = read(tmp_path / "crawl")
    assert sorted((d.title, d.text) for d in docs) == sorted((d.title, d.text) for d in folder)
    assert {d.url for d in docs} == {f"https://docs.example.org/stdlib/{p.name}" for p in pages}  # normalized
    assert {d.domain for d in docs} == {"docs.example.org"}
    assert {d.fetched_at for d in docs} == {datetime(2026, 11, 30, 12, tzinfo=timezone.utc)}
    assert all(d.location.startswith("crawl.warc.gz:") and d.record_id.startswith("<urn:uuid:") for d in docs)
    # the image and the PDF are one reject each, with their URL; warcinfo and requests are not records
    reasons = sorted(r.reason for r in rejects)
    assert reasons == ["unsupported_content_type: application/pdf (https://docs.example.org/manual.pdf)",
                       "unsupported_content_type: image/png (https://docs.example.org/logo.png)"]


def test_an_uncompressed_warc_reads_as_the_gzip_one(tmp_path, pages):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    write_warc(tmp_path / "a" / "crawl.warc.gz", pages)
    write_warc(tmp_path / "b" / "crawl.warc", pages, gzip=False)
    zipped, plain = read(tmp_path / "a"), read(tmp_path / "b")
    assert [(d.url, d.text) for d in zipped[0]] == [(d.url, d.text) for d in plain[0]]
    assert [r.reason for r in zipped[1]] == [r.reason for r in plain[1]]


def _record_offsets(path: Path) -> list[tuple[int, str]]:
    """(offset, type) of every record, by warcio reading the intact file."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as fh:
        it = ArchiveIterator(fh)
        return [(it.get_record_offset(), r.rec_type) for r in it]


@pytest.mark.parametrize("zipped", [True, False])
def test_a_truncated_warc_keeps_the_records_before_the_cut_and_the_damage_is_one_reject(tmp_path, pages, zipped):
    name = "crawl.warc.gz" if zipped else "crawl.warc"
    whole = tmp_path / name
    write_warc(whole, pages, extra=False, gzip=zipped)
    responses = [offset for offset, kind in _record_offsets(whole) if kind == "response"]
    cut_at = responses[3] + 700  # inside the fourth page's record
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / name).write_bytes(whole.read_bytes()[:cut_at])
    docs, rejects = read(tmp_path / "cut")
    assert [d.location for d in docs] == [f"{name}:{o}" for o in responses[:3]]
    (reject,) = rejects
    assert reject.reason.startswith("damaged_warc")
    offset = int(reject.location.rsplit(":", 1)[1])
    assert responses[2] < offset <= responses[3] and offset < cut_at  # where the cut record starts (its request)


def test_wet_records_are_read_as_they_are(tmp_path):
    texts = {"https://a.example/x": "First line of a page.\n\nSecond paragraph, kept as is.",
             "https://b.example/y?b=1&a=2": "Another page's text."}
    write_wet(tmp_path / "CC-MAIN-1.warc.wet.gz", texts)
    docs, rejects = read(tmp_path)
    assert not rejects
    assert {(d.url, d.text, d.lang) for d in docs} == {
        ("https://a.example/x", texts["https://a.example/x"], "eng"),
        ("https://b.example/y?a=2&b=1", texts["https://b.example/y?b=1&a=2"], "eng")}


PROSE = ("<p>Le café où l'élève a étudié était fermé. Ça n'a pas empêché la réunion prévue à l'hôtel de "
         "ville, où les délégués ont présenté leurs rapports détaillés sur l'économie régionale.</p>") * 4


def _page(head: str, body: str = PROSE) -> str:
    return f"<html lang='fr'><head>{head}<title>Réunion</title></head><body><article>{body}</article></body></html>"


def test_the_charset_comes_from_the_http_header_then_the_meta_then_detection():
    page = _page("<meta charset='windows-1252'>")
    assert decode_page(page.encode("cp1252"))[0] == page  # the meta
    assert decode_page(page.encode("cp1252"), "windows-1252")[0] == page
    utf8_meta = _page("<meta charset='utf-8'>")
    # the header wins over the meta; a declared charset the bytes do not decode in is passed over
    assert decode_page(utf8_meta.encode("cp1252"), "iso-8859-1")[0] == utf8_meta
    assert decode_page(utf8_meta.encode("cp1252"))[0] == utf8_meta  # the meta lies: detected
    assert decode_page(_page("").encode("utf-8"))[0] == _page("")


def test_pages_without_text_or_too_long_and_failed_fetches_are_rejects_with_their_reason(tmp_path, pages):
    (tmp_path / "nav.html").write_text("<html><body><nav><a href='/'>Home</a> <a href='/b'>Blog</a></nav></body></html>")
    (tmp_path / "broken.html").write_bytes(b"<html><body><article><p>" + b"Unclosed tags and a stray \xff byte " * 30)
    (tmp_path / "page.html.gz").write_bytes(gzip.compress(pages[0].html))
    (tmp_path / "bad.html.gz").write_bytes(gzip.compress(pages[1].html)[:200])
    docs, rejects = read(tmp_path)
    reasons = {r.location: r.reason for r in rejects}
    assert reasons["nav.html"].startswith("extract_empty")
    assert reasons["bad.html.gz"].startswith("unreadable_file")
    assert {d.location for d in docs} == {"broken.html", "page.html.gz"}
    assert "Unclosed tags and a stray" in next(d.text for d in docs if d.location == "broken.html")
    # the page cap is ingest.max_page_chars, on the HTML as decoded; max_chars, on the text extracted
    unit, = plan_units(IngestConfig(sources=[SourceConfig(path=str(tmp_path / "page.html.gz"))]))
    (reject,) = read_unit(unit, max_page_chars=len(pages[0].html) - 1)
    assert reject.reason.startswith("text_too_long: a page of more than ingest.max_page_chars")
    (doc,) = read_unit(unit, max_page_chars=len(pages[0].html))
    (reject,) = read_unit(unit, max_chars=len(doc.text) - 1)
    assert reject.reason.startswith("text_too_long: more than ingest.max_chars")


def test_a_failed_fetch_is_a_reject_with_its_status(tmp_path, pages):
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(tmp_path / "c.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        http = StatusAndHeaders("404 Not Found", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("https://x.example/gone", "response",
                                                      payload=io.BytesIO(pages[0].html), http_headers=http))
    docs, (reject,) = read(tmp_path)
    assert not docs and reject.reason == "http_status: 404" and reject.location == "c.warc.gz:0"


@pytest.mark.parametrize(("name", "suffix"), [
    ("email.parser.html", ".html"), ("whatsnew/3.0.html", ".html"), ("a.jsonl.gz", ".jsonl.gz"),
    ("CC-MAIN-0001.warc.wet.gz", ".warc.wet.gz"), ("crawl.warc.gz", ".warc.gz"), ("x.tar.gz", ".gz"),
    ("page.HTML.GZ", ".html.gz"), ("README", ""), (".jsonl.gz", ".gz")])
def test_a_file_extension_is_its_last_suffix_or_a_known_compound_one(name, suffix):
    assert file_suffix(name) == suffix


def test_an_unknown_extension_is_named_as_it_is(tmp_path):
    (tmp_path / "notes.v2.xyz").write_text("x")
    _, (reject,) = read(tmp_path)
    assert reject.reason.startswith("unsupported_format: extension .xyz;")


@pytest.mark.parametrize(("url", "normal"), [
    ("HTTPS://Docs.Example.ORG:443/a%7Eb/?b=2&a=1#frag", "https://docs.example.org/a~b/?a=1&b=2"),
    ("http://x.org:80", "http://x.org/"), ("http://x.org:8080/p", "http://x.org:8080/p"),
    ("https://x.org/a b", "https://x.org/a%20b"), ("docs/page.html", "docs/page.html")])
def test_urls_are_normalized(url, normal):
    assert normalize_url(url) == normal


@pytest.mark.parametrize("split_bytes", [5_000, 12_345, 40_001])
def test_a_warc_cut_into_ranges_reads_every_record_once_as_read_whole(tmp_path, pages, split_bytes):
    write_warc(tmp_path / "crawl.warc.gz", pages)
    size = (tmp_path / "crawl.warc.gz").stat().st_size

    def items(split):  # noqa: ANN001, ANN202
        units = plan_units(IngestConfig(sources=[SourceConfig(path=str(tmp_path), name="web")], split_bytes=split))
        return units, [(i.location, getattr(i, "text", None) or i.reason) for u in units for i in read_unit(u)]

    whole_units, whole = items(0)
    cut_units, cut = items(split_bytes)
    assert len(whole_units) == 1 and len(cut_units) == -(-size // split_bytes) > 1
    assert cut == whole  # same records, same locations, same order, each once
