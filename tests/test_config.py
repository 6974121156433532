"""Config: defaults run the bundled corpus; an unknown key or a bad value names the key."""

from __future__ import annotations

import pytest

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
    ({"dedup": {"treshold": 0.7}}, "dedup.treshold: unknown key"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"dedup": {"threshold": 1.5}}, "dedup.threshold: Input should be less than 1"),
    ({"ingest": {"shard_size": "many"}}, "ingest.shard_size: Input should be a valid integer"),
    ({"ingest": {"sources": [{"path": "x", "format": "xml"}]}}, "ingest.sources.0.format: Input should be"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "c.yaml")
    assert message in str(err.value)


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
