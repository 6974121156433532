"""Held-out synthetic pairs (tasks/synthesize/split, tasks/evaluate/heldout): the split is by
passage, and an extractive query is cut from its document before it is ranked."""

from __future__ import annotations

import numpy as np
import pytest

from refinery.tasks.evaluate.heldout import cut_verbatim
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators import InverseClozeGenerator
from refinery.tasks.synthesize.split import HELDOUT, TRAIN, heldout_passages, split_by_passage


def test_heldout_passages_are_a_seeded_share_independent_of_order():
    ids = [f"{i:016x}" for i in range(40)]
    held = heldout_passages(ids, 0.25, seed=0)
    assert len(held) == 10 and held <= set(ids)
    assert heldout_passages(list(reversed(ids)) + ids[:5], 0.25, seed=0) == held  # order and repeats do not matter
    assert heldout_passages(ids, 0.25, seed=1) != held


@pytest.mark.parametrize("n, expected", [(0, 0), (1, 0), (2, 1), (3, 1), (10, 2)])
def test_both_sides_keep_a_passage(n, expected):
    assert len(heldout_passages([f"d{i}" for i in range(n)], 0.2, seed=0)) == expected
    assert len(heldout_passages([f"d{i}" for i in range(n)], 0.9, seed=0)) == max(0, n - 1)


def test_split_holds_out_every_candidate_of_a_chosen_passage():
    docs = ["a", "a", "b", "b", "c", "d", "e", "e"]
    kept = np.array([True, False, True, True, False, True, True, True])
    split = split_by_passage(docs, kept, 0.5, seed=0)
    held = {d for d, s in zip(docs, split) if s == HELDOUT}
    assert held and not held & {d for d, s in zip(docs, split) if s == TRAIN}
    assert "c" not in held  # a passage without a kept pair is never drawn
    assert len(held) == 2  # half of the four passages with a kept pair (a, b, d, e)
    assert set(split_by_passage(docs, kept, None, seed=0)) == {TRAIN}


def test_cut_verbatim_removes_the_inverse_cloze_sentence_like_training_does(bbc_articles):
    for _, body in bbc_articles[:6]:
        (cand,) = InverseClozeGenerator(SynthesizeConfig(seed=0)).generate([body])[0]
        cut = cut_verbatim(body, [cand.query])
        assert cand.query not in " ".join(cut.split())
        assert cut.split() == cand.positive.split()  # the document becomes the training positive's text


def test_cut_verbatim_leaves_other_text_alone():
    text = "Shares rose.  Profits  fell\nsharply in May. Rates held."
    assert cut_verbatim(text, ["Profits fell sharply in May."]) == "Shares rose. Rates held."
    assert cut_verbatim(text, ["not in the text"]) == text
    assert cut_verbatim(text, ["Shares rose."]) == "Profits  fell\nsharply in May. Rates held."
