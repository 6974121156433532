"""Quality-filter benchmark: Refinery's rules vs datatrove's on the same real documents.

    python -m bench.quality --docs 3000 --json bench/out/quality.json [--results bench/RESULTS.md]
                            [--texts SHARD.parquet] [--baseline GIT_REV] [--rounds 5]

Builds a mixed set (BBC News articles plus crafted low-quality variants of other articles, so the
filters actually fire: tests/fixtures/crafted.py), runs Refinery's ``score_documents`` + ``decide`` and
datatrove's Gopher quality / Gopher repetition / C4 / FineWeb / language filters per document
(tests/fixtures/parity.py, which the parity test uses too), and reports per-family keep/drop
agreement and documents per second per core (CPU time of this single process).

``--texts`` adds the speed on the ``text`` column of a Parquet file (e.g. an ingest shard of
``bench.nightly``). ``--baseline REV`` loads ``tasks/quality`` as it was at git revision REV (as a
separate package, imports rewritten) and times it against the working tree in one process, rounds
interleaved, on the BBC articles and the ``--texts`` documents, with the default config: CPU time
per round, so a loaded machine affects both sides alike; it also reports the largest difference
between the two versions' attribute values.

datatrove and spaCy are in the locked test set (``make install``). ``--write-tokenizer-tables``
regenerates ``tasks/quality/_spacy_en.py`` from the installed spaCy.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.fixtures.crafted import bbc_files, crafted_documents
from tests.fixtures.parity import FAMILY_FILTERS, agreement, disagreements, run_datatrove, run_refinery


def mixed_set(n_docs: int, *, seed: int = 0, crafted_fraction: float = 0.35) -> tuple[list[str], dict]:
    """``n_docs`` texts: BBC articles and crafted variants of *other* BBC articles."""
    bbc = bbc_files()
    rng = random.Random(seed)
    order = list(range(len(bbc)))
    rng.shuffle(order)
    n_crafted = round(n_docs * crafted_fraction)
    n_real = n_docs - n_crafted
    real = [bbc[i] for i in order[: min(n_real, len(bbc))]]
    while len(real) < n_real:  # more than 2,225 requested: reuse articles
        real.append(bbc[order[len(real) % len(bbc)]])
    sources = [bbc[i] for i in order[::-1]]
    crafted = crafted_documents(sources, n=n_crafted, seed=seed, use_spacy_examples=True)
    texts = [t for _, t in real] + [c.text for c in crafted]
    kinds: dict[str, int] = {}
    for c in crafted:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    composition = {"bbc_articles": len(real), "crafted": len(crafted), "crafted_kinds": kinds, "seed": seed}
    return texts, composition


def throughput_bbc(n: int, cfg) -> dict[str, float]:
    """Refinery docs/s per core on plain BBC articles, cold (fresh tokenizer memo) and warm."""
    return throughput([t for _, t in bbc_files()][:n], cfg)


def throughput(texts: Sequence[str], cfg) -> dict[str, float]:
    """Refinery docs/s per core on ``texts``, cold (fresh tokenizer memo) and warm."""
    from refinery.tasks.quality import score_documents
    from refinery.tasks.quality.tokenizer import default_tokenizer

    default_tokenizer()._reset()
    out = {}
    for label in ("cold", "warm"):
        start = time.process_time()
        score_documents(texts, cfg)
        out[label] = len(texts) / (time.process_time() - start)
    return out


def load_baseline(rev: str):  # noqa: ANN201 - a module
    """``tasks/quality`` at git revision ``rev``, imported as the package ``quality_baseline``."""
    import importlib

    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    names = subprocess.run([*git, "ls-tree", "--name-only", rev, "tasks/quality/"], check=True,
                           capture_output=True, text=True).stdout.split()
    package = Path(tempfile.mkdtemp(prefix="quality-baseline-")) / "quality_baseline"
    package.mkdir()
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run([*git, "show", f"{rev}:{name}"], check=True, capture_output=True, text=True).stdout
            (package / Path(name).name).write_text(source.replace("refinery.tasks.quality", "quality_baseline"))
    sys.path.insert(0, str(package.parent))
    return importlib.import_module("quality_baseline")


def compare_speed(texts: Sequence[str], baseline, rounds: int) -> dict:  # noqa: ANN001
    """Docs per CPU second of ``score_documents`` (default config, warm tokenizer and model), the
    baseline package against the working tree, interleaved rounds; and their largest attribute difference."""
    import refinery.tasks.quality as current

    sides = {"before": baseline, "after": current}
    cfgs = {k: m.QualityConfig() for k, m in sides.items()}
    lids = {k: m.LanguageIdentifier.from_config(cfgs[k].langid) for k, m in sides.items()}
    attrs = {k: m.score_documents(texts, cfgs[k], langid=lids[k]) for k, m in sides.items()}  # also warms up
    seconds: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(rounds):
        for k in (("before", "after") if r % 2 == 0 else ("after", "before")):
            start = time.process_time()
            sides[k].score_documents(texts, cfgs[k], langid=lids[k])
            seconds[k].append(time.process_time() - start)
    diffs = [float(np.nanmax(np.abs(attrs["before"][name] - attrs["after"][name]), initial=0.0))
             for name in attrs["before"]]
    same_nan = all(np.array_equal(np.isnan(attrs["before"][n]), np.isnan(attrs["after"][n])) for n in attrs["before"])
    out = {f"{k}_docs_per_cpu_s": len(texts) / statistics.median(v) for k, v in seconds.items()}
    out["speedup_median"] = statistics.median(seconds["before"]) / statistics.median(seconds["after"])
    out["speedup_per_round"] = [b / a for b, a in zip(seconds["before"], seconds["after"])]
    out["same_attribute_names"] = sorted(attrs["before"]) == sorted(attrs["after"])
    out["max_abs_attribute_diff"] = max(diffs) if diffs else 0.0
    out["same_nan_positions"] = same_nan
    out["docs"] = len(texts)
    out["rounds"] = rounds
    return out


def parquet_texts(path: Path, n: int) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["text"]).column("text").to_pylist()[:n]


def main(argv: Sequence[str] | None = None) -> int:
    from refinery.tasks.quality.config import DEFAULT_LANGID_MAX_CHARS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000, help="documents in the mixed set")
    ap.add_argument("--json", type=Path, default=Path("bench/out/quality.json"), help="where to write results")
    ap.add_argument("--results", type=Path, default=None, help="append a '## Quality' section to this markdown file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--langid-max-chars", type=int, default=DEFAULT_LANGID_MAX_CHARS,
                    help="QualityConfig.langid.max_chars (0: the whole text, as datatrove reads it)")
    ap.add_argument("--texts", type=Path, default=None, help="also time the text column of this Parquet file")
    ap.add_argument("--texts-docs", type=int, default=2500, help="documents of --texts to use")
    ap.add_argument("--baseline", default=None, help="git revision whose tasks/quality to time against")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per side with --baseline")
    ap.add_argument("--write-tokenizer-tables", action="store_true", help="regenerate tasks/quality/_spacy_en.py")
    args = ap.parse_args(argv)
    if args.write_tokenizer_tables:
        write_tokenizer_tables(Path(__file__).resolve().parents[1] / "tasks" / "quality" / "_spacy_en.py")
        return 0

    from refinery.tasks.quality import QualityConfig

    cfg = QualityConfig(langid={"max_chars": args.langid_max_chars or None})
    texts, composition = mixed_set(args.docs, seed=args.seed)
    ours, our_time, _ = run_refinery(texts, cfg)
    theirs, their_time = run_datatrove(texts, cfg.langid.languages)
    rules_only = cfg.model_copy(update={"langid": cfg.langid.model_copy(update={"enabled": False})})  # frozen
    bbc_speed = throughput_bbc(min(args.docs, 2225), cfg)
    bbc_speed_rules = throughput_bbc(min(args.docs, 2225), rules_only)

    extra_texts = parquet_texts(args.texts, args.texts_docs) if args.texts else None
    texts_speed = None
    if extra_texts is not None:
        texts_speed = {"path": str(args.texts), "docs": len(extra_texts),
                       "avg_chars": float(np.mean([len(t) for t in extra_texts])), **throughput(extra_texts, cfg)}
    speedup = None
    if args.baseline:
        baseline = load_baseline(args.baseline)
        speedup = {"baseline": args.baseline, "bbc": compare_speed([t for _, t in bbc_files()], baseline, args.rounds)}
        if extra_texts is not None:
            speedup["texts"] = compare_speed(extra_texts, baseline, args.rounds)

    families = [*FAMILY_FILTERS, "all"]
    result = {
        "docs": len(texts),
        "composition": composition,
        "avg_chars": float(np.mean([len(t) for t in texts])),
        "agreement": {f: agreement(ours[f], theirs[f]) for f in families},
        "refinery_drop_rate": {f: 1 - float(np.mean(ours[f])) for f in families},
        "datatrove_drop_rate": {f: 1 - float(np.mean(theirs[f])) for f in families},
        "disagreements": {f: disagreements(texts, ours[f], theirs[f]) for f in families},
        "refinery_docs_per_s_per_core": len(texts) / our_time,
        "datatrove_docs_per_s_per_core": len(texts) / their_time,
        "refinery_bbc_docs_per_s_per_core": bbc_speed,
        "refinery_bbc_rules_only_docs_per_s_per_core": bbc_speed_rules,
        "texts_docs_per_s_per_core": texts_speed,
        "speedup_vs_baseline": speedup,
        "config": {"langid_max_chars": args.langid_max_chars},
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "timing": "CPU seconds of this one process (time.process_time); per core = docs / CPU s",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    table = format_table(result)
    print(table)
    if args.results:
        append_results(args.results, result, table, argv if argv is not None else sys.argv[1:])
    return 0


def format_table(r: dict) -> str:
    lines = [
        f"docs: {r['docs']} ({r['composition']['bbc_articles']} BBC + {r['composition']['crafted']} crafted), "
        f"avg {r['avg_chars']:.0f} chars",
        "",
        "| family | agreement | Refinery drop rate | datatrove drop rate |",
        "|---|---|---|---|",
    ]
    for f, a in r["agreement"].items():
        lines.append(f"| {f} | {a:.2%} | {r['refinery_drop_rate'][f]:.1%} | {r['datatrove_drop_rate'][f]:.1%} |")
    lines += [
        "",
        "| docs/s per core (mixed set, all families + language ID) | |",
        "|---|---|",
        f"| Refinery | {r['refinery_docs_per_s_per_core']:,.0f} |",
        f"| datatrove | {r['datatrove_docs_per_s_per_core']:,.0f} |",
        f"| Refinery on BBC, cold / warm tokenizer memo | {r['refinery_bbc_docs_per_s_per_core']['cold']:,.0f} / "
        f"{r['refinery_bbc_docs_per_s_per_core']['warm']:,.0f} |",
        f"| Refinery on BBC, rules only, cold / warm | {r['refinery_bbc_rules_only_docs_per_s_per_core']['cold']:,.0f} / "
        f"{r['refinery_bbc_rules_only_docs_per_s_per_core']['warm']:,.0f} |",
    ]
    if r.get("texts_docs_per_s_per_core"):
        t = r["texts_docs_per_s_per_core"]
        lines.append(f"| Refinery on {t['docs']:,} docs of {Path(t['path']).name}, cold / warm | "
                     f"{t['cold']:,.0f} / {t['warm']:,.0f} |")
    if r.get("speedup_vs_baseline"):
        s = r["speedup_vs_baseline"]
        lines += ["", f"| vs `{s['baseline']}` (default config, warm, median of interleaved rounds) | before | after | "
                      "speed-up | max attribute diff |", "|---|---|---|---|---|"]
        for key in ("bbc", "texts"):
            if key in s:
                c = s[key]
                lines.append(f"| {key} ({c['docs']:,} docs, {c['rounds']} rounds) | {c['before_docs_per_cpu_s']:,.0f} | "
                             f"{c['after_docs_per_cpu_s']:,.0f} | {c['speedup_median']:.2f}x | {c['max_abs_attribute_diff']:.1e} |")
    return "\n".join(lines)


def append_results(path: Path, result: dict, table: str, argv: Sequence[str]) -> None:
    """Replace (or add) the '## Quality' section of ``path``, leaving other sections alone."""
    section = (
        "## Quality\n\n"
        f"Command: `python -m bench.quality {' '.join(argv)}`\n\n"
        f"{table}\n\n"
        f"Timing: {result['timing']}.\n"
    )
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Quality\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def write_tokenizer_tables(out: Path) -> None:
    """Regenerate the vendored spaCy English tokenizer tables from the installed spaCy."""
    import spacy
    from spacy.lang import char_classes as cc
    from spacy.lang.tokenizer_exceptions import URL_PATTERN
    from spacy.pipeline import Sentencizer
    from spacy.symbols import ORTH

    tok = spacy.blank("en").tokenizer
    lines = [
        '"""spaCy\'s English tokenizer tables, vendored so word counts match datatrove\'s tokenizer.',
        "",
        f"Generated by `python -m bench.quality --write-tokenizer-tables` from spaCy {spacy.__version__}",
        "(MIT License, Copyright (C) 2016-2024 ExplosionAI GmbH, 2016 spaCy GmbH, 2015 Matthew Honnibal).",
        'Do not edit by hand; regenerate instead."""',
        "",
        "# ruff: noqa: E501",
        f"SPACY_VERSION = {spacy.__version__!r}",
        "",
    ]
    for name in ("ALPHA", "ALPHA_LOWER", "ALPHA_UPPER", "CONCAT_QUOTES", "ICONS", "PUNCT", "HYPHENS", "LIST_PUNCT",
                 "LIST_QUOTES", "LIST_CURRENCY", "LIST_UNITS", "CURRENCY", "UNITS"):
        lines.append(f"{name} = {getattr(cc, name)!r}")
    lines.append(f"URL_PATTERN = {URL_PATTERN!r}")
    lines.append(f"SENT_END_CHARS = {tuple(Sentencizer.default_punct_chars)!r}")
    lines.append(f"PREFIX_PATTERN = {tok.prefix_search.__self__.pattern!r}")
    lines.append(f"SUFFIX_PATTERN = {tok.suffix_search.__self__.pattern!r}")
    lines.append(f"INFIX_PATTERN = {tok.infix_finditer.__self__.pattern!r}")
    lines.append("EXCEPTIONS = {")
    for key, value in sorted(tok.rules.items()):
        if not key.isspace():
            lines.append(f"    {key!r}: {tuple(d[ORTH] for d in value)!r},")
    lines.append("}")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
