"""Rule profiles (``quality.profile``) on real text: a preset under the config's own settings, only
thresholds (so a refilter moves a run between profiles), and each profile keeping the corpus it is
for -- technical documentation, hard-wrapped prose -- while still dropping crafted junk."""

from __future__ import annotations

import textwrap
from collections import Counter

import pytest

from refinery.tasks.config import parse_config
from refinery.tasks.quality import GopherQualityConfig, QualityConfig, decide, family_fingerprints, score_documents
from refinery.tasks.quality.profiles import PRESETS, PROFILES
from refinery.tasks.quality.refilter import rescored_families
from tests.fixtures.crafted import bbc_files, crafted_documents
from tests.fixtures.techdocs import code_share, techdoc_sections


def kept_share(attrs: dict, cfg: QualityConfig) -> float:
    reasons = decide(attrs, cfg)
    return sum(r is None for r in reasons) / len(reasons)


@pytest.fixture(scope="module")
def techdocs() -> dict:
    """Scores of every 8th section of the technical documentation corpus (~420 documents)."""
    sections = techdoc_sections(every=8)
    assert len(sections) > 300 and sum(code_share(s.text) > 0.2 for s in sections) > len(sections) / 2
    return score_documents([s.text for s in sections], QualityConfig())


def test_a_profile_presets_thresholds_and_the_config_s_own_settings_win():
    cfg = parse_config({"quality": {"profile": "technical", "langid": {"min_score": 0.5},
                                    "c4": {"filter_curly_bracket": True}}}).quality
    assert cfg.profile == "technical"
    assert cfg.langid.min_score == 0.5 and cfg.c4.filter_curly_bracket is True  # set in the config
    assert cfg.gopher_quality.min_alpha_words_ratio == 0.25 and cfg.c4.min_num_sentences == 1  # the preset
    assert cfg.gopher_quality.min_stop_words == 2  # neither: the default
    # a family given as a model counts only what it was given
    cfg = QualityConfig(profile="technical", gopher_quality=GopherQualityConfig(min_doc_words=7))
    assert cfg.gopher_quality.min_doc_words == 7 and cfg.gopher_quality.min_alpha_words_ratio == 0.25
    # the default is web: datatrove's thresholds
    assert QualityConfig() == QualityConfig(profile="web")
    assert QualityConfig().gopher_quality.min_alpha_words_ratio == 0.8
    # custom presets nothing
    assert QualityConfig(profile="custom").model_dump(exclude={"profile"}) == QualityConfig().model_dump(exclude={"profile"})


def test_a_resolved_config_reads_back_the_same():
    """A run stores its resolved config; reading it back (every field now explicit) changes nothing."""
    for name in PROFILES:
        cfg = parse_config({"quality": {"profile": name, "fineweb": {"max_new_line_ratio": 0.5}}})
        assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_an_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match="'web', 'prose', 'technical' or 'custom'"):
        parse_config({"quality": {"profile": "code"}})


def test_profiles_change_only_thresholds_so_a_refilter_can_move_a_run_between_them():
    web = family_fingerprints(QualityConfig())
    for name in PROFILES:
        assert rescored_families(web, QualityConfig(profile=name)) == []
    for name, preset in PRESETS.items():  # and each preset value is a change, not a restatement
        for family, values in preset.items():
            default = getattr(QualityConfig(), family)
            assert all(getattr(default, field) != value for field, value in values.items()), (name, family)


def test_technical_keeps_most_of_the_technical_documentation_that_web_drops(techdocs):
    web = kept_share(techdocs, QualityConfig())
    technical = kept_share(techdocs, QualityConfig(profile="technical"))
    assert web < 0.1
    assert technical > 0.75
    # what web drops it for: tokens without letters (code) and language ID
    reasons = Counter(decide(techdocs, QualityConfig()))
    n = len(techdocs["langid.top_score"])
    assert reasons["gopher_quality.min_alpha_words"] + reasons["langid.not_allowed"] > 0.7 * n


def test_technical_still_drops_crafted_junk():
    junk = [d for d in crafted_documents(bbc_files()[5::9], n=280, seed=4, use_spacy_examples=True)
            if d.kind in ("foreign", "spam", "lorem", "navigation", "hashtags", "repeated_lines")]
    assert len(junk) > 60
    attrs = score_documents([d.text for d in junk], QualityConfig())
    assert kept_share(attrs, QualityConfig(profile="technical")) < 0.15


def test_prose_keeps_hard_wrapped_prose_that_web_drops():
    """Books and e-mails are wrapped at a fixed width: most lines end mid-sentence."""
    articles = [text for _, text in bbc_files()[2::15]]
    wrapped = ["\n\n".join(textwrap.fill(p, 72) for p in text.split("\n\n")) for text in articles]
    plain, hard = (score_documents(t, QualityConfig()) for t in (articles, wrapped))
    assert kept_share(plain, QualityConfig()) > 0.9
    assert kept_share(hard, QualityConfig()) < 0.6
    assert kept_share(hard, QualityConfig(profile="prose")) >= kept_share(plain, QualityConfig()) - 0.02
    # on unwrapped articles prose decides (almost) as web does
    assert 0 <= kept_share(plain, QualityConfig(profile="prose")) - kept_share(plain, QualityConfig()) < 0.02
