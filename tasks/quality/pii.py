"""Personal data in text: e-mail addresses, IP addresses and phone numbers found, counted
(:func:`pii_attributes`, the ``pii.*`` attributes) and replaced by placeholders (:func:`redact`).

The detectors take the best of two published pipelines and keep false positives low on technical
text, where version strings, dates, ISBNs, hashes and code look like numbers and addresses:

* **e-mail**: datatrove's ``PIIFormatter`` pattern (a dot-atom local part, RFC 1035 domain
  labels), case-insensitive (datatrove's misses ``John.Smith@Example.com``) and with a letters-only
  top-level domain, as Dolma's tagger demands a dot in the domain: ``python@3.11``, ``a@b``, a
  decorator or a matrix product ``x@W.T`` are not addresses. The local part takes letters, digits
  and ``. _ % + -`` (RFC 5322 also allows ``/ ' { } ! # ...``, rare in addresses and common around
  them), so ``medium.com/@user.name`` and ``'a@b.org'`` keep their URL and quotes; an scp-style
  ``git@github.com:org/repo`` (a host, not a person) is none.
* **IP**: datatrove's octet pattern (0-255, no leading zero) validated by :mod:`ipaddress` and,
  as datatrove does by default, only *public* addresses counted (``192.168.1.1``, ``127.0.0.1``,
  ``10.0.0.1``, documentation and multicast ranges are nobody's); bounded so that an OID
  ``1.3.6.1.4.1`` or ``1.2.3.4.5`` is none; not after "version", "release", "build", "section"
  and the like, nor with four one-digit parts (``2.7.2.2``: a version or a section number; the
  public addresses of that shape are resolvers like ``8.8.8.8``). A four-part version written
  alone with a bigger part (``7.1.4.34``) still counts. IPv6: global unicast (2000::/3)
  addresses, validated the same way.
* **phone**: Dolma's ``pii_regex_with_counts_fast_v2`` tagger counts any ten digits after a space
  (``\\s+\\(?(\\d{3})\\)?[-\\. ]*(\\d{3})[-. ]?(\\d{4})``, long integers included) and datatrove has
  no phone detector, so the shapes here are stricter: ``+CC`` international numbers, North
  American ``(415) 555-2671`` / ``415-555-2671`` / ``1-800-555-0199`` (area code and exchange 2-9,
  as NANP numbers are), national numbers with a trunk 0 and 10 digits or more (``020 7946 0958``,
  ``030 12345678``, ``01 23 45 67 89``). A match needs separators (an unseparated run only after
  ``+``), 7 to 15 digits, one kind of separator when it is a dot (``+12.5 13.75`` is two numbers),
  and not only 0s and 1s; as in Dolma, none right after "isbn", "issn" or "doi". Dates
  (``2023-10-12``, ``12.10.2023``), versions, ISBNs (``978-3-16-148410-0``), long integers and hex
  ids have none of these shapes.

Detectors run e-mail, IP, phone; a later match overlapping an earlier one is not counted, so
counts and redaction agree span for span. Placeholders are Dolma's (``|||EMAIL_ADDRESS|||``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from refinery.tasks.quality.config import PiiConfig, QualityConfig

__all__ = ["PII_ATTRIBUTES", "applies_to", "document_has_url", "find_pii", "pii_attributes", "redact",
           "redact_documents", "redaction_key"]

PII_ATTRIBUTES = ("pii.emails", "pii.ips", "pii.phones", "pii.count")
_KINDS = ("email", "ip", "phone")

# Each pattern starts with a literal or a character class (a lookbehind comes after the first
# character): the regex engine then skips to candidates in C, ~5x faster on prose than a leading
# lookbehind, which is tried at every position.
# e-mail: found from its "@" (a literal); the local part ends there, starts where a word starts
_EMAIL_LOCAL = re.compile(r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*$", re.IGNORECASE)
_EMAIL_DOMAIN = re.compile(
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"  # labels, then a letters-only TLD
    r"(?![\w-]|:[\w~/])",  # not cut out of a longer name, not host:path
    re.IGNORECASE,
)
_LOCAL_MAX = 64  # RFC 5321's longest local part
_NOT_BEFORE_LOCAL = re.compile(r"[\w.%+-]")

# candidates only: ipaddress checks the octets (0-255, no leading zero)
_IPV4 = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])")
# only global unicast (2000::/3) can be a public address: the first group is 2xxx or 3xxx
_IPV6 = re.compile(r"[23](?<![\w:.][23])[0-9a-f]{3}:[0-9a-f:]{2,35}(?![\w:]|\.[0-9])", re.IGNORECASE)
_IPV6_HINT = re.compile(r":[0-9a-f]{1,4}:", re.IGNORECASE)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# a four-part version string or section number reads like an address
_VERSION_BEFORE = re.compile(r"(?:\b(?:version|ver|release|build|rev|v|section|sec|chapter|clause)|§)[\s.:=]*$",
                             re.IGNORECASE)

# the first character is one of + ( 0-9, not glued to a word, number, path or address; each
# branch asserts which one it was
_PHONE = re.compile(r"""
    [+(0-9](?<![\w+./@-][+(0-9])
    (?:
      (?<=\+)[1-9]\d{0,2}(?:[ .-]?\(0\))?[ .-]?\(?\d{1,5}\)?(?:[ .-]\d{2,8}){1,5}  # +44 20 7946 0958, +1 (415) 555-2671
    | (?<=\+)[1-9]\d{8,13}                                                 # +447946095812 (no country code starts with 0)
    | (?<=1)[ .-]?(?:\([2-9]\d\d\)[ .-]?|[2-9]\d\d[ .-])[2-9]\d\d[.-]\d{4}  # 1-800-555-0199
    | (?<=\()[2-9]\d\d\)[ .-]?[2-9]\d\d[.-]\d{4}                           # (415) 555-2671
    | (?<=[2-9])\d\d[ .-][2-9]\d\d[.-]\d{4}                                # 415-555-2671, 415.555.2671
    | (?<=0)[1-9]\d{1,3}(?:[ -]\d{1,8}){1,3}                               # 020 7946 0958, 0845 8 505 505
    | (?<=0)[1-9](?:[ .-]\d\d){4}                                          # 01 23 45 67 89
    )
    (?![\w@]|[.-]\w|\ \d)  # not the start of a longer number
    """, re.VERBOSE)
_PHONE_CONTEXT = re.compile(r"(?:isbn|issn|doi)\W{0,3}$", re.IGNORECASE)
_CONTEXT_CHARS = 12  # how far back a context word is looked for


def _emails(text: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    end, at = 0, text.find("@")
    while at >= 0:
        domain = _EMAIL_DOMAIN.match(text, at)
        local = _EMAIL_LOCAL.search(text, max(end, at - _LOCAL_MAX), at) if domain else None
        # "ssh://git@github.com/...": a URL's user, not an address (found on Cargo's reference pages)
        if (domain and local and not (local.start() and _NOT_BEFORE_LOCAL.match(text, local.start() - 1))
                and not text.startswith("://", local.start() - 3)):
            out.append((local.start(), domain.end(), "email"))
            end = domain.end()
        at = text.find("@", max(end, at + 1))
    return out


def _ip_ok(text: str, start: int, candidate: str, v6: bool) -> bool:
    # "2.7.2.2": one-digit parts are a version or a section; the public addresses of that shape
    # (1.1.1.1, 8.8.8.8) are well-known resolvers, nobody's personal data
    if not v6 and (len(candidate) == 7 or _VERSION_BEFORE.search(text, max(0, start - _CONTEXT_CHARS), start)):
        return False
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if v6 and ip not in _GLOBAL_UNICAST:
        return False
    return ip.is_global and not ip.is_multicast


def _phone_ok(text: str, start: int, candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15 or set(digits) <= {"0", "1"}:
        return False
    if candidate[0] == "0" and len(digits) < 10:  # a national number with its trunk 0 has 10 or more
        return False
    separators = set(re.sub(r"[\d()+]", "", candidate))
    if "." in separators and len(separators) > 1:
        return False
    return not _PHONE_CONTEXT.search(text, max(0, start - _CONTEXT_CHARS), start)


def find_pii(text: str, *, emails: bool = True, ips: bool = True, phones: bool = True) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each e-mail, IP address and phone number in ``text``, in text order;
    kind is "email", "ip" or "phone". A match overlapping one of an earlier kind is left out."""
    spans: list[tuple[int, int, str]] = []
    if emails:
        spans += _emails(text)
    if ips:
        found = [(m.start(), m.end(), "ip") for m in _IPV4.finditer(text) if _ip_ok(text, m.start(), m.group(), False)]
        if "::" in text or _IPV6_HINT.search(text):
            found += [(m.start(), m.end(), "ip") for m in _IPV6.finditer(text)
                      if _ip_ok(text, m.start(), m.group(), True)]
        spans = _add(spans, found)
    if phones:
        spans = _add(spans, [(m.start(), m.end(), "phone") for m in _PHONE.finditer(text)
                             if _phone_ok(text, m.start(), m.group())])
    return sorted(spans)


def _add(spans: list[tuple[int, int, str]], new: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    if not spans or not new:
        return spans + new
    return spans + [n for n in new if not any(n[0] < s[1] and s[0] < n[1] for s in spans)]


def _detectors(cfg: PiiConfig) -> dict[str, bool]:
    return {"emails": cfg.emails, "ips": cfg.ips, "phones": cfg.phones}


def pii_attributes(texts: Sequence[str], cfg: PiiConfig, in_scope: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``pii.emails``, ``pii.ips``, ``pii.phones`` (counts per document) and ``pii.count`` (their
    sum), float64. NaN for documents outside ``in_scope`` (default: all in scope) and for a detector
    switched off (``pii.count`` then sums the others)."""
    n = len(texts)
    counts = np.full((n, len(_KINDS)), np.nan)
    scope = np.ones(n, dtype=bool) if in_scope is None else np.asarray(in_scope, dtype=bool)
    detectors = _detectors(cfg)
    on = np.array(list(detectors.values()))
    for i in np.flatnonzero(scope):
        row = np.zeros(len(_KINDS))
        for _, _, kind in find_pii(texts[i], **detectors):
            row[_KINDS.index(kind)] += 1
        counts[i] = np.where(on, row, np.nan)
    total = np.where(scope, counts[:, on].sum(axis=1), np.nan) if on.any() else np.full(n, np.nan)
    return {"pii.emails": counts[:, 0], "pii.ips": counts[:, 1], "pii.phones": counts[:, 2], "pii.count": total}


def redact(text: str, cfg: PiiConfig) -> str:
    """``text`` with each e-mail, IP address and phone number the config looks for replaced by its placeholder."""
    spans = find_pii(text, **_detectors(cfg))
    if not spans:
        return text
    placeholder = {"email": cfg.email_placeholder, "ip": cfg.ip_placeholder, "phone": cfg.phone_placeholder}
    parts, last = [], 0
    for start, end, kind in spans:
        parts += [text[last:start], placeholder[kind]]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def document_has_url(docs: pa.Table) -> np.ndarray:
    """Per document, whether it has a URL (a non-empty ``url``); all False for a shard without the column."""
    if "url" not in docs.column_names:
        return np.zeros(docs.num_rows, dtype=bool)
    url = docs.column("url").cast(pa.string())
    return pc.fill_null(pc.greater(pc.utf8_length(url), 0), False).to_numpy(zero_copy_only=False)


def applies_to(cfg: PiiConfig, has_url: np.ndarray | None, n: int) -> np.ndarray:
    """Which of ``n`` documents the pii family looks at: those with a URL under ``apply_to: web``
    (``has_url`` None: none has one), all of them under ``all``, none when it is off."""
    if not cfg.enabled:
        return np.zeros(n, dtype=bool)
    if cfg.apply_to == "all":
        return np.ones(n, dtype=bool)
    return np.zeros(n, dtype=bool) if has_url is None else np.asarray(has_url, dtype=bool)


def redaction_key(cfg: QualityConfig) -> str:
    """What, besides the decisions, shapes the kept documents' text: "" when nothing is redacted."""
    pii = cfg.pii
    if not pii.enabled or pii.mode != "redact":
        return ""
    return "\t".join(str(v) for v in (pii.apply_to, *_detectors(pii).values(), pii.email_placeholder,
                                      pii.ip_placeholder, pii.phone_placeholder))


def redact_documents(docs: pa.Table, cfg: QualityConfig, counts: np.ndarray | None = None) -> pa.Table:
    """``docs`` (a documents table) with personal data redacted in ``text`` (and ``n_chars`` made its
    new length) when ``quality.pii.mode`` is ``redact``: the one place kept documents are redacted,
    for every path that writes them. ``counts`` (``pii.count`` per document, when scored) spares
    scanning the documents with none; without it every document in scope is scanned."""
    if not cfg.pii.enabled or cfg.pii.mode != "redact" or not docs.num_rows:
        return docs
    todo = applies_to(cfg.pii, document_has_url(docs), docs.num_rows)
    if counts is not None:
        with np.errstate(invalid="ignore"):
            todo &= np.asarray(counts, dtype=np.float64) > 0
    if not todo.any():
        return docs
    texts = docs.column("text").to_pylist()
    changed = False
    for i in np.flatnonzero(todo):
        new = redact(texts[i], cfg.pii)
        changed |= new != texts[i]
        texts[i] = new
    if not changed:
        return docs
    index = docs.column_names.index("text")
    out = docs.set_column(index, docs.schema.field(index), pa.array(texts, docs.schema.field(index).type))
    if "n_chars" in docs.column_names:
        k = docs.column_names.index("n_chars")
        out = out.set_column(k, docs.schema.field(k), pa.array([len(t) for t in texts], docs.schema.field(k).type))
    return out
