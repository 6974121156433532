"""The drop-rate guard's arithmetic: a rule's share is of the documents that *reached* it (no earlier
rule dropped them), and its warning names the setting and the profiles that keep its example."""

from __future__ import annotations

from refinery.tasks.quality import QualityConfig
from refinery.tasks.quality.guard import drop_rate_warnings, guard_message, warning_line


def rules(warnings: list[dict]) -> list[tuple[str, int, int]]:
    return [(w["rule"], w["dropped"], w["reached"]) for w in warnings]


def test_a_rule_s_share_is_of_the_documents_that_reached_it():
    cfg = QualityConfig()
    # langid drops 50 of 100 (50%); min_alpha_words then sees 50 and drops 20 of them (40%, not 20%)
    got = drop_rate_warnings(100, {"langid.not_allowed": 50, "gopher_quality.min_alpha_words": 20}, cfg)
    assert rules(got) == [("langid.not_allowed", 50, 100), ("gopher_quality.min_alpha_words", 20, 50)]
    assert got[1]["share"] == 0.4 and got[1]["setting"] == "quality.gopher_quality.min_alpha_words_ratio"
    assert got[1]["value"] == 0.8
    # 10 of the 50 reaching it is 20%: no warning; a later rule reached by 40 dropping 13 is 32.5%
    got = drop_rate_warnings(100, {"langid.not_allowed": 20, "gopher_repetition.dup_5gram": 30,
                                   "gopher_quality.min_alpha_words": 10, "c4.min_sentences": 13}, cfg)
    assert rules(got) == [("gopher_repetition.dup_5gram", 30, 80), ("c4.min_sentences", 13, 40)]


def test_the_limit_the_minimum_and_switching_it_off():
    drops = {"gopher_quality.min_word_count": 40}
    assert rules(drop_rate_warnings(100, drops, QualityConfig())) == [("gopher_quality.min_word_count", 40, 100)]
    assert drop_rate_warnings(100, drops, QualityConfig(guard={"max_drop_share": 0.5})) == []
    assert drop_rate_warnings(100, drops, QualityConfig(guard={"max_drop_share": None})) == []
    assert drop_rate_warnings(15, {"gopher_quality.min_word_count": 10}, QualityConfig()) == []  # min_reached 20
    # a rule switched off drops nothing and is not judged
    off = QualityConfig(gopher_quality={"min_doc_words": None})
    assert drop_rate_warnings(100, drops, off) == []
    # the trained classifier drops what it was trained to: not judged
    clf = QualityConfig(classifier={"enabled": True, "threshold": 0.5})
    assert drop_rate_warnings(100, {"classifier.min_score": 80}, clf) == []


def test_the_warning_names_an_example_and_the_profiles_that_keep_it():
    seen = []

    def example(reason: str, attribute: str):
        seen.append((reason, attribute))
        return ("d1", "Split an array into multiple sub-arrays.\n\n>>> np.hsplit(x, 2)", 0.52)

    (w,) = drop_rate_warnings(50, {"gopher_quality.min_alpha_words": 40}, QualityConfig(), example=example)
    assert seen == [("gopher_quality.min_alpha_words", "gopher_quality.alpha_words_frac")]
    assert w["example_doc_id"] == "d1" and w["example"].startswith("Split an array into multiple sub-arrays. >>>")
    assert w["profiles_that_keep"] == ["technical"]  # 0.52 passes technical's 0.25, not prose's 0.8
    line = warning_line(w)
    assert "gopher_quality.min_alpha_words dropped 40 of the 50 documents that reached it (80% > 30%)" in line
    assert "change quality.gopher_quality.min_alpha_words_ratio (now 0.8)" in line
    assert "quality.profile: technical" in line and "\n" not in line
    # a run under technical is told of no other profile for a value prose does not pass either
    (w,) = drop_rate_warnings(50, {"gopher_quality.min_alpha_words": 40},
                              QualityConfig(profile="technical"), example=lambda r, a: ("d2", "x", 0.1))
    assert w["profiles_that_keep"] == [] and w["value"] == 0.25
    # c4.min_sentences with 2 sentences: prose and technical need only one
    (w,) = drop_rate_warnings(50, {"c4.min_sentences": 40}, QualityConfig(), example=lambda r, a: ("d3", "x", 2.0))
    assert w["profiles_that_keep"] == ["prose", "technical"]
    message = guard_message("20260101-x", [w])
    assert "\n" not in message and "refinery refilter 20260101-x" in message


def test_per_source_shares_find_a_source_the_whole_run_hides() -> None:
    from refinery.tasks.quality.guard import drop_rate_warnings_by_source

    # 900 crawled pages lose 5% to the alpha-words rule, 100 documentation pages lose 90%: 13.5% of
    # the run, under the 30% limit, but 90% of the documentation.
    reached = {"crawl": 900, "docs": 100}
    drops = {"crawl": {"gopher_quality.min_alpha_words": 45}, "docs": {"gopher_quality.min_alpha_words": 90}}
    assert drop_rate_warnings(1000, {"gopher_quality.min_alpha_words": 135}, QualityConfig()) == []
    asked = []
    (w,) = drop_rate_warnings_by_source(reached, drops, QualityConfig(),
                                        example=lambda r, a, s: asked.append(s) or ("d1", "x", 0.5))
    assert (w["source"], w["rule"], w["dropped"], w["reached"]) == ("docs", "gopher_quality.min_alpha_words", 90, 100)
    assert asked == ["docs"]  # the example is one of that source's drops
    assert "90 of the 100 documents of source docs that reached it (90% > 30%)" in warning_line(w)
    # one source: the run's warnings, without a source
    (alone,) = drop_rate_warnings_by_source({"docs": 100}, {"docs": drops["docs"]}, QualityConfig())
    assert "source" not in alone and alone["dropped"] == 90
    assert drop_rate_warnings_by_source({}, {}, QualityConfig()) == []
