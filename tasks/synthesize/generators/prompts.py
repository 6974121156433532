"""Few-shot chat prompts for diverse queries (AttrPrompt: Yu et al., 2023).

Each passage gets a query *style* (question, keywords, claim, title) and *attributes* (length:
short/medium/long; specificity: broad/specific), drawn by a seeded hash of its text, so the same
passage gets the same prompt in every run, batch and worker. The prompt is a chat: a system line
for the style, worked examples of that style (built in, or ``synthesize.few_shot`` from the
config), then the passage with an instruction that spells out the attributes. Every backend
(local transformers, an OpenAI-compatible server) sends the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from refinery.tasks.synthesize.config import FewShotExample, SynthesizeConfig
from refinery.tasks.synthesize.generators.base import passage_rng
from refinery.tasks.synthesize.generators.clean import truncate_passage

# A changed prompt gets a new version, so pairs of old runs keep their meaning.
PROMPT_VERSION = "v2"
LENGTHS = ("short", "medium", "long")
SPECIFICITIES = ("broad", "specific")
# Words of a query per length; a few-shot example's length is read off its query with these.
_LENGTH_WORDS = {"short": (1, 4), "medium": (5, 8), "long": (9, 14)}
_LENGTH_PHRASE = {
    "short": "Use at most four words.",
    "medium": "Use five to eight words.",
    "long": "Use nine to fourteen words.",
}
_SPECIFICITY_PHRASE = {
    "broad": "Keep it general: what the article is about, not its details.",
    "specific": "Be specific: name the people, places, organisations or figures involved.",
}


@dataclass(frozen=True, slots=True)
class StyleTemplate:
    """What a style asks for: the system line and the task sentence of every instruction."""

    system: str
    task: str


STYLES: dict[str, StyleTemplate] = {
    "question": StyleTemplate("You write questions that a news article answers.",
                              "Write one question that this article answers."),
    "keywords": StyleTemplate("You write web search queries for news articles.",
                              "Write a keyword search query someone would type to find this article."),
    "claim": StyleTemplate("You write factual claims that a news article supports.",
                           "Write one factual claim, as a sentence, that this article supports."),
    "title": StyleTemplate("You write titles for news articles.", "Write a title for this article."),
}


@dataclass(frozen=True, slots=True)
class PromptAttributes:
    """What one passage's prompt asks for."""

    style: str
    length: str
    specificity: str

    @property
    def prompt_id(self) -> str:
        return f"{self.style}_{PROMPT_VERSION}"

    def as_dict(self) -> dict[str, str]:
        """The attributes stored with each candidate (``pairs.attributes``)."""
        return {"length": self.length, "specificity": self.specificity}


@dataclass(frozen=True, slots=True)
class Shot:
    """A worked example: a passage and the query wanted for it."""

    passage: str
    query: str
    specificity: str | None = None

    @property
    def length(self) -> str:
        n = len(self.query.split())
        return next((name for name, (_, hi) in _LENGTH_WORDS.items() if n <= hi), "long")


# Invented examples (no corpus text, no headlines): short news-like passages and the kind of
# query wanted. Two shots keep the prompt near 300 tokens, which bounds prefill cost.
_SHOT_PASSAGES = (
    "Shares in carmaker Volvo fell 5% on Tuesday after the company warned that rising steel prices "
    "would cut its profits this year. The Swedish firm said raw material costs had risen faster "
    "than expected in the last quarter.",
    "The England rugby team have named an uncapped winger in their squad for the Six Nations opener "
    "against Wales, after injuries ruled out two senior players. Coach Andy Robinson said the "
    "youngster had earned his chance.",
)
BUILTIN_SHOTS: dict[str, tuple[Shot, ...]] = {
    "question": (Shot(_SHOT_PASSAGES[0], "Why are Volvo's profits expected to fall this year?", "specific"),
                 Shot(_SHOT_PASSAGES[1], "Why has England called up a new winger?", "broad")),
    "keywords": (Shot(_SHOT_PASSAGES[0], "carmaker profit warning", "broad"),
                 Shot(_SHOT_PASSAGES[1], "England uncapped winger Six Nations Wales", "specific")),
    "claim": (Shot(_SHOT_PASSAGES[0], "Rising steel prices will cut Volvo's profits this year.", "specific"),
              Shot(_SHOT_PASSAGES[1], "England have picked a new winger.", "broad")),
    "title": (Shot(_SHOT_PASSAGES[0], "Steel costs hit Volvo profits", "specific"),
              Shot(_SHOT_PASSAGES[1], "Rugby squad injuries", "broad")),
}
# Older shot queries too: a query that parrots an example is rejected as filter_copy.
BUILTIN_SHOT_QUERIES = frozenset(
    {s.query.lower() for shots in BUILTIN_SHOTS.values() for s in shots}
    | {"volvo profit warning steel prices", "england rugby squad uncapped winger six nations",
       "why did volvo shares fall?", "who did england pick for the six nations game against wales?",
       "rising steel prices will cut volvo's profits this year.", "england have picked an uncapped winger to face wales.",
       "steel costs hit volvo profits", "england call up new winger", "who is in the england rugby squad?"}
)


