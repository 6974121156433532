"""Training data and a small model for the tests of tasks/train/."""

from __future__ import annotations

from pathlib import Path

from refinery.tasks.train.batches import TrainPair


def article_pairs(articles) -> list[TrainPair]:
    """Two pairs per article, both of its document: (headline, body) and (first sentence, the rest)."""
    pairs = []
    for i, (headline, body) in enumerate(articles):
        first, _, rest = body.partition(". ")
        pairs += [TrainPair(headline, body, doc_id=f"doc{i}"), TrainPair(first, rest, doc_id=f"doc{i}")]
    return pairs


def one_layer_model(out: Path) -> Path:
    """The packaged all-MiniLM-L6-v2 with only its first transformer layer, saved to ``out``: the
    same tokenizer, embeddings and pooling, a sixth of the compute per step."""
    from refinery.tasks.embedding import BASE_MODEL_PATH, load_encoder

    model = load_encoder(BASE_MODEL_PATH)
    bert = model[0].auto_model
    bert.encoder.layer = bert.encoder.layer[:1]
    bert.config.num_hidden_layers = 1
    model.save(str(out), create_model_card=False)
    return out
