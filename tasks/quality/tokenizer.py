"""English word tokenizer that reproduces spaCy's blank ``en`` tokenizer, fast enough for rule scoring.

datatrove's Gopher, C4 and FineWeb filters count words with spaCy's tokenizer, so published thresholds
(e.g. "at least 80% of words contain a letter") are defined on *spaCy's* words. Loading spaCy costs
~10 ms per news article; this module ports its algorithm (whitespace split, special cases, prefix /
suffix peeling, infix splitting, URL match) onto tables vendored in :mod:`tasks.quality._spacy_en`,
and memoises every whitespace-delimited chunk; :meth:`WordTokenizer.ids_by_line` splits many lines at once
with Arrow, so a warm tokenizer does one dict lookup per *distinct* chunk of a batch.

Known difference from spaCy: the post-pass that re-merges special cases found *across* affix splits
(spaCy's ``_special_matcher``) is skipped; it only matters for emoticons glued to punctuation.

Each distinct token gets a small integer id; per-id properties (length, letter / symbol / punctuation
flags) live in numpy arrays so callers can aggregate a document's tokens without a Python loop.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.tasks.quality import _spacy_en as sp
from refinery.tasks.quality.config import STOP_WORDS

__all__ = [
    "FLAG_ALPHA",
    "FLAG_NON_SYMBOL",
    "FLAG_PUNCT",
    "FLAG_SENT_END",
    "MAX_CACHED_CHUNKS",
    "PUNCTUATION_SET",
    "STOP_WORD_SHIFT",
    "TERMINAL_PUNCTUATION",
    "WordTokenizer",
    "default_tokenizer",
    "tokenize",
    "tokenize_chunk",
]

# datatrove.utils.text.PUNCTUATION (Apache-2.0): a word made only of these is a "symbol" for Gopher.
PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))))
)
TERMINAL_PUNCTUATION = frozenset(
    "!.?։؝؞؟۔܀܁܂߹࠷࠹࠽࠾।॥၊။።፧፨᙮᜵᜶។៕៖៙៚᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᭽᭾᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼⹓⹔。꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡"
    "\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87"
    "\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141"
    "\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca"
    "\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3"
    "\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e"
    "\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7"
    "\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44"
    "\U00016e98\U0001bc9f\U0001da88"
)
PUNCTUATION_SET = frozenset(PUNCTUATION) | TERMINAL_PUNCTUATION

# Per-token flag bits (see WordTokenizer.flags).
FLAG_NON_SYMBOL = 1  # some character is not in PUNCTUATION_SET (Gopher's "word")
FLAG_ALPHA = 2  # some character is a letter (str.isalpha)
FLAG_PUNCT = 4  # every character is Unicode punctuation (spaCy's Token.is_punct)
FLAG_SENT_END = 8  # the token is one of the sentencizer's sentence-final characters
# Bits 4.. mark Gopher's default stop words, so a document's distinct stop words are one OR-reduce.
STOP_WORD_SHIFT = 4
_STOP_BITS = {word: 1 << (STOP_WORD_SHIFT + i) for i, word in enumerate(STOP_WORDS)}

# Chunks and token ids are memoised per thread; past this many chunks the memo starts over, which
# bounds memory (~100 bytes a chunk) on web-scale vocabularies.
MAX_CACHED_CHUNKS = 500_000

_DIGITS = frozenset("0123456789")
_MASK64 = (1 << 64) - 1
_EXCEPTIONS: dict[str, tuple[str, ...]] = sp.EXCEPTIONS
_SENT_END = frozenset(sp.SENT_END_CHARS)
_ICON_RE = re.compile(f"[{sp.ICONS}]")
_UPPER_RE = re.compile(f"[{sp.ALPHA_UPPER}]")
# Characters after which a final "." is split off: spaCy's suffix rule
# r"(?<=[0-9{al}{e}{p}(?:{q})])\." -- PUNCT is an alternation string pasted into a class, so its "|"
# and the "(?:" characters are literally members, as in spaCy.
_DOT_AFTER_RE = re.compile(f"[0-9{sp.ALPHA_LOWER}%²\\-\\+{sp.PUNCT}(?:{sp.CONCAT_QUOTES})]")
_INFIX_RE = re.compile(sp.INFIX_PATTERN)
_URL_RE = re.compile("(?u)" + sp.URL_PATTERN)
_UNITS_OR_CURRENCY = frozenset(sp.LIST_UNITS) | frozenset(c.replace("\\", "") for c in sp.LIST_CURRENCY)
_MAX_UNIT_LEN = max(map(len, _UNITS_OR_CURRENCY))
_HAS_DIGIT = re.compile("[0-9]").search


def _unescape(branches: Sequence[str]) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", b) for b in branches if b]


# The literal alternatives of spaCy's prefix and suffix lists (spacy/lang/punctuation.py); the regex
# alternatives (ellipses, "+", icons, "'s", units, currency, "." rules) are coded in the functions.
_PREFIX_LITERALS = ["§", "%", "=", "—", "–", *_unescape(sp.LIST_PUNCT), *_unescape(sp.LIST_QUOTES)]
_PREFIX_CHARS = frozenset(lit for lit in _PREFIX_LITERALS if len(lit) == 1) | frozenset(
    c for c in _unescape(sp.LIST_CURRENCY) if len(c) == 1
)
# Multi-character prefixes that can win: "……" never does ("…" is listed first).
_PREFIX_CODES = tuple(c for c in _unescape(sp.LIST_CURRENCY) if len(c) > 1)
_SUFFIX_LITERALS = [*_unescape(sp.LIST_PUNCT), "…", *_unescape(sp.LIST_QUOTES), "'s", "'S", "’s", "’S", "—", "–"]
_SUFFIX_CHARS = frozenset(lit for lit in _SUFFIX_LITERALS if len(lit) == 1)
_SUFFIX_MULTI = tuple(sorted({lit for lit in _SUFFIX_LITERALS if len(lit) > 1}, key=len, reverse=True))


def _prefix_len(s: str) -> int:
    """Length of the prefix spaCy's ``prefix_search`` splits off ``s`` (0 for none)."""
    c = s[0]
    if c == ".":  # r"\.\.+" is the only prefix starting with "."
        run = len(s) - len(s.lstrip("."))
        return run if run >= 2 else 0
    if c == "+":  # r"\+(?![0-9])"
        return 0 if len(s) > 1 and s[1] in _DIGITS else 1
    if c in _PREFIX_CHARS:
        return 1
    for code in _PREFIX_CODES:
        if s.startswith(code):
            return len(code)
    if c > "\x7f" and _ICON_RE.match(c):
        return 1
    return 0


