"""Fixtures of the training-loop tests: a one-layer cut of the packaged model, pairs of BBC articles,
and one torch thread (module scope: a module asks for it with ``usefixtures``)."""

from __future__ import annotations

import pytest
import torch

from tests.train.training_data import article_pairs, one_layer_model


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return one_layer_model(tmp_path_factory.mktemp("base") / "one-layer")


@pytest.fixture(scope="module")
def pairs(bbc_articles):
    return article_pairs(bbc_articles)
