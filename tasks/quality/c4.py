"""C4 attributes (Raffel et al. 2020), defined as datatrove's C4QualityFilter computes them.

C4 walks the lines of a page, removing lines (too-long word, no terminal punctuation, too few words,
'javascript', policy phrases) and dropping the page on 'lorem ipsum' or '{' in a surviving line, or
when fewer than 5 sentences survive. Refinery never edits text, so it stores what that walk sees:
the surviving sentence count and how many surviving lines hit the two page-level rules. Both are
computed as if the page-level rules were off, which keeps every threshold re-decidable from the
stored values alone (when a page rule is on, a hit drops the page whatever the sentence count).
"""

from __future__ import annotations

import re

import numpy as np

from refinery.tasks.quality.config import C4Config
from refinery.tasks.quality.text_stats import ParsedDocs, sentences_per_line
from refinery.tasks.quality.tokenizer import WordTokenizer

__all__ = ["C4_ATTRIBUTES", "POLICY_SUBSTRINGS", "c4_attributes"]

C4_ATTRIBUTES = (
    "c4.num_sentences",  # sentences in the lines the line rules keep
    "c4.lorem_ipsum_lines",  # surviving lines (before the javascript rule) containing "lorem ipsum"
    "c4.curly_bracket_lines",  # surviving lines (after the javascript rule) containing "{"
    "c4.kept_lines",  # lines the line rules keep
    "c4.lines_with_terminal_punct_frac",  # of non-empty lines
    "c4.short_lines_frac",  # of non-empty lines: fewer than min_words_per_line words
    "c4.javascript_lines",  # non-empty lines mentioning "javascript"
    "c4.policy_lines",  # non-empty lines with a policy phrase
)

CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# Most policy phrases contain "cookie", so most lines need three substring searches, not six.
_COOKIE_PHRASES = tuple(p for p in POLICY_SUBSTRINGS if "cookie" in p)
_TERMS_OF_USE, _PRIVACY_POLICY = (p for p in POLICY_SUBSTRINGS if "cookie" not in p)


def c4_attributes(docs: ParsedDocs, cfg: C4Config) -> np.ndarray:
    """One row per document, one column per :data:`C4_ATTRIBUTES` name."""
    sentences = docs.sentences_per_line().tolist()
    words_per_line = docs.chunks_per_line.tolist()
    line_offsets = docs.line_offsets.tolist()
    lines = docs.lines
    min_words = cfg.min_words_per_line
    max_word = cfg.max_word_length
    remove_citations, no_terminal_punct = cfg.remove_citations, cfg.filter_no_terminal_punct
    filter_javascript, filter_policy = cfg.filter_javascript, cfg.filter_policy
    out = np.empty((len(docs), len(C4_ATTRIBUTES)))
    for d in range(len(docs)):
        n_lines = terminal = short = javascript = policy = 0
        num_sentences = lorem = curly = kept = 0
        for i in range(line_offsets[d], line_offsets[d + 1]):
            line = lines[i].strip()
            if not line:
                continue
            n_lines += 1
            n_words = words_per_line[i]
            too_long = max_word is not None and len(line) > max_word and max(map(len, line.split())) > max_word
            cited = False
            if remove_citations and "[" in line:
                stripped = CITATION_RE.sub("", line)
                cited = stripped != line
                line = stripped
            ends_well = line.endswith(END_PUNCTUATION) and not line.endswith(ELLIPSIS)
            is_short = min_words is not None and n_words < min_words
            lower = line.lower()
            has_js = "javascript" in lower
            has_policy = (
                _TERMS_OF_USE in lower or _PRIVACY_POLICY in lower
                or ("cookie" in lower and any(p in lower for p in _COOKIE_PHRASES))
            )
            terminal += ends_well
            short += is_short
            javascript += has_js
            policy += has_policy
            # C4's line walk, in C4's order.
            if too_long or (no_terminal_punct and not ends_well) or is_short:
                continue
            if "lorem ipsum" in lower:
                lorem += 1
            if filter_javascript and has_js:
                continue
            if "{" in line:
                curly += 1
            if filter_policy and has_policy:
                continue
            kept += 1
            num_sentences += _count_sentences(docs.tokenizer, line) if cited else sentences[i]
        out[d] = (
            num_sentences,
            lorem,
            curly,
            kept,
            terminal / n_lines if n_lines else np.nan,
            short / n_lines if n_lines else np.nan,
            javascript,
            policy,
        )
    return out


def _count_sentences(tokenizer: WordTokenizer, line: str) -> int:
    """Sentences of a line whose text changed (citations removed), so its tokens must be redone."""
    ids = tokenizer.ids(line)
    return int(sentences_per_line(tokenizer.flags[ids], np.array([len(ids)]))[0])
