"""Reading a WARC and extracting each page's main text: Refinery against datatrove, side by side.

```
python -m bench.extract --pages DIR [--glob '**/*.html'] [--limit N] [--json PATH]
```

The pages of ``DIR`` (those ``--glob`` matches, sorted; the first ``--limit``) go into one gzip WARC
as response records, as a crawler writes them. On that file, in this process, one after another:

1. **Refinery**: ``warc_items`` (warcio, the page's charset, trafilatura, paragraphs, title, lang).
2. **datatrove**: its ``WarcReader`` (warcio, cchardet) and ``Trafilatura`` extractor (its defaults:
   precision favoured, trafilatura's deduplication, each page in a sandbox process with a timeout).
3. **resiliparse**: ``extract_plain_text(main_content=True)`` on the same decoded pages (the other
   maintained extractor, measured for the choice; not a reader).

Speed is pages per CPU second (the process and its children, so datatrove's sandbox counts, and
other load on the machine does not), wall rates beside it. **Agreement** is the token F1 (bag of
lower-cased words) of each page's text against datatrove's, averaged over pages. **Furniture** is the
share of a system's output lines (of 3+ words) that occur on at least half of the pages: navigation,
headers and help texts a site repeats, which main-text extraction is there to remove.
"""

from __future__ import annotations

import argparse
import io
import re
import resource
import statistics
import time
from collections import Counter
from pathlib import Path

from bench.output import emit_report

OUT = Path(__file__).parent / "out"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def write_warc(pages: list[Path], root: Path, path: Path) -> dict[str, str]:
    """The pages as a gzip WARC; returns {WARC-Record-ID: page path}."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    ids = {}
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for page in pages:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                f"https://bench.local/{page.relative_to(root).as_posix()}", "response",
                payload=io.BytesIO(page.read_bytes()), http_headers=http,
                warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"})
            ids[record.rec_headers.get_header("WARC-Record-ID")] = str(page)
            writer.write_record(record)
    return ids


def _tokens(text: str | None) -> Counter[str]:
    return Counter(re.findall(r"\w+", (text or "").lower()))


def token_f1(a: str | None, b: str | None) -> float:
    ca, cb = _tokens(a), _tokens(b)
    if not ca or not cb:
        return float(not ca and not cb)
    common = sum((ca & cb).values())
    if not common:
        return 0.0
    precision, recall = common / sum(ca.values()), common / sum(cb.values())
    return 2 * precision * recall / (precision + recall)


def furniture_share(texts: list[str]) -> float:
    """Share of output lines (3+ words) that occur on at least half of the pages."""
    lines = [[" ".join(line.split()) for line in (t or "").split("\n") if len(line.split()) >= 3] for t in texts]
    pages_with = Counter(line for page in lines for line in set(page))
    repeated = {line for line, n in pages_with.items() if n >= len(texts) / 2}
    total = sum(len(page) for page in lines)
    return sum(line in repeated for page in lines for line in page) / total if total else 0.0


def _timed(fn):  # noqa: ANN001, ANN202
    cpu, wall = _cpu(), time.perf_counter()
    out = fn()
    return out, _cpu() - cpu, time.perf_counter() - wall


def run_refinery(warc: Path) -> dict[str, str]:
    from refinery.tasks.ingest.web_readers import warc_items

    return {record["id"]: record["text"] for _, record, _, _ in
            warc_items(str(warc), warc.name, wet=False, max_chars=None, tables=True, code=True) if record}


def run_datatrove(warc: Path) -> dict[str, str]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(str(warc.parent), glob_pattern=warc.name, doc_progress=False)
    return {doc.id: doc.text for doc in Trafilatura().run(reader.run())}


def run_resiliparse(warc: Path) -> dict[str, str]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree
    from warcio.archiveiterator import ArchiveIterator

    out = {}
    with open(warc, "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type == "response":
                html = record.content_stream().read().decode("utf-8", "replace")
                out[record.rec_headers.get_header("WARC-Record-ID")] = extract_plain_text(
                    HTMLTree.parse(html), main_content=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", required=True, help="folder of .html pages (searched recursively)")
    parser.add_argument("--glob", default="**/*.html", help="which pages of --pages (default: all .html below it)")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--json", default=str(OUT / "extract.json"))
    args = parser.parse_args()
    root = Path(args.pages)
    pages = sorted(root.glob(args.glob))[: args.limit]
    OUT.mkdir(exist_ok=True)
    warc = OUT / "extract" / "pages.warc.gz"
    warc.parent.mkdir(exist_ok=True)
    ids = write_warc(pages, root, warc)
    results: dict[str, dict] = {}
    texts: dict[str, dict[str, str]] = {}
    for name, fn in (("refinery", run_refinery), ("datatrove", run_datatrove), ("resiliparse", run_resiliparse)):
        texts[name], cpu, wall = _timed(lambda fn=fn: fn(warc))
        results[name] = {"pages": len(texts[name]), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                         "pages_per_cpu_s": round(len(pages) / cpu, 1), "pages_per_wall_s": round(len(pages) / wall, 1),
                         "furniture_share": round(furniture_share([texts[name].get(i, "") for i in ids]), 4)}
    for name in ("refinery", "resiliparse"):
        f1 = [token_f1(texts[name].get(i), texts["datatrove"].get(i)) for i in ids]
        results[name]["f1_vs_datatrove_mean"] = round(statistics.fmean(f1), 4)
        results[name]["f1_vs_datatrove_p10"] = round(sorted(f1)[len(f1) // 10], 4)
    summary = {"pages": len(pages), "source": str(root), "warc_bytes": warc.stat().st_size, **results,
               "speed_ratio_refinery_vs_datatrove": round(results["refinery"]["pages_per_cpu_s"]
                                                          / results["datatrove"]["pages_per_cpu_s"], 2)}
    emit_report(summary, Path(args.json))


if __name__ == "__main__":
    main()
