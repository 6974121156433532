"""Language ID reading the whole text vs its first N characters, side by side on the bundled corpus.

    python -m bench.langid --max-chars 1000 --rounds 3

Interleaved rounds in one process (machine noise hits both alike): docs/s per CPU second of
language ID alone and of every quality family, and how many keep/drop decisions differ.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from tests.fixtures.corpora import bbc_texts


def main(argv: Sequence[str] | None = None) -> int:
    from refinery.tasks.quality import LanguageIdentifier, QualityConfig, decide, score_documents

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-chars", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    texts = bbc_texts()
    cfgs = {"whole text": QualityConfig(langid={"max_chars": None}),
            f"first {args.max_chars}": QualityConfig(langid={"max_chars": args.max_chars})}
    lids = {k: LanguageIdentifier.from_config(c.langid) for k, c in cfgs.items()}
    decisions, english = {}, {}
    for rnd in range(args.rounds):
        row = {}
        for k, cfg in cfgs.items():
            t = time.process_time()
            attrs = score_documents(texts, cfg, langid=lids[k])
            row[f"{k}: all families"] = round(len(texts) / (time.process_time() - t))
            decisions[k], english[k] = decide(attrs, cfg), attrs["langid.en"]
            t = time.process_time()
            lids[k].attributes(texts)
            row[f"{k}: language ID"] = round(len(texts) / (time.process_time() - t))
        print(f"round {rnd}: docs/s per core", row)
    a, b = decisions.values()
    diff = np.abs(np.subtract(*english.values()))
    print(f"{len(texts)} documents: {sum(x != y for x, y in zip(a, b))} keep/drop decisions differ; "
          f"|Δ langid.en| mean {diff.mean():.4f}, max {diff.max():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
