"""Teachers score (query, passage) pairs, are measured on the dev split before they are used, drop
likely false negatives and give MarginMSE its margins; MarginMSE training learns from them.

Real models, kept tiny: a one-layer cut of the packaged encoder, a cross-encoder and a causal LM
built from its tokenizer with random heads. Expected values are computed here independently (one
sequence at a time through transformers), never by the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refinery.tasks.embedding import BASE_MODEL_PATH, encode, load_encoder
from refinery.tasks.train.batches import TrainPair
from refinery.tasks.train.config import TeacherConfig, TrainConfig
from refinery.tasks.train.finetune import fine_tune, plan_training, read_training_stats
from refinery.tasks.train.teachers import (
    QL_PROMPT, CrossEncoderTeacher, FusionTeacher, QueryLikelihoodTeacher, dev_check, teach,
)
from tests.train.training_data import one_layer_model


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    path = one_layer_model(tmp_path_factory.mktemp("base") / "one-layer")
    model = load_encoder(path)
    model.max_seq_length = 64
    return path, model


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BASE_MODEL_PATH), local_files_only=True)


class Oracle:
    """Scores a passage by whether it holds the query's code word: the teacher a dev check must accept."""

    name = "oracle"

    def __init__(self, sign: float = 1.0):
        self.sign = sign

    def score(self, queries, passages):
        return np.array([self.sign * float(q.split()[-1] in p) for q, p in zip(queries, passages)])


def _coded_pairs(n: int) -> list[TrainPair]:
    """Dev-like pairs: each passage holds a made-up code word its query asks for, among shared filler."""
    filler = "The committee met on Tuesday to discuss the budget, the schedule and the new building plans."
    return [TrainPair(f"which report mentions code zq{i}x", f"{filler} Report zq{i}x was filed. {filler}",
                      doc_id=f"d{i}") for i in range(n)]


def test_a_cross_encoder_teacher_scores_the_models_raw_logits(tmp_path, tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig.from_pretrained(str(BASE_MODEL_PATH), num_labels=1, num_hidden_layers=1)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "ce")
    tokenizer.save_pretrained(tmp_path / "ce")
    queries = ["who won the match", "interest rates", "a new phone"]
    passages = ["The home side won 2-1.", "The bank held rates at 5%.", "The phone has a larger screen."]
    got = CrossEncoderTeacher(str(tmp_path / "ce"), batch_size=2).score(queries, passages)
    with torch.inference_mode():
        want = [float(model(**tokenizer(q, p, return_tensors="pt")).logits[0, 0]) for q, p in zip(queries, passages)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_query_likelihood_is_the_mean_log_probability_of_the_query_tokens(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)).eval()
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    queries = ["who won", "interest rates at the central bank", "phone"]
    passages = ["The home side won 2-1 in the final minute.", "Rates held.", "The phone has a larger screen."]
    got = QueryLikelihoodTeacher(str(tmp_path / "lm"), batch_size=2).score(queries, passages)
    want = []
    with torch.inference_mode():  # one unpadded sequence at a time
        for q, p in zip(queries, passages):
            prompt = tokenizer(QL_PROMPT.format(passage=p), add_special_tokens=False)["input_ids"]
            query = tokenizer(" " + q, add_special_tokens=False)["input_ids"]
            logits = lm(input_ids=torch.tensor([prompt + query])).logits[0]
            logp = torch.log_softmax(logits, dim=-1)
            want.append(float(np.mean([float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(query)])))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_dev_check_uses_a_teacher_only_when_it_beats_the_starting_model(tiny_encoder):
    _, encoder = tiny_encoder
    dev = _coded_pairs(30)
    good = dev_check(Oracle(), dev, encoder, depth=20)
    # the one-layer model cannot tell the code words apart; the oracle finds each query's passage
    # wherever the starting model put it in the top 20 (when it is there at all)
    assert good["ndcg@10_start"] < good["ndcg@10_teacher"] and good["used"]
    bad = dev_check(Oracle(sign=-1.0), dev, encoder, depth=20)
    assert bad["ndcg@10_teacher"] < bad["ndcg@10_start"] and not bad["used"]
    assert bad["ndcg@10_start"] == good["ndcg@10_start"]


def test_a_fusion_teacher_fits_its_weight_on_dev_and_leans_on_bm25_where_words_decide(tiny_encoder):
    _, encoder = tiny_encoder
    dev = _coded_pairs(30)
    teacher = FusionTeacher(encoder, [ex.positive for ex in dev])
    check = dev_check(teacher, dev, encoder, depth=20)
    # the code word is the only word telling passages apart: with BM25 in the mix every query finds its
    # passage first, which the dense model alone (weight 1) does not
    assert check["used"] and check["ndcg@10_teacher"] == 1.0 > check["ndcg@10_start"]
    assert check["fusion_weight"] < 1.0 and teacher.weight == check["fusion_weight"]
    scores = teacher.score([dev[0].query] * 2, [dev[0].positive, dev[1].positive])
    assert scores[0] > scores[1]


