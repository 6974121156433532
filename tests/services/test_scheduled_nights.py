"""Three scheduled nights over a drop folder, as a user runs them: `refinery serve --interval` against
a separately started `prefect server start`, a file dropped into the folder before each night, and
at the end three versions of one dataset, each night's copies of earlier nights dropped."""

from __future__ import annotations

import json

from refinery.storage import Catalog
from tests.services.services import BIN, log_of, started, wait_for, write_config

RUN_TIMEOUT = 420
NIGHTS = 3
PER_NIGHT = 40
COPIES = 5  # each night after the first copies this many of the night before's records, word for word


def _drop(folder, night: int, texts: list[str], earlier: list[dict]) -> dict[str, str]:
    """Night ``night``'s file: PER_NIGHT new notes, then word-for-word copies of ``earlier`` (notes the
    night before curated); copy record id -> the record id it copies."""
    fresh = texts[night * PER_NIGHT : (night + 1) * PER_NIGHT]
    rows = [{"note_id": f"d{night}-{i}", "body": t} for i, t in enumerate(fresh)]
    rows += [{"note_id": f"d{night}-copy-{e['record_id']}", "body": e["text"]} for e in earlier]
    (folder / f"night-{night}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {f"d{night}-copy-{e['record_id']}": e["record_id"] for e in earlier}


def _run_of(catalog: Catalog) -> str:
    """The last run that finished (the night that just ran)."""
    return catalog.query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").column("run_id")[0].as_py()


def test_three_scheduled_nights_publish_three_versions_of_one_dataset(prefect_server, tmp_path):
    from tests.fixtures.corpora import synthetic_chunk

    texts = synthetic_chunk(0, NIGHTS * PER_NIGHT, chunk_docs=NIGHTS * PER_NIGHT, seed=11).texts
    folder = tmp_path / "drop"
    folder.mkdir()
    config = write_config(tmp_path, folder, dataset="notes")
    catalog = Catalog(tmp_path / "home" / "catalog.duckdb")
    copies = _drop(folder, 0, texts, [])
    # a run that comes due while a night is going is skipped, so each night reads the folder it was given
    argv = [str(BIN / "refinery"), "serve", "--interval", "15", "--overlap", "skip", "--config", str(config),
            "--name", "nights"]
    finished: list[dict] = []
    with started("refinery-serve-nights", argv, cwd=tmp_path, env=prefect_server.env()) as proc:
        dep = wait_for(lambda: proc.poll() is None and prefect_server.deployment("nights"), timeout=180,
                       what="`refinery serve` to register its deployment")
        for night in range(NIGHTS):
            def next_run():
                assert proc.poll() is None, log_of("refinery-serve-nights")[-3000:]
                done = {r["id"] for r in finished}
                runs = [r for r in prefect_server.flow_runs(dep["id"])
                        if r["auto_scheduled"] and r["state_type"] not in ("SCHEDULED", "CANCELLED")
                        and r["id"] not in done]
                return runs[0] if runs else None
            run = wait_for(next_run, timeout=180, what=f"scheduled night {night + 1}")
            prefect_server.post(f"/deployments/{dep['id']}/pause_deployment")  # one night at a time
            final = prefect_server.wait_final(run["id"], timeout=RUN_TIMEOUT)
            assert final["state_type"] == "COMPLETED", log_of("refinery-serve-nights")[-4000:]
            finished.append(final)
            if night + 1 < NIGHTS:
                earlier = catalog.query("SELECT record_id, text FROM curated WHERE added_in = ? ORDER BY record_id"
                                        f" LIMIT {COPIES}", [_run_of(catalog)])
                copies |= _drop(folder, night + 1, texts, earlier.to_pylist())
                prefect_server.post(f"/deployments/{dep['id']}/resume_deployment")
    versions = catalog.query("SELECT version, docs_added, docs_total FROM dataset_versions WHERE dataset = 'notes'"
                             " ORDER BY seq").to_pylist()
    assert len(versions) == NIGHTS
    curated = set(catalog.query("SELECT record_id FROM curated WHERE dataset = 'notes'").column("record_id").to_pylist())
    assert len(curated) == versions[-1]["docs_total"]
    # every copy of a curated note was dropped by the night that read it, filed under that note
    filed = {r["record_id"]: (r["kind"], r["original"]) for r in catalog.query("""
        SELECT d.record_id, c.kind, s.record_id AS original FROM drops x JOIN documents d USING (run_id, doc_id)
        JOIN dedup_clusters c USING (run_id, doc_id) JOIN curated s ON s.doc_id = c.cluster_id""").to_pylist()}
    assert len(copies) == (NIGHTS - 1) * COPIES
    assert {c: filed.get(c) for c in copies} == {c: ("exact_earlier_night", o) for c, o in copies.items()}
    assert not set(copies) & curated
    # and an earlier version can still be read as it was
    first = catalog.query("SELECT count(*) AS n FROM curated_at('notes', ?)", [versions[0]["version"]]).to_pylist()
    assert first == [{"n": versions[0]["docs_total"]}]