def _suffix_len(s: str) -> int:
    """Length of the suffix spaCy's ``suffix_search`` splits off ``s`` (0 for none).

    spaCy searches ``branch$`` alternatives left to right, so the winner is the longest suffix any
    branch matches.
    """
    n = len(s)
    c = s[-1]
    if c == ".":
        run = n - len(s.rstrip("."))
        if run >= 2:
            return run
        if n < 2:
            return 0
        p = s[-2]
        if _DOT_AFTER_RE.match(p):
            return 1
        if n >= 3 and ((p in "FfCcKk" and s[-3] == "°") or (_UPPER_RE.match(p) and _UPPER_RE.match(s[-3]))):
            return 1
        return 0
    best = 0
    if c in _SUFFIX_CHARS or (c > "\x7f" and _ICON_RE.match(c)):
        best = 1
    for lit in _SUFFIX_MULTI:
        if len(lit) > best and s.endswith(lit):
            best = len(lit)
            break
    # r"(?<=[0-9])\+", r"(?<=[0-9])(?:CURRENCY)", r"(?<=[0-9])(?:UNITS)": the unit must follow a digit
    # directly, and units contain no ASCII digit, so only the tail after the last digit can match.
    if not _HAS_DIGIT(s, max(0, n - _MAX_UNIT_LEN - 1)):
        return best
    for size in range(min(_MAX_UNIT_LEN, n - 1), best, -1):
        if s[-size - 1] in _DIGITS and (s[-size:] in _UNITS_OR_CURRENCY or s[-size:] == "+"):
            return size
    return best


def _split_infixes(s: str) -> list[str]:
    if s.isalnum():
        return [s]
    out = []
    start = 0
    for m in _INFIX_RE.finditer(s):
        a, b = m.span()
        if a == 0:  # spaCy ignores an infix at the very start
            continue
        if a != start:
            out.append(s[start:a])
        if a != b:
            out.append(s[a:b])
        start = b
    if start < len(s):
        out.append(s[start:])
    return out


