"""AttrPrompt prompts (tasks/synthesize/generators/prompts.py): a seeded style and attributes per
passage, few-shot examples from the config, and the style of inverse-cloze candidates."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from refinery.tasks.synthesize.config import FewShotExample, SynthesizeConfig
from refinery.tasks.synthesize.filters import copied
from refinery.tasks.synthesize.generators import INVERSE_CLOZE_STYLE, InverseClozeGenerator
from refinery.tasks.synthesize.generators.prompts import (
    BUILTIN_SHOTS,
    LENGTHS,
    SPECIFICITIES,
    STYLES,
    PromptAttributes,
    build_messages,
    draw_attributes,
    shot_queries,
    shots_for,
)

PASSAGES = [f"Passage number {i} about the local council and its budget for the year." for i in range(300)]


def test_the_draw_is_seeded_by_the_passage_text():
    styles = list(STYLES)
    first = [draw_attributes(7, p, styles) for p in PASSAGES]
    assert [draw_attributes(7, p, styles) for p in reversed(PASSAGES)] == first[::-1]
    assert [draw_attributes(8, p, styles) for p in PASSAGES] != first
    # every style, length and specificity is drawn, none much more often than its share
    for values, field in ((STYLES, "style"), (LENGTHS, "length"), (SPECIFICITIES, "specificity")):
        counts = Counter(getattr(a, field) for a in first)
        assert set(counts) == set(values)
        assert max(counts.values()) < 2 * len(PASSAGES) / len(values)


def test_only_the_configured_styles_are_drawn():
    assert {draw_attributes(0, p, ["claim", "title"]).style for p in PASSAGES} == {"claim", "title"}
    with pytest.raises(ValidationError):
        SynthesizeConfig(styles=["summary"])
    with pytest.raises(ValidationError):
        SynthesizeConfig(styles=[])


def test_the_prompt_spells_out_style_and_attributes():
    attrs = PromptAttributes("keywords", "short", "specific")
    messages = build_messages("The passage text.", attrs, shots_for("keywords"))
    assert messages[0] == {"role": "system", "content": STYLES["keywords"].system}
    last = messages[-1]["content"]
    assert last.startswith("Article: The passage text.\n\n" + STYLES["keywords"].task)
    assert "at most four words" in last and "Be specific" in last
    # the built-in examples, each with the instruction of its own length and specificity
    assert [m["content"] for m in messages if m["role"] == "assistant"] == [s.query for s in BUILTIN_SHOTS["keywords"]]
    assert "Keep it general" in messages[1]["content"]  # 'carmaker profit warning' is broad
    assert attrs.prompt_id == "keywords_v2" and attrs.as_dict() == {"length": "short", "specificity": "specific"}


def test_few_shots_from_the_config_replace_the_builtin_ones_of_their_style():
    mine = FewShotExample(passage="The village fete was cancelled because of heavy rain on Saturday.",
                          query="Why was the village fete cancelled?", style="question")
    cfg = SynthesizeConfig.model_validate({"few_shot": [mine.model_dump()]})
    assert shots_for("question", cfg.few_shot)[0].query == mine.query
    assert len(shots_for("question", cfg.few_shot)) == 1
    assert shots_for("title", cfg.few_shot) == BUILTIN_SHOTS["title"]
    messages = build_messages("Another passage.", PromptAttributes("question", "long", "broad"),
                              shots_for("question", cfg.few_shot))
    assert messages[1]["content"].startswith(f"Article: {mine.passage}")
    assert messages[2] == {"role": "assistant", "content": mine.query}
    # a generated query that parrots the example is a copy (filter_copy), of this config's examples only
    passage = "Councillors met on Monday to discuss the budget."
    assert copied([mine.query], [passage], examples=shot_queries(cfg.few_shot)).tolist() == [True]
    assert copied([mine.query], [passage], examples=shot_queries()).tolist() == [False]
    with pytest.raises(ValidationError):
        SynthesizeConfig.model_validate({"few_shot": [{"passage": "x", "query": "y", "style": "poem"}]})


def test_inverse_cloze_candidates_have_the_sentence_style(bbc_articles):
    (cand,) = InverseClozeGenerator(SynthesizeConfig(seed=0)).generate([bbc_articles[0][1]])[0]
    assert cand.style == INVERSE_CLOZE_STYLE == "sentence" and cand.attributes is None

