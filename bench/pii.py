"""Personal data: Refinery's pii family against datatrove's PIIFormatter, side by side, one core.

    python -m bench.pii --rounds 3

On the bundled BBC articles and sections of Python's reference and docstrings (real prose and real technical
text, which carries version numbers, dates and addresses of examples): documents per CPU second
of finding and redacting (Refinery: e-mails, public IPs and phone numbers; datatrove: e-mails and
public IPv4, it has no phone detector), the share of the quality stage's other scoring it adds,
and the matches each finds that the other does not (printed, to read).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from tests.fixtures.corpora import bbc_texts


def technical(limit: int) -> list[str]:
    """Sections of the Python language reference and of docstrings (tests/fixtures/techdocs.py)."""
    from tests.fixtures.techdocs import techdoc_sections

    return [s.text for s in techdoc_sections(limit)]


def main(argv: Sequence[str] | None = None) -> int:
    from datatrove.pipeline.formatters import PIIFormatter

    from refinery.tasks.quality import LanguageIdentifier, QualityConfig, score_documents
    from refinery.tasks.quality.config import PiiConfig
    from refinery.tasks.quality.pii import pii_attributes, redact

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docstrings", type=int, default=3000, help="technical sections to add")
    args = ap.parse_args(argv)
    texts = bbc_texts() + technical(args.docstrings)
    chars = sum(map(len, texts))
    print(f"{len(texts)} documents, {chars / len(texts):,.0f} characters each on average")
    cfg = PiiConfig(apply_to="all")
    theirs = PIIFormatter(email_replacement="<email>", ip_replacement="<ip>")
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved: machine noise hits both alike
        t = time.process_time()
        counts = pii_attributes(texts, cfg)["pii.count"]
        ours = [redact(texts[i], cfg) if counts[i] > 0 else texts[i] for i in range(len(texts))]
        best["refinery"] = min(best.get("refinery", 1e9), time.process_time() - t)
        t = time.process_time()
        formatted = [theirs.format(text) for text in texts]
        best["datatrove"] = min(best.get("datatrove", 1e9), time.process_time() - t)
    rest = QualityConfig(pii={"enabled": False})
    lid = LanguageIdentifier.from_config(rest.langid)
    t = time.process_time()
    score_documents(texts, rest, langid=lid)
    scoring = time.process_time() - t
    for name, seconds in best.items():
        print(f"{name}: {len(texts) / seconds:,.0f} docs/s, {chars / seconds / 1e6:.1f} M chars/s")
    print(f"refinery / datatrove speed: {best['datatrove'] / best['refinery']:.2f}x; "
          f"the rest of quality scoring: {len(texts) / scoring:,.0f} docs/s, pii adds "
          f"{100 * best['refinery'] / scoring:.1f}%")
    changed_ours = np.flatnonzero([a != b for a, b in zip(ours, texts)])
    changed_theirs = np.flatnonzero([a != b for a, b in zip(formatted, texts)])
    print(f"documents redacted: refinery {changed_ours.size}, datatrove {changed_theirs.size}, "
          f"both {np.intersect1d(changed_ours, changed_theirs).size}")
    for label, only in (("only datatrove", np.setdiff1d(changed_theirs, changed_ours)),
                        ("only refinery", np.setdiff1d(changed_ours, changed_theirs))):
        for i in only[:10].tolist():
            words = texts[i].split()
            shown = [w for w, x in zip(words, (formatted if label == "only datatrove" else ours)[i].split()) if w != x]
            print(f"  {label}: doc {i}: {shown[:4]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