def _affix_tokenize(s: str, specials: Mapping[str, tuple[str, ...]]) -> list[str]:
    """spaCy ``Tokenizer._tokenize`` (``_split_affixes`` + ``_attach_tokens``) for one chunk."""
    special = specials.get(s)
    if special is not None:
        return list(special)
    if s.isalpha():  # no affix or infix rule can fire inside a run of letters
        return [s]
    prefixes: list[str] = []
    suffixes: list[str] = []
    string = s
    last_size = -1
    while string and len(string) != last_size:
        if string in specials:
            break
        last_size = len(string)
        pre = _prefix_len(string)
        if pre:
            minus_pre = string[pre:]
            if minus_pre and minus_pre in specials:
                prefixes.append(string[:pre])
                string = minus_pre
                break
        rest = string[pre:]
        suf = _suffix_len(rest) if rest else 0
        if suf:
            minus_suf = string[:-suf]
            if minus_suf and minus_suf in specials:
                suffixes.append(string[-suf:])
                string = minus_suf
                break
        if pre and suf and pre + suf <= len(string):
            prefixes.append(string[:pre])
            suffixes.append(string[-suf:])
            string = string[pre:-suf]
        elif pre:
            prefixes.append(string[:pre])
            string = string[pre:]
        elif suf:
            suffixes.append(string[-suf:])
            string = string[:-suf]
    tokens = prefixes
    if string:
        special = specials.get(string)
        if special is not None:
            tokens.extend(special)
        elif "." in string and _URL_RE.match(string):
            tokens.append(string)
        else:
            tokens.extend(_split_infixes(string))
    tokens.extend(reversed(suffixes))
    return tokens


@functools.cache
def _special_patterns() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Special cases that affix rules would split, keyed by their first affix token.

    spaCy re-merges these after tokenizing ("$5m." -> "$", "5", "m." because "m." is a special case).
    """
    out: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for key in _EXCEPTIONS:
        pattern = tuple(_affix_tokenize(key, {}))
        if len(pattern) > 1:
            out.setdefault(pattern[0], []).append((pattern, key))
    return out


def _merge_specials(tokens: list[str]) -> list[str]:
    patterns = _special_patterns()
    matches = []
    for i, tok in enumerate(tokens):
        for pattern, key in patterns.get(tok, ()):
            if tuple(tokens[i : i + len(pattern)]) == pattern:
                matches.append((i, i + len(pattern), key))
    if not matches:
        return tokens
    # spaCy's _filter_special_spans: longest first, then leftmost; a span is dropped if its first or
    # last token is covered by an earlier pick (or by any earlier candidate, as in spaCy).
    matches.sort(key=lambda m: (m[1] - m[0], -m[0]))
    seen: set[int] = set()
    chosen = []
    for start, end, key in reversed(matches):
        if start not in seen and end - 1 not in seen:
            chosen.append((start, end, key))
        seen.update(range(start, end))
    out: list[str] = []
    pos = 0
    for start, end, key in sorted(chosen):
        out.extend(tokens[pos:start])
        out.extend(_EXCEPTIONS[key])
        pos = end
    out.extend(tokens[pos:])
    return out


def tokenize_chunk(s: str) -> tuple[str, ...]:
    """spaCy's tokens for one whitespace-free chunk ``s``."""
    tokens = _affix_tokenize(s, _EXCEPTIONS)
    if len(tokens) > 1:
        tokens = _merge_specials(tokens)
    return tuple(tokens)


def tokenize(text: str) -> list[str]:
    """spaCy-compatible word tokens of ``text`` (whitespace dropped, as datatrove does)."""
    return [tok for chunk in text.split() for tok in tokenize_chunk(chunk)]


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in token)


def _token_flags(token: str) -> int:
    flags = 0
    if any(ch not in PUNCTUATION_SET for ch in token):
        flags |= FLAG_NON_SYMBOL
    if any(ch.isalpha() for ch in token):
        flags |= FLAG_ALPHA
    if _is_punct(token):
        flags |= FLAG_PUNCT
    if token in _SENT_END:
        flags |= FLAG_SENT_END
    return flags | _STOP_BITS.get(token, 0)


