"""`refinery ablate`'s plan (flows/ablate.py ``plan``): which comparisons and variants a config gets,
and which are left out with a reason. Pure: no run, no Prefect; the runs are in test_ablate.py."""

from __future__ import annotations

import pytest

from refinery.flows.ablate import _variant_config, plan
from refinery.tasks.config import parse_config
from refinery.tasks.exceptions import ConfigError, InputError

TRAIN_ONLY = ("losses", "teacher_filtered_negatives", "nights")


def config(**train):
    return parse_config({"dataset": "news", "synthesize": {"generators": ["inverse_cloze", "smollm2"]},
                         "train": train})


def trains(variant: dict) -> dict:
    return variant["train"]


def test_every_comparison_is_planned_when_the_dataset_has_a_promoted_model():
    got = plan(config(), promoted="20260101-000000-abcd")
    assert list(got.comparisons) == ["curation", "generators", "hard_negatives", *TRAIN_ONLY]
    assert got.skipped == [
        "losses: no marginmse_cross_encoder: no cross-encoder is configured (train.teacher.kind: cross_encoder, "
        "train.teacher.path: a CrossEncoder folder)",
        "choosing: no method of choosing the data is configured: set synthesize.selection.weight, "
        "synthesize.selection.cap_by + cap and/or synthesize.rephrase.styles"]


def test_losses_compare_mnrl_with_marginmse_per_teacher_and_both():
    losses = plan(config(), "losses").comparisons["losses"]
    assert list(losses) == ["mnrl", "marginmse_query_likelihood", "marginmse_fusion", "mnrl+marginmse_fusion"]
    assert {n: (trains(v)["loss"], trains(v)["teacher"]["kind"]) for n, v in losses.items()} == {
        "mnrl": ("mnrl", "none"), "marginmse_query_likelihood": ("marginmse", "query_likelihood"),
        "marginmse_fusion": ("marginmse", "fusion"), "mnrl+marginmse_fusion": ("mnrl+marginmse", "fusion")}


def test_a_configured_cross_encoder_is_a_losses_variant_and_the_teacher_of_both():
    cfg = config(loss="marginmse", teacher={"kind": "cross_encoder", "path": "/models/ce", "batch_size": 8})
    got = plan(cfg, "losses")
    losses = got.comparisons["losses"]
    assert got.skipped == []
    assert trains(losses["marginmse_cross_encoder"])["teacher"] == {
        **cfg.train.teacher.model_dump(mode="json"), "kind": "cross_encoder", "path": "/models/ce"}
    assert trains(losses["mnrl+marginmse_cross_encoder"])["teacher"]["path"] == "/models/ce"
    # the query-likelihood teacher does not inherit the cross-encoder's folder; the config's batch size it does
    assert trains(losses["marginmse_query_likelihood"])["teacher"]["path"] is None
    assert trains(losses["marginmse_query_likelihood"])["teacher"]["batch_size"] == 8


def test_teacher_filtered_negatives_differ_in_the_filter_only():
    cfg = config(loss="mnrl+marginmse", teacher={"kind": "query_likelihood", "false_negative_margin": 0.5})
    variants = plan(cfg, "teacher_filtered_negatives").comparisons["teacher_filtered_negatives"]
    assert list(variants) == ["unfiltered", "teacher_filtered"]
    unfiltered, filtered = (trains(variants[n]) for n in ("unfiltered", "teacher_filtered"))
    assert (unfiltered["teacher"]["false_negative_margin"], filtered["teacher"]["false_negative_margin"]) == (None, 0.5)
    assert {**unfiltered["teacher"], "false_negative_margin": 0.5} == filtered["teacher"]
    assert unfiltered["loss"] == filtered["loss"] == "mnrl+marginmse"
    assert filtered["teacher"]["kind"] == "query_likelihood"


def test_without_a_configured_teacher_the_filter_is_the_fusion_teachers_at_the_default_margin():
    variants = plan(config(), "teacher_filtered_negatives").comparisons["teacher_filtered_negatives"]
    assert trains(variants["teacher_filtered"])["teacher"]["kind"] == "fusion"
    assert trains(variants["teacher_filtered"])["teacher"]["false_negative_margin"] == 0.0
    assert trains(variants["unfiltered"])["loss"] == "mnrl"


def test_nights_compare_a_night_from_base_with_one_from_the_promoted_model_with_replay():
    nights = plan(config(replay_ratio=0.5), "nights", promoted="r1").comparisons["nights"]
    assert nights == {"from_base": {"train": {"init": "base", "replay_ratio": 0}},
                      "from_promoted": {"train": {"init": "promoted", "replay_ratio": 0.5}}}
    # a config without replay still replays in the promoted night: that is what a night from it does
    nights = plan(config(replay_ratio=0), "nights", promoted="r1").comparisons["nights"]
    assert trains(nights["from_promoted"])["replay_ratio"] == 1.0