def test_teaching_drops_negatives_the_teacher_prefers_and_scales_the_margins_to_the_student(tiny_encoder):
    _, encoder = tiny_encoder
    pairs = _coded_pairs(12)
    # odd pairs get a false negative: another passage holding the same code word
    triplets = [TrainPair(ex.query, ex.positive, pairs[(i + 1) % 12].positive if i % 2 == 0 else
                          ex.positive.replace("Report", "Memo"), doc_id=ex.doc_id, negative_doc_id=f"n{i}")
                for i, ex in enumerate(pairs)]
    plain = TrainPair("q", "p", doc_id="x")
    taught, stats = teach(Oracle(), [*triplets, plain], encoder, false_negative_margin=0.0, scale=20.0, seed=0)
    assert stats["triplets_scored"] == 12 and stats["false_negatives_dropped"] == 6
    assert all(t.negative is None and t.margin is None for t in taught[1:12:2])
    kept = taught[0:12:2]
    assert all(t.negative is not None and t.margin > 0 for t in kept) and taught[12] == plain
    assert stats["margin_scale"] == 1.0  # the oracle's kept margins are all 1: no spread to match
    # with a spread, the margins take the spread of 20 x the one-layer model's cosine margins
    class Graded(Oracle):
        def score(self, queries, passages):
            return np.array([float(len(p)) for p in passages])
    graded, graded_stats = teach(Graded(), triplets, encoder, false_negative_margin=None, scale=20.0, seed=0)
    raw = np.array([len(t.positive) - len(t.negative) for t in triplets], dtype=float)
    q, p, n = (encode(encoder, [getattr(t, f) for t in triplets], show_progress=False) for f in ("query", "positive", "negative"))
    student = 20.0 * ((q * p).sum(1) - (q * n).sum(1))
    np.testing.assert_allclose([t.margin for t in graded], raw * np.std(student) / np.std(raw), rtol=1e-4)
    assert graded_stats["false_negatives_dropped"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["marginmse", "mnrl+marginmse"])
def test_marginmse_training_learns_the_teachers_margins(tiny_encoder, tmp_path, loss, bbc_articles):
    base, _ = tiny_encoder
    texts = [body for _, body in bbc_articles]
    examples = [TrainPair(body.partition(". ")[0], body.partition(". ")[2], texts[(i + 3) % len(texts)],
                          doc_id=f"d{i}", negative_doc_id=f"d{(i + 3) % len(texts)}", margin=8.0)
                for i, body in enumerate(texts)]
    examples.append(TrainPair("a pair without a negative", "trains only under MNRL", doc_id="lonely"))
    cfg = TrainConfig(batch_size=4, mini_batch_size=None, max_seq_length=32, epochs=3, learning_rate=2e-4,
                      warmup_ratio=0.0, dev_fraction=None, checkpoint_every=None, loss=loss,
                      teacher=TeacherConfig(kind="fusion"))
    plan = plan_training(examples, cfg)
    assert ("lonely" in {ex.doc_id for ex in plan.train}) is (loss != "marginmse")
    stats = read_training_stats(fine_tune(examples, base_path=base, out_dir=tmp_path / "m", cfg=cfg, show_progress=False))
    per_epoch = stats["steps"] // 3
    first, last = stats["losses"][:per_epoch], stats["losses"][-per_epoch:]
    assert sum(last) / len(last) < sum(first) / len(first)
    assert stats["loss"] == loss and stats["with_margins"] == len(texts)


@pytest.mark.slow
def test_marginmse_follows_the_sign_of_the_teachers_margins(tiny_encoder, tmp_path, bbc_articles):
    """The same triplets, once with the teacher preferring each positive and once each negative: the
    student's own margins move the way the teacher's point."""
    base, _ = tiny_encoder
    texts = [body for _, body in bbc_articles]
    cfg = TrainConfig(batch_size=4, mini_batch_size=None, max_seq_length=32, epochs=3, learning_rate=2e-4,
                      warmup_ratio=0.0, dev_fraction=None, checkpoint_every=None, loss="marginmse",
                      teacher=TeacherConfig(kind="fusion"))

    def student_margin(sign: float) -> float:
        examples = [TrainPair(b.partition(". ")[0], b.partition(". ")[2], texts[(i + 3) % len(texts)], doc_id=f"d{i}",
                              negative_doc_id=f"d{(i + 3) % len(texts)}", margin=sign * 8.0) for i, b in enumerate(texts)]
        model = load_encoder(fine_tune(examples, base_path=base, out_dir=tmp_path / f"m{sign}", cfg=cfg,
                                       show_progress=False))
        model.max_seq_length = 32
        q, p, n = (encode(model, [getattr(e, f) for e in examples], show_progress=False)
                   for f in ("query", "positive", "negative"))
        return float(((q * p).sum(1) - (q * n).sum(1)).mean())

    assert student_margin(+1.0) > 0 > student_margin(-1.0)


