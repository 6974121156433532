"""SmolLM2-135M-Instruct query generation on real passages (tasks/synthesize/generators.py)."""

from __future__ import annotations

import re

import pytest

from refinery.tasks.synthesize.config import DEFAULT_PROMPT_IDS, SynthesizeConfig
from refinery.tasks.synthesize.generators import PROMPTS, SmolLM2Generator, smollm2_gguf_path


def test_gguf_file_is_found_without_importing_the_package():
    path = smollm2_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"


def test_every_configurable_prompt_id_has_a_template():
    assert set(DEFAULT_PROMPT_IDS) <= set(PROMPTS)
    with pytest.raises(ValueError, match="valid"):
        SmolLM2Generator(prompt_ids=["nope"])


@pytest.mark.slow
def test_generates_cleaned_candidates_for_real_passages(bbc_articles, tmp_path):
    passages = [bbc_articles[0][1], bbc_articles[6][1]]
    cfg = SynthesizeConfig(candidates_per_passage=4, max_new_tokens=16, max_passage_chars=400)
    gen = SmolLM2Generator.from_config(cfg, cache_dir=tmp_path, show_progress=False)
    results = gen.generate(passages)

    assert len(results) == 2
    candidates = [c for cands in results for c in cands]
    assert candidates, "no usable query out of 8 samples"
    for cands, passage in zip(results, passages):
        assert len(cands) <= cfg.candidates_per_passage
        assert len({c.query.lower() for c in cands}) == len(cands)
        for c in cands:
            assert c.prompt_id == gen.prompt_id_for(passage)
            assert c.positive is None
            assert "\n" not in c.query and c.query == c.query.strip()
            assert not c.query.lower().startswith(("query:", "title:", "question:"))
            assert cfg.min_query_words <= len(re.findall(r"\w+", c.query)) <= cfg.max_query_words
    # The headline is never part of what the generator sees.
    assert bbc_articles[0][0] not in gen.prompt(passages[0], gen.prompt_id_for(passages[0]))

    # The de-quantized model was cached; a second generator loads it from there with equal output.
    assert any(tmp_path.iterdir())
    again = SmolLM2Generator.from_config(cfg, cache_dir=tmp_path, show_progress=False).generate(passages)
    assert again == results


@pytest.mark.slow
def test_shared_prefix_prefill_reads_each_prompt_as_if_alone(bbc_articles, tmp_path):
    """The few-shot prefix is prefilled once per template and rows are padded in the middle; the
    next-token distribution of every row must still be the one of its prompt run on its own."""
    import torch

    gen = SmolLM2Generator(cache_dir=tmp_path, show_progress=False, max_passage_chars=400)
    passages = [bbc_articles[i][1] for i in (0, 3, 6)]
    prompts = [gen.prompt(p, "question_v1") for p in passages]
    # Passages of different lengths, so the shorter rows carry padding between prefix and passage.
    tok = gen._tokenizer
    lengths = {len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) > 1

    ids, mask, cache = gen._prefill(prompts, "question_v1")
    assert cache.get_seq_length() == ids.shape[1] - 1
    with torch.inference_mode():
        positions = mask.cumsum(-1)[:, -1:] - 1
        batched = gen._model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=positions,
                             cache=cache).logits[:, -1]
        for row, prompt in enumerate(prompts):
            alone = gen._model(input_ids=tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
                               ).logits[0, -1]
            assert torch.allclose(batched[row].softmax(-1), alone.softmax(-1), atol=1e-4)
            assert batched[row].argmax() == alone.argmax()
