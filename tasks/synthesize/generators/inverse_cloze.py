"""Inverse cloze: the model-free baseline every LLM generator must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.base import Candidate, passage_rng
from refinery.tasks.synthesize.generators.clean import WORD, split_sentences

INVERSE_CLOZE_PROMPT_ID = "inverse_cloze_v1"
# The query style of an inverse-cloze candidate: a sentence of the passage.
INVERSE_CLOZE_STYLE = "sentence"
# A sentence this many passages of one call share is boilerplate (a licence line, "This docstring
# was copied from NumPy", a signature template), never a query. Two passages sharing sentences are
# most likely a document and its copy: dedup's business (and the uncurated ablation's point).
BOILERPLATE_PASSAGES = 3


class InverseClozeGenerator:
    """Inverse cloze task: a sentence of the passage is the query, the rest of it the positive.

    Deterministic given ``seed``, the passage text and the passages it is generated with. The chosen sentence is removed from the
    positive (every occurrence), so the model cannot match on verbatim overlap. Passages with
    fewer than two sentences, or no sentence of ``min_sentence_words`` words, get no candidate; nor
    is a sentence that :data:`BOILERPLATE_PASSAGES` passages of the same call have ever a query.

    ``seed`` and ``min_sentence_words`` come from ``cfg``. One sentence per passage by default
    (``candidates_per_passage``, not ``cfg``'s): extra sentences of the same passage mostly add
    near-duplicate positives, and the filter is cheap enough to run on more passages instead.
    """

    name = "inverse_cloze"

    def __init__(self, cfg: SynthesizeConfig | None = None, *, candidates_per_passage: int = 1) -> None:
        cfg = cfg if cfg is not None else SynthesizeConfig()
        if candidates_per_passage < 1:
            raise ValueError("candidates_per_passage must be >= 1")
        self.seed = cfg.seed
        self.candidates_per_passage = candidates_per_passage
        self.min_sentence_words = cfg.min_sentence_words

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        split = [split_sentences(passage) for passage in passages]
        # boilerplate asks for none of the passages it is in
        seen = Counter(key for paragraphs in split for key in {_key(s) for sentences in paragraphs for s in sentences})
        shared = {key for key, n in seen.items() if n >= BOILERPLATE_PASSAGES}
        return [self._candidates(passage, paragraphs, shared) for passage, paragraphs in zip(passages, split)]

    def _candidates(self, passage: str, paragraphs: list[list[str]], shared: set[str]) -> list[Candidate]:
        flat = [(p, s) for p, sentences in enumerate(paragraphs) for s in range(len(sentences))]
        if len(flat) < 2:
            return []
        eligible = [ps for ps in flat if len(WORD.findall(paragraphs[ps[0]][ps[1]])) >= self.min_sentence_words
                    and _key(paragraphs[ps[0]][ps[1]]) not in shared]
        rng = passage_rng(self.seed, passage)
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
                out.append(Candidate(query=query, prompt_id=INVERSE_CLOZE_PROMPT_ID, positive=positive,
                                     style=INVERSE_CLOZE_STYLE))
        return out


def _key(sentence: str) -> str:
    """A sentence as compared across passages: its words, lower-cased."""
    return " ".join(WORD.findall(sentence.lower()))