@pytest.mark.slow
def test_the_train_task_measures_the_teacher_then_trains_on_its_margins_or_says_why_not(tiny_encoder, tmp_path,
                                                                                         bbc_articles):
    import pyarrow as pa

    from refinery.storage import write_shard
    from refinery.tasks.train.shard_tasks import train_model
    from refinery.tasks.train.summary import TEACHER_TASK, training_metric_rows

    base, _ = tiny_encoder
    n = len(bbc_articles)
    rows = [{"doc_id": f"doc{i}", "query": body.partition(". ")[0], "positive": body.partition(". ")[2],
             "kept": True, "split": "train", "negative_doc_id": f"doc{(i + 1) % n}"}
            for i, (_, body) in enumerate(bbc_articles)]
    pairs_path = write_shard(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    corpus = write_shard(pa.table({"doc_id": [f"doc{i}" for i in range(n)], "text": [b for _, b in bbc_articles]}),
                         tmp_path / "corpus.parquet")
    cfg = TrainConfig(batch_size=4, mini_batch_size=None, max_seq_length=32, epochs=1, dev_fraction=0.3,
                      dev_min_pairs=4, checkpoint_every=None, loss="mnrl+marginmse",
                      teacher=TeacherConfig(kind="fusion", rerank_depth=5))
    stats = train_model(pairs_path, [str(corpus)], str(base), tmp_path / "model", cfg)
    teacher = stats["teacher"]
    assert teacher["kind"] == "fusion" and teacher["dev_queries"] == stats["dev_pairs"]
    assert teacher["used"] is (teacher["ndcg@10_teacher"] > teacher["ndcg@10_start"])
    if teacher["used"]:
        assert stats["loss"] == "mnrl+marginmse" and stats["with_margins"] > 0
        assert teacher["triplets_scored"] == n and 0 <= teacher["false_negatives_dropped"] <= n
    else:
        assert stats["loss"] == "mnrl" and "does not beat" in teacher["reason"]
    got = {(m, t, k): v for m, t, k, v in training_metric_rows(stats) if t == TEACHER_TASK}
    assert got[("teacher", TEACHER_TASK, "ndcg@10")] == teacher["ndcg@10_teacher"]
    assert got[("start", TEACHER_TASK, "ndcg@10")] == teacher["ndcg@10_start"]


def test_the_dev_check_ranks_among_distractors_too(tiny_encoder):
    """Distractors make the starting model's task harder (its dev nDCG@10 can only fall) and are counted;
    the teacher reranks the same candidates."""
    _, encoder = tiny_encoder
    dev = _coded_pairs(10)
    distractors = [f"Report zq{i}x was filed again. A note on other business." for i in range(100, 160)]
    alone = dev_check(Oracle(), dev, encoder, depth=20)
    among = dev_check(Oracle(), dev, encoder, depth=20, distractors=distractors + [dev[0].positive])
    assert among["distractors"] == 60 and alone["distractors"] == 0 and among["dev_passages"] == 10
    assert among["ndcg@10_start"] <= alone["ndcg@10_start"]


@pytest.mark.parametrize("loss", ["marginmse", "mnrl+marginmse"])
def test_gradcache_gives_the_margin_losses_of_one_plain_pass(tiny_encoder, loss, bbc_articles):
    """Under mini-batches (GradCache) the loss and gradient of a triplet batch with margins are those
    of one pass over the whole batch, at a mini-batch's memory."""
    from refinery.tasks.train.finetune import _margin_loss

    base, _ = tiny_encoder
    texts = [body for _, body in bbc_articles][:6]
    batch = [TrainPair(b.partition(". ")[0], b.partition(". ")[2], texts[(i + 1) % 6], margin=float(i) - 2.5)
             for i, b in enumerate(texts)]
    margins = torch.tensor([ex.margin for ex in batch])
    results = []
    for mini in (None, 2):
        model = load_encoder(base)
        model.max_seq_length = 32
        model.eval()  # no dropout: the two passes see the same network
        cfg = TrainConfig(batch_size=6, mini_batch_size=mini, max_seq_length=32, loss=loss,
                          teacher=TeacherConfig(kind="fusion", margin_weight=0.7))
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss)
        mnrl = (CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=mini, show_progress_bar=False)
                if mini else MultipleNegativesRankingLoss(model, scale=cfg.scale))
        features = [model.preprocess(list(col)) for col in zip(*(ex.columns() for ex in batch))]
        value = _margin_loss(model, cfg, mnrl)(features, margins)
        value.backward()
        grad = next(p for n, p in model.named_parameters() if "word_embeddings" in n).grad.clone()
        results.append((float(value.detach()), grad))
    (plain, g_plain), (cached, g_cached) = results
    assert plain == pytest.approx(cached, rel=1e-4)
    torch.testing.assert_close(g_cached, g_plain, rtol=1e-3, atol=1e-6)
