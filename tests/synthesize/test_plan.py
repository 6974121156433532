"""How the synthesize flow sizes its passages: the passages a night holds out for evaluation come
on top of those it trains on, so a titleless corpus gets an evaluation set big enough to decide
something without starving training (tasks/synthesize/plan.py)."""

from __future__ import annotations

from pathlib import Path

from refinery.tasks.evaluate.pool import Keyed
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.plan import choose_passages, generation_slices, heldout_size, sample_size


def _ranked(n: int) -> list[Keyed]:
    return [Keyed(key=i, shard=i % 3, row=i, doc_id=f"d{i:05d}") for i in range(n)]


def test_heldout_passages_are_the_configured_count_capped_by_a_share_of_the_corpus():
    cfg = SynthesizeConfig(generators=["inverse_cloze"], heldout_passages=1500, heldout_fraction=0.2)
    assert heldout_size(cfg, 100_000) == 1500
    assert heldout_size(cfg, 2_000) == 400  # a fifth of a small corpus
    assert heldout_size(cfg, 3) == 1
    # only the inverse_cloze generator reads them: without it the share of kept passages applies
    assert heldout_size(SynthesizeConfig(generators=["smollm2"]), 100_000) == 0


def test_heldout_passages_come_after_every_training_passage():
    cfg = SynthesizeConfig(generators=["inverse_cloze", "smollm2"], inverse_cloze_passages=1200, passages=64,
                           filter_pool_docs=100)
    assert sample_size(cfg, 400) == 1600
    chosen = choose_passages(_ranked(5000), [f"s{i}" for i in range(3)], cfg, Path("/tmp"), heldout=400)
    assert len(chosen.doc_ids) == 1600 and chosen.heldout == 400
    slices = generation_slices(cfg, 1600, 400)
    read = [i for g, a, b in slices if g == "inverse_cloze" for i in range(a, b)]
    assert sorted(read) == list(range(1600))  # the 1200 training passages and the 400 held out, once each
    assert max(b for g, _, b in slices if g == "smollm2") == 64


def test_in_a_small_corpus_heldout_passages_take_the_place_of_the_last_training_ones():
    cfg = SynthesizeConfig(generators=["inverse_cloze"], inverse_cloze_passages=1200, filter_pool_docs=100)
    chosen = choose_passages(_ranked(300), ["s0", "s1", "s2"], cfg, Path("/tmp"), heldout=60)
    assert len(chosen.doc_ids) == 300 and chosen.heldout == 60
    assert generation_slices(cfg, 300, 60) == [("inverse_cloze", 0, 300)]  # every passage read once
    cfg = SynthesizeConfig(generators=["inverse_cloze"], inverse_cloze_passages=100, filter_pool_docs=100)
    assert generation_slices(cfg, 160, 60) == [("inverse_cloze", 0, 160)]
    # passages other generators read (here 100-139) are not inverse_cloze's
    assert generation_slices(cfg, 200, 60) == [("inverse_cloze", 0, 100), ("inverse_cloze", 140, 200)]
    one = choose_passages(_ranked(1), ["s0"], cfg, Path("/tmp"), heldout=1)
    assert one.heldout == 0  # a lone passage is left to train on