def test_without_a_promoted_model_nights_are_skipped_with_the_reason_and_refused_alone():
    got = plan(config())
    assert "nights" not in got.comparisons and "losses" in got.comparisons
    [line] = [s for s in got.skipped if s.startswith("nights:")]
    assert "dataset 'news' has no promoted model" in line and "`refinery run`" in line
    with pytest.raises(InputError, match="promoted model.*`refinery run`"):
        plan(config(), "nights")


def test_train_only_variants_share_everything_but_the_train_section():
    cfg = config(teacher={"kind": "cross_encoder", "path": "/models/ce"})
    comparisons = plan(cfg, promoted="r1").comparisons
    for comparison in TRAIN_ONLY:
        variants = comparisons[comparison]
        assert all(set(v) == {"train"} for v in variants.values())
        dumps = [_variant_config(cfg, v).model_dump(mode="json") for v in variants.values()]  # every one valid
        assert all({k: d[k] for k in d if k != "train"} == {k: dumps[0][k] for k in dumps[0] if k != "train"}
                   for d in dumps)


def test_an_unknown_comparison_names_the_valid_ones():
    with pytest.raises(ConfigError, match="teacher_filtered_negatives, nights"):
        plan(config(), "teachers")
    with pytest.raises(ConfigError, match="two or more synthesize.generators"):
        plan(parse_config({"synthesize": {"generators": ["inverse_cloze"]}}), "generators")
    got = plan(parse_config({"synthesize": {"generators": ["inverse_cloze"]}}))
    assert "generators" not in got.comparisons
    assert any(s.startswith("generators: needs two or more") for s in got.skipped)


def test_choosing_compares_uniform_passages_with_each_configured_method_and_all_of_them():
    cfg = parse_config({"synthesize": {"selection": {"weight": "classifier.score", "temperature": 0.5,
                                                     "cap_by": "label", "cap": 40, "seed": 3},
                                       "rephrase": {"styles": ["qa"], "documents": 8}}})
    choosing = plan(cfg, "choosing").comparisons["choosing"]
    assert list(choosing) == ["uniform", "weighted", "balanced", "rephrased", "together"]
    rephrase = {n: _variant_config(cfg, v).synthesize.rephrase for n, v in choosing.items()}
    assert not rephrase["uniform"].styles and not rephrase["weighted"].styles and not rephrase["balanced"].styles
    assert rephrase["rephrased"] == rephrase["together"] == cfg.synthesize.rephrase
    selections = {n: _variant_config(cfg, v).synthesize.selection for n, v in choosing.items()}
    assert not selections["uniform"].active  # the config's selection is off in the baseline
    assert (selections["weighted"].weight, selections["weighted"].temperature, selections["weighted"].cap) == (
        "classifier.score", 0.5, None)
    assert (selections["balanced"].weight, selections["balanced"].cap_by, selections["balanced"].cap) == (
        None, "label", 40)
    assert selections["together"] == cfg.synthesize.selection
    # one method: no "together"; none: refused alone, skipped with the reason otherwise
    alone = plan(parse_config({"synthesize": {"selection": {"cap_by": "label", "cap": 4}}}), "choosing")
    assert list(alone.comparisons["choosing"]) == ["uniform", "balanced"]
    with pytest.raises(ConfigError, match="synthesize.selection.weight"):
        plan(parse_config({}), "choosing")


def test_the_cartography_variant_trains_after_a_baseline_that_maps_its_pairs():
    cfg = parse_config({"synthesize": {"selection": {"cap_by": "label", "cap": 4}},
                        "train": {"cartography": {"drop_hard_to_learn": True, "pairs": 512}}})
    choosing = plan(cfg, "choosing").comparisons["choosing"]
    assert list(choosing) == ["uniform", "balanced", "cartography"]  # no "together": one synthesizing method
    maps = {n: _variant_config(cfg, v).train.cartography for n, v in choosing.items()}
    assert maps["uniform"].enabled and not maps["uniform"].drop_hard_to_learn and maps["uniform"].pairs == 512
    # only the baseline pays for a map, and only the cartography variant leaves pairs out by it
    assert not maps["balanced"].enabled and not maps["balanced"].drop_hard_to_learn
    assert maps["cartography"].enabled and maps["cartography"].drop_hard_to_learn
    assert not _variant_config(cfg, choosing["cartography"]).synthesize.selection.active
    # a config that drops hard pairs without asking for the comparison: its other variants do not
    other = parse_config({"synthesize": {"selection": {"weight": "n_chars"}},
                          "train": {"cartography": {"enabled": True, "drop_hard_to_learn": True}}})
    weighted = _variant_config(other, plan(other, "choosing").comparisons["choosing"]["weighted"]).train.cartography
    assert not weighted.drop_hard_to_learn