def draw_attributes(seed: int, passage: str, styles: Sequence[str]) -> PromptAttributes:
    """The style and attributes of ``passage``'s prompt: a seeded draw, stable across runs."""
    rng = passage_rng(seed, passage, ":attrprompt")
    return PromptAttributes(style=styles[rng.randrange(len(styles))], length=LENGTHS[rng.randrange(len(LENGTHS))],
                            specificity=SPECIFICITIES[rng.randrange(len(SPECIFICITIES))])


def shots_for(style: str, few_shot: Sequence[FewShotExample] | None = None) -> tuple[Shot, ...]:
    """The worked examples of ``style``: the config's examples of that style when it has any, else
    the built-in ones."""
    given = tuple(Shot(e.passage, e.query, e.specificity) for e in few_shot or () if e.style == style)
    return given or BUILTIN_SHOTS[style]


def instruction(style: str, length: str | None, specificity: str | None) -> str:
    """The sentence after the passage: the style's task, then the attributes asked for."""
    parts = [STYLES[style].task]
    if length is not None:
        parts.append(_LENGTH_PHRASE[length])
    if specificity is not None:
        parts.append(_SPECIFICITY_PHRASE[specificity])
    return " ".join(parts)


def build_messages(shown_passage: str, attrs: PromptAttributes, shots: Sequence[Shot]) -> list[dict[str, str]]:
    """The chat of one prompt: system line, each shot as a user/assistant turn, then the passage."""
    messages = [{"role": "system", "content": STYLES[attrs.style].system}]
    for shot in shots:
        messages.append({"role": "user", "content": f"Article: {shot.passage}\n\n"
                                                    f"{instruction(attrs.style, shot.length, shot.specificity)}"})
        messages.append({"role": "assistant", "content": shot.query})
    messages.append({"role": "user", "content": f"Article: {shown_passage}\n\n"
                                                f"{instruction(attrs.style, attrs.length, attrs.specificity)}"})
    return messages


def shot_queries(few_shot: Sequence[FewShotExample] | None = None) -> frozenset[str]:
    """Lower-cased queries of every example a prompt may show, which a generated query must not copy."""
    return BUILTIN_SHOT_QUERIES | {e.query.lower() for e in few_shot or ()}


def checked_styles(styles: Sequence[str]) -> tuple[str, ...]:
    """``styles`` as a tuple; an error naming the valid ones when any is unknown or none is given."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        raise ValueError(f"unknown query styles {unknown}; valid: {sorted(STYLES)}")
    return tuple(styles)


def passage_messages(passage: str, attrs: PromptAttributes, *, max_passage_chars: int,
                     few_shot: Sequence[FewShotExample] | None = None) -> list[dict[str, str]]:
    """The chat an LLM generator sends for one passage (cut to ``max_passage_chars``), whatever
    the backend."""
    return build_messages(truncate_passage(passage, max_passage_chars), attrs, shots_for(attrs.style, few_shot))


class PromptedGenerator:
    """What the LLM generators (local and OpenAI-compatible) share: their synthesize config, the
    query style and attributes drawn for each passage, and the chat that asks for its queries."""

    def __init__(self, cfg: SynthesizeConfig) -> None:
        self.cfg = cfg
        self.styles = checked_styles(cfg.styles)

    def attributes_for(self, passage: str) -> PromptAttributes:
        """The style and attributes this passage is prompted with (a seeded draw, stable across runs,
        batches, workers and backends)."""
        return draw_attributes(self.cfg.seed, passage, self.styles)

    def messages(self, passage: str, attrs: PromptAttributes) -> list[dict[str, str]]:
        """The chat sent for one passage."""
        return passage_messages(passage, attrs, max_passage_chars=self.cfg.max_passage_chars,
                                few_shot=self.cfg.few_shot)
