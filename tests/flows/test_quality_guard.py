"""The drop-rate guard in real runs on technical documentation, through the `refinery` command
line: under the web profile a rule drops most of it, and the run says so at its end (CLI output,
``runs.warnings``, the report), or under ``quality.guard.action: fail`` fails after the quality stage
wrote its outputs, so ``refinery refilter`` with the technical profile re-decides it from the stored
scores and the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from refinery.flows.cli import app
from refinery.storage import Catalog, DataHome, StageMarker
from tests.fixtures.techdocs import techdoc_sections

runner = CliRunner()
GUARDED_RULE = "gopher_quality.min_alpha_words"


@pytest.fixture(scope="module")
def techdocs_config(tmp_path_factory) -> callable:
    """A folder of ~210 documentation sections (one .txt each) and a maker of configs over it."""
    root = tmp_path_factory.mktemp("guard")
    folder = root / "docs"
    folder.mkdir()
    for i, section in enumerate(techdoc_sections(every=16)):
        (folder / f"{i:04d}.txt").write_text(section.text)

    def config(name: str, **quality) -> Path:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            # one home, one dataset per config: each reads the folder as new
            "home": str(root / "home"), "dataset": name, "stages": ["ingest", "dedup", "quality"],
            "ingest": {"shard_size": 60, "sources": [{"path": str(folder), "name": "techdocs"}]},
            "quality": quality}))
        return path

    return config


def newest_run(config: Path) -> dict:
    home = DataHome.resolve(yaml.safe_load(config.read_text())["home"])
    (row,) = Catalog(home.catalog_path).query(
        "SELECT run_id, status, error, warnings, docs_kept, run_dir FROM runs ORDER BY started_at DESC LIMIT 1").to_pylist()
    return row


def test_a_run_that_loses_most_of_its_corpus_to_one_rule_says_so(techdocs_config, prefect_api, dask_address):
    config = techdocs_config("warn")
    result = runner.invoke(app, ["run", "--config", str(config), "--dask-address", dask_address])
    assert result.exit_code == 0, result.output
    row = newest_run(config)
    assert row["status"] == "completed"
    warnings = json.loads(row["warnings"])
    by_rule = {w["rule"]: w for w in warnings}
    w = by_rule[GUARDED_RULE]
    assert w["share"] > 0.3 and w["dropped"] <= w["reached"]
    assert w["setting"] == "quality.gopher_quality.min_alpha_words_ratio" and "technical" in w["profiles_that_keep"]
    # the example is a document that rule dropped, quoted from its text
    home = DataHome.resolve(yaml.safe_load(config.read_text())["home"])
    (drop,) = Catalog(home.catalog_path).query(
        "SELECT d.reason, left(x.text, 40) AS text FROM drops d JOIN documents x USING (run_id, doc_id)"
        " WHERE d.run_id = ? AND d.doc_id = ?", [row["run_id"], w["example_doc_id"]]).to_pylist()
    assert drop["reason"] == GUARDED_RULE and w["example"].startswith(" ".join(drop["text"].split())[:30])
    # the end of the CLI's output names it, and the setting
    assert f"warning: {GUARDED_RULE} dropped {w['dropped']} of the {w['reached']}" in result.output
    assert "quality.gopher_quality.min_alpha_words_ratio" in result.output
    # the report opens with it, before the accounting
    report = (Path(row["run_dir"]) / "report.md").read_text()
    assert report.index("## Warnings") < report.index("## Accounting")
    assert GUARDED_RULE in report and w["example_doc_id"] in report


def test_fail_fails_the_run_after_quality_and_a_refilter_with_the_technical_profile_re_decides_it(
        techdocs_config, prefect_api, dask_address):
    config = techdocs_config("fail", guard={"action": "fail"})
    result = runner.invoke(app, ["run", "--config", str(config), "--dask-address", dask_address])
    assert result.exit_code == 1
    row = newest_run(config)
    run_id, run_dir = row["run_id"], Path(row["run_dir"])
    assert row["status"] == "failed" and row["error"].startswith("quality (drop-rate guard): DropRateError: quality.guard: ")
    assert GUARDED_RULE in row["error"] and "\n" not in row["error"]
    assert f"refinery refilter {run_id}" in result.output
    assert "## Warnings" in (run_dir / "report.md").read_text()
    quality = StageMarker(run_dir / "quality").read()
    assert quality is not None  # the stage's outputs were written before the run failed
    web_kept = quality["kept"]
    assert web_kept < 0.3 * quality["docs"]

    technical = techdocs_config("technical", profile="technical", guard={"action": "fail"})
    result = runner.invoke(app, ["refilter", run_id, "--config", str(technical), "--dask-address", dask_address])
    assert result.exit_code == 0, result.output
    after = newest_run(config)
    assert after["status"] == "refiltered" and after["docs_kept"] > max(2 * web_kept, 0.7 * quality["docs"])
    assert after["warnings"] is None  # no rule drops more than 30% under technical
    assert "profile: technical" in (run_dir / "config.yaml").read_text()
    # and the run goes on: --resume passes the guard under the refiltered decisions
    result = runner.invoke(app, ["run", "--resume", run_id, "--config", str(config), "--dask-address", dask_address])
    assert result.exit_code == 0, result.output
    assert newest_run(config)["status"] == "completed"


def test_a_source_that_loses_most_of_itself_is_named_even_when_the_whole_run_loses_little(
        techdocs_config, prefect_api, dask_address, tmp_path):
    from refinery.tasks.ingest.readers import bbc_folder

    docs = techdocs_config("unused").parent / "docs"
    config = tmp_path / "mixed.yaml"
    config.write_text(yaml.safe_dump({
        "home": str(tmp_path / "home"), "stages": ["ingest", "dedup", "quality"],
        "ingest": {"shard_size": 200, "sources": [{"path": str(docs), "name": "techdocs"},
                                                  {"path": str(bbc_folder()), "name": "news"}]}}))
    result = runner.invoke(app, ["run", "--config", str(config), "--dask-address", dask_address])
    assert result.exit_code == 0, result.output
    row = newest_run(config)
    home = DataHome.resolve(str(tmp_path / "home"))
    (totals,) = Catalog(home.catalog_path).query(
        "SELECT count(*) FILTER (reason = $1) AS rule, count(*) FILTER (stage = 'dedup') AS dedup,"
        " (SELECT count(*) FROM documents WHERE run_id = $2) AS docs FROM drops WHERE run_id = $2",
        [GUARDED_RULE, row["run_id"]]).to_pylist()
    # the rule's share of the whole run is under the limit (the news outnumbers the documentation) ...
    assert totals["rule"] < 0.3 * (totals["docs"] - totals["dedup"])
    # ... but the documentation loses most of itself to it, and the warning says which source
    by_rule = {(w.get("source"), w["rule"]): w for w in json.loads(row["warnings"])}
    w = by_rule[("techdocs", GUARDED_RULE)]
    assert w["share"] > 0.3 and w["example_doc_id"]
    assert ("news", GUARDED_RULE) not in by_rule
    (example,) = Catalog(home.catalog_path).query(
        "SELECT source FROM documents WHERE run_id = ? AND doc_id = ?", [row["run_id"], w["example_doc_id"]]).to_pylist()
    assert example["source"] == "techdocs"
    assert f"of the {w['reached']} documents of source techdocs that reached it" in result.output
    report = (Path(row["run_dir"]) / "report.md").read_text()
    assert f"| techdocs | {GUARDED_RULE} | {w['dropped']} / {w['reached']} " in report