def _splitmix64(x: int) -> int:
    """A well-mixed 64-bit value per token id: n-gram hashes are built from these."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _ChunkMemo(dict[str, bytes]):
    """chunk -> its token ids as int32 bytes; a miss tokenizes the chunk.

    Bytes, so a document's ids are one ``b"".join`` + ``np.frombuffer`` away, and
    ``map(memo.__getitem__, chunks)`` stays in C on hits.
    """

    __slots__ = ("owner",)

    def __init__(self, owner: WordTokenizer) -> None:
        super().__init__()
        self.owner = owner

    def __missing__(self, chunk: str) -> bytes:
        ids = np.array([self.owner.token_id(t) for t in tokenize_chunk(chunk)], dtype=np.int32).tobytes()
        self[chunk] = ids
        return ids


class WordTokenizer:
    """Memoising tokenizer that maps text to token-id arrays plus per-id properties.

    Ids are only stable between two calls of :meth:`maybe_reset`; read :attr:`flags`,
    :attr:`lengths` and :attr:`hashes` (a random-looking uint64 per id) after tokenizing (they are reallocated as the vocabulary grows). Not thread-safe:
    use :func:`default_tokenizer`, which keeps one per thread.
    """

    def __init__(self, *, max_cached_chunks: int = MAX_CACHED_CHUNKS) -> None:
        self.max_cached_chunks = max_cached_chunks
        self._reset()

    def _reset(self) -> None:
        self._chunks = _ChunkMemo(self)
        self._ids: dict[str, int] = {}
        self.tokens: list[str] = []
        self.flags = np.zeros(1024, dtype=np.uint16)
        self.lengths = np.zeros(1024, dtype=np.int32)
        self.hashes = np.zeros(1024, dtype=np.uint64)

    def maybe_reset(self) -> None:
        """Forget the memo if it grew past ``max_cached_chunks``; call between documents only."""
        if len(self._chunks) > self.max_cached_chunks:
            self._reset()

    def token_id(self, token: str) -> int:
        tid = self._ids.get(token)
        if tid is None:
            tid = len(self.tokens)
            if tid == len(self.flags):
                self.flags = np.concatenate([self.flags, np.zeros_like(self.flags)])
                self.lengths = np.concatenate([self.lengths, np.zeros_like(self.lengths)])
                self.hashes = np.concatenate([self.hashes, np.zeros_like(self.hashes)])
            self._ids[token] = tid
            self.tokens.append(token)
            self.flags[tid] = _token_flags(token)
            self.lengths[tid] = len(token)
            self.hashes[tid] = _splitmix64(tid)
        return tid

    def ids(self, text: str) -> np.ndarray:
        """Token ids (int32) of ``text``."""
        return np.frombuffer(b"".join(map(self._chunks.__getitem__, text.split())), dtype=np.int32)

    def ids_by_line(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of all ``lines`` concatenated, tokens per line, and whitespace chunks per line.

        Arrow splits the lines into chunks and finds the distinct ones in C (its whitespace is
        ``str.split``'s, code point for code point; tests/quality/test_tokenizer.py checks all of
        them), so Python only looks up each distinct chunk of the call once: call it with many
        documents' lines at a time. Lines Arrow cannot hold (lone surrogates) go the plain way.
        """
        try:
            array = pa.array(lines, type=pa.large_string())
        except UnicodeEncodeError:
            return self._ids_by_line_python(lines)
        trimmed = pc.utf8_trim_whitespace(array)
        parts = pc.utf8_split_whitespace(trimmed)  # a blank line gives one "" chunk, which has no tokens
        offsets = parts.offsets.to_numpy().astype(np.int64)
        chunks = parts.values.slice(offsets[0], offsets[-1] - offsets[0])
        offsets -= offsets[0]
        encoded = pc.dictionary_encode(chunks)
        which = encoded.indices.to_numpy()
        blobs = list(map(self._chunks.__getitem__, encoded.dictionary.to_pylist()))
        per_chunk = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) >> 2
        distinct_ids = np.frombuffer(b"".join(blobs), dtype=np.int32)
        counts = per_chunk[which]
        if len(blobs) == len(distinct_ids):  # every chunk is one token
            ids = distinct_ids[which]
        else:  # gather each chunk's run of ids: position in distinct_ids = its run start + rank in run
            ends = np.cumsum(counts)
            run_start = np.cumsum(per_chunk) - per_chunk
            ids = distinct_ids[np.repeat(run_start[which] - (ends - counts), counts) + np.arange(ends[-1])]
        token_ends = np.concatenate(((0,), np.cumsum(counts)))
        tokens_per_line = token_ends[offsets[1:]] - token_ends[offsets[:-1]]
        chunks_per_line = np.diff(offsets) - (pc.binary_length(trimmed).to_numpy() == 0)
        return ids, tokens_per_line, chunks_per_line

    def _ids_by_line_python(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`ids_by_line` with ``str.split`` and one memo lookup per chunk (the reference)."""
        get = self._chunks.__getitem__
        chunks = [line.split() for line in lines]
        per_line = [b"".join(map(get, c)) for c in chunks]
        n = len(lines)
        tokens_per_line = np.fromiter(map(len, per_line), dtype=np.int64, count=n) // 4
        chunks_per_line = np.fromiter(map(len, chunks), dtype=np.int64, count=n)
        return np.frombuffer(b"".join(per_line), dtype=np.int32), tokens_per_line, chunks_per_line


_local = threading.local()


def default_tokenizer() -> WordTokenizer:
    """This thread's shared :class:`WordTokenizer`."""
    tok = getattr(_local, "tokenizer", None)
    if tok is None:
        tok = _local.tokenizer = WordTokenizer()
    return tok
