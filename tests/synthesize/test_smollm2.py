"""SmolLM2-135M-Instruct query generation on real passages (tasks/synthesize/generators/local.py)."""

from __future__ import annotations

import pytest

from refinery.tasks.synthesize.config import DEFAULT_STYLES, SynthesizeConfig
from refinery.tasks.synthesize.generators import STYLES, LocalGenerator, smollm2_gguf_path
from refinery.tasks.synthesize.generators.prompts import PromptAttributes, checked_styles


def test_gguf_file_is_found_without_importing_the_package():
    path = smollm2_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"


def test_every_configurable_style_has_a_template():
    assert set(DEFAULT_STYLES) <= set(STYLES)
    with pytest.raises(ValueError, match="valid"):
        checked_styles(["nope"])
    with pytest.raises(ValueError, match="'question', 'keywords', 'claim' or 'title'"):
        SynthesizeConfig(styles=["nope"])


@pytest.mark.slow
def test_generates_tidied_candidates_for_real_passages(bbc_articles, tmp_path):
    passages = [bbc_articles[0][1], bbc_articles[6][1]]
    cfg = SynthesizeConfig(candidates_per_passage=4, max_new_tokens=16, max_passage_chars=400)
    gen = LocalGenerator(cfg, cache_dir=tmp_path, show_progress=False)
    results = gen.generate(passages)

    assert len(results) == 2
    # every sample is a candidate (the filters judge them, each rejection with its reason)
    assert [len(cands) for cands in results] == [cfg.candidates_per_passage] * 2
    assert any(c.query and not c.unfinished for cands in results for c in cands), "no answer with a query"
    for cands, passage in zip(results, passages):
        for c in cands:
            attrs = gen.attributes_for(passage)
            assert (c.prompt_id, c.style, c.attributes) == (attrs.prompt_id, attrs.style, attrs.as_dict())
            assert c.positive is None
            assert "\n" not in c.query and c.query == c.query.strip()
            assert not c.query.lower().startswith(("query:", "title:", "question:"))
    # The headline is never part of what the generator sees.
    assert bbc_articles[0][0] not in gen.prompt(passages[0], gen.attributes_for(passages[0]))

    # The de-quantized model was cached; a second generator loads it from there with equal output.
    assert any(tmp_path.iterdir())
    again = LocalGenerator(cfg, cache_dir=tmp_path, show_progress=False).generate(passages)
    assert again == results


@pytest.mark.slow
def test_shared_prefix_prefill_reads_each_prompt_as_if_alone(bbc_articles, tmp_path):
    """The few-shot prefix is prefilled once per template and rows are padded in the middle; the
    next-token distribution of every row must still be the one of its prompt run on its own."""
    import torch

    gen = LocalGenerator(SynthesizeConfig(max_passage_chars=400), cache_dir=tmp_path, show_progress=False)
    passages = [bbc_articles[i][1] for i in (0, 3, 6)]
    # one style, different attributes: the attributes come after the passage, outside the shared prefix
    attrs = [PromptAttributes("question", length, "specific") for length in ("short", "medium", "long")]
    prompts = [gen.prompt(p, a) for p, a in zip(passages, attrs)]
    # Passages of different lengths, so the shorter rows carry padding between prefix and passage.
    tok = gen._tokenizer
    lengths = {len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) > 1

    ids, mask, cache = gen._prefill(prompts, attrs[0])
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


@pytest.mark.slow
def test_a_model_folder_loads_like_its_gguf_file(bbc_articles, tmp_path):
    """``synthesize.local_model`` may be a transformers model folder: the de-quantized cache of the
    GGUF file is one, and generates what the GGUF file does."""
    cfg = SynthesizeConfig(candidates_per_passage=2, max_new_tokens=12, max_passage_chars=300)
    passages = [bbc_articles[2][1]]
    from_gguf = LocalGenerator(cfg, cache_dir=tmp_path, show_progress=False).generate(passages)
    (folder,) = [p for p in tmp_path.iterdir() if (p / "config.json").exists()]
    folder_cfg = cfg.model_copy(update={"local_model": str(folder)})
    assert LocalGenerator(folder_cfg, show_progress=False).generate(passages) == from_gguf
    with pytest.raises(FileNotFoundError, match="no model folder or GGUF file"):
        missing = cfg.model_copy(update={"local_model": str(tmp_path / "missing.gguf")})
        LocalGenerator(missing, show_progress=False).generate(passages)
