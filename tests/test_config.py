"""Config: defaults run the bundled corpus; an unknown key or a bad value names the key; configs are frozen."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from refinery.tasks.config import ConfigError, RefineryConfig, dump_config, load_config, parse_config


def test_defaults_run_the_bundled_corpus():
    cfg = load_config(None)
    assert [s.path for s in cfg.ingest.sources] == ["builtin:bbc"]
    assert cfg.dedup.threshold == 0.8 and cfg.dedup.shingle == "word" and cfg.dedup.shingle_size == 5
    assert cfg.dask.address is None


def test_round_trip_through_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(RefineryConfig()))
    assert load_config(path) == RefineryConfig()


@pytest.mark.parametrize("data, message", [
    ({"dedup": {"treshold": 0.7}}, "invalid config c.yaml: `dedup.treshold`: unknown key"),
    ({"colour": "red"}, "`colour`: unknown key"),
    ({"dedup": {"threshold": 1.5}}, "`dedup.threshold`: Input should be less than 1 (got 1.5)"),
    ({"ingest": {"shard_size": "many"}}, "`ingest.shard_size`: Input should be a valid integer"),
    ({"ingest": {"sources": [{"path": "x", "format": "xml"}]}}, "`ingest.sources.0.format`: Input should be"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "c.yaml")
    assert message in str(err.value)


DEDUP_KEYS = ("exact, near, shingle, ngram, num_perm, threshold, bands, rows, false_positive_weight, verify, "
              "bucket_window, seed, batch_chars, bands_per_batch, clustering, survivor, url, url_blocklist, url_blocklist_file")


@pytest.mark.parametrize("data, message", [
    ({"dedup": {"treshold": 0.7}},
     f"`dedup.treshold`: unknown key; did you mean `threshold`? (valid keys of `dedup`: {DEDUP_KEYS})"),
    # a section inside a list: the keys of the list's items
    ({"ingest": {"sources": [{"pth": "x"}]}}, "`ingest.sources.0.pth`: unknown key; did you mean `path`? "
     "(valid keys of `ingest.sources.0`: path, format, name, text_field, title_field, id_field, label_field, "
     "title_from_first_line, html_tables, html_code, id_scope, mode, encoding)"),
    ({"synthesize": {"openai": {"modle": "m"}}}, "`synthesize.openai.modle`: unknown key; did you mean `model`?"),
    ({"quality": {"gopher_quality": {"min_doc_word": 10}}}, "did you mean `min_doc_words`?"),
    # nothing close: only the valid keys
    ({"colour": "red"}, "`colour`: unknown key (valid top-level keys: home, catalog, dataset, stages, dask, schedule, ingest, dedup, "
     "quality, synthesize, train, evaluate, budget)"),
])
def test_an_unknown_key_names_the_closest_and_the_valid_keys_of_its_section(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "c.yaml")
    assert str(err.value).startswith("invalid config c.yaml: `") and message in str(err.value)
    assert "\n" not in str(err.value)  # one problem, one line


def test_several_problems_are_a_line_each():
    with pytest.raises(ConfigError) as err:
        parse_config({"dedup": {"threshold": 1.5, "zzz": 1}}, "c.yaml")
    assert str(err.value).splitlines() == [
        "invalid config c.yaml:",
        "  `dedup.threshold`: Input should be less than 1 (got 1.5)",
        f"  `dedup.zzz`: unknown key (valid keys of `dedup`: {DEDUP_KEYS})"]


@pytest.mark.parametrize("data", [
    {"synthesize": {"prompt_ids": ["title_v1"]}},  # configs of runs before query styles: no longer read
    {"train": {"use_hard_negatives": False}},  # one switch now: synthesize.hard_negatives
])
def test_keys_of_earlier_commits_are_unknown(data):
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(data, "c.yaml")


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for t in (field.annotation, *getattr(field.annotation, "__args__", ())):
            for u in (t, *getattr(t, "__args__", ())):
                if isinstance(u, type) and issubclass(u, BaseModel):
                    found |= _models(u)
    return found


def test_every_config_model_is_frozen():
    models = _models(RefineryConfig)
    assert len(models) >= 17  # every section and sub-section, list items included
    assert all(m.model_config.get("frozen") for m in models), [m.__name__ for m in models if not m.model_config.get("frozen")]
    cfg = RefineryConfig()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.dedup.threshold = 0.5
    with pytest.raises(ValidationError, match="frozen"):
        cfg.ingest.sources[0].path = "elsewhere"
    changed = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"threshold": 0.5})})
    assert changed.dedup.threshold == 0.5 and cfg.dedup.threshold == 0.8


def test_the_schedule_of_served_and_deployed_runs_is_configured():
    assert (RefineryConfig().schedule.cron, RefineryConfig().schedule.timezone) == ("0 2 * * *", "UTC")
    cfg = parse_config({"schedule": {"cron": "30 4 * * 1-5", "timezone": "Europe/Berlin"}})
    assert (cfg.schedule.cron, cfg.schedule.timezone) == ("30 4 * * 1-5", "Europe/Berlin")


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_configuration_doc_documents_every_option():
    """docs/configuration.md's reference is the one generated from the models (`make docs`)."""
    from pathlib import Path

    from refinery.tasks.config import config_reference

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    start, end = doc.index("<!-- config-reference:start"), doc.index("<!-- config-reference:end -->")
    assert doc[doc.index("\n", start) + 1:end] == config_reference()
