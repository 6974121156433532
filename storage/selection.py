"""A weighted, capped sample of documents drawn in SQL (the method: :mod:`tasks.selection`).

A private in-memory DuckDB reads the doc ids (and the fields a selection names) of the corpus
shards and the named attributes of the attribute shards, pivoted to one column each, then draws:
each document's key is ``weight / temperature + g`` with ``g = -ln(-ln(u))``, ``u`` the lower 64
bits of ``md5(seed || '\\x1f' || doc_id)`` scaled into (0, 1); documents past their group's ``cap``
(in key order) are skipped; the ``n`` largest keys are chosen. What the draw holds is one row of a
few columns per document, spilled to disk past :data:`SELECTION_MEMORY_LIMIT`: never a text.

The weight is SQL a person wrote in the config, evaluated after the files are read and with the
connection's file access then switched off and its configuration locked, so it can compute but not
read or write anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from refinery.storage.datasets import sql_literal
from refinery.storage.location import register_filesystems
from refinery.tasks.exceptions import ConfigError
from refinery.tasks.selection import DOCUMENT_FIELDS, REPORTED_GROUPS, SelectionConfig

SELECTION_MEMORY_LIMIT = "1GB"
# The group of a document whose cap_by value is NULL (a source without labels).
NO_GROUP = "(none)"
CHOSEN_SCHEMA = pa.schema([("doc_id", pa.string()), ("file", pa.string()), ("tag", pa.string()),
                           ("rank", pa.int64()), ("weight", pa.float64()), ("key", pa.float64()),
                           ("grp", pa.string())])


def draw_selection(documents: Sequence[tuple[str, str]], attributes: Sequence[str], n: int, cfg: SelectionConfig,
                   *, exclude: Sequence[str] = (), retired: pa.Table | None = None,
                   what: str = "selection") -> dict[str, Any]:
    """Draw ``n`` documents of ``documents`` ((shard path, tag) pairs; the tag is carried to the
    answer, e.g. the night that added the shard) by ``cfg``, leaving out the doc ids in ``exclude``
    and the (doc_id, tag) rows of ``retired``; ``attributes``: the attribute shards (doc_id, name,
    value) the weight and group are read from. ``what`` names the config section in errors.

    The answer: ``chosen`` (an Arrow table of :data:`CHOSEN_SCHEMA`, in rank order), ``candidates``,
    ``unscored`` (candidates whose weight is NULL), ``groups`` (``[{group, before, after}]``, the
    largest groups, with ``cap_by``), ``groups_total`` and ``groups_capped`` (groups the cap cut).
    """
    if not documents:
        return {"chosen": CHOSEN_SCHEMA.empty_table(), "candidates": 0, "unscored": 0, "groups": [],
                "groups_total": 0, "groups_capped": 0}
    with tempfile.TemporaryDirectory(prefix="refinery-selection-") as spill:
        con = duckdb.connect(config={"memory_limit": SELECTION_MEMORY_LIMIT, "temp_directory": spill,
                                     "autoinstall_known_extensions": False, "autoload_known_extensions": False})
        try:
            register_filesystems(con)
            _load_candidates(con, documents, attributes, cfg, exclude, retired, what)
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            return _draw(con, n, cfg, what)
        finally:
            con.close()


def _load_candidates(con: duckdb.DuckDBPyConnection, documents: Sequence[tuple[str, str]], attributes: Sequence[str],
                     cfg: SelectionConfig, exclude: Sequence[str], retired: pa.Table | None, what: str) -> None:
    """Table ``candidates``: doc_id, file, tag, the document fields, and each named attribute as a column."""
    con.register("_files", pa.table({"file": [p for p, _ in documents], "tag": [t for _, t in documents]}))
    con.register("_exclude", pa.table({"doc_id": pa.array(list(exclude), pa.string())}))
    con.register("_retired", retired if retired is not None else
                 pa.table({"doc_id": pa.array([], pa.string()), "added_in": pa.array([], pa.string())}))
    listed = "[" + ", ".join(sql_literal(p) for p, _ in documents) + "]"
    present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({listed}, union_by_name = true)").fetchall()}
    fields = ", ".join(f"{'d.' + f if f in present else 'NULL'} AS {f}" for f in DOCUMENT_FIELDS)
    con.execute(f"""
        CREATE TEMP TABLE docs AS
        SELECT d.doc_id, f.file, f.tag, {fields}
        FROM read_parquet({listed}, filename = true, union_by_name = true) d JOIN _files f ON f.file = d.filename
        WHERE NOT EXISTS (SELECT 1 FROM _exclude x WHERE x.doc_id = d.doc_id)
          AND NOT EXISTS (SELECT 1 FROM _retired r WHERE r.doc_id = d.doc_id AND r.added_in = f.tag)""")
    names = cfg.attribute_names()
    if not names:
        con.execute("CREATE TEMP TABLE candidates AS SELECT * FROM docs")
        return
    if not attributes:
        raise ConfigError(f"{what}: no attribute shards to read {', '.join(names)} from (the corpus was not scored)")
    shards = "[" + ", ".join(map(sql_literal, attributes)) + "]"
    wanted = ", ".join(map(sql_literal, names))
    con.execute(f"""CREATE TEMP TABLE attrs_long AS SELECT CAST(doc_id AS VARCHAR) AS doc_id, name, value
                    FROM read_parquet({shards}, union_by_name = true) WHERE name IN ({wanted})""")
    found = {r[0] for r in con.execute("SELECT DISTINCT name FROM attrs_long").fetchall()}
    if missing := [n for n in names if n not in found]:
        known = [r[0] for r in con.execute(f"SELECT DISTINCT name FROM read_parquet({shards}, union_by_name = true) "
                                           "ORDER BY name").fetchall()]
        raise ConfigError(f"{what}: no attribute {', '.join(map(repr, missing))} in this corpus's scores; "
                          f"its attributes: {', '.join(known) or 'none'}; or a document field: {', '.join(DOCUMENT_FIELDS)}")
    pivot = ", ".join(f'max(value) FILTER (WHERE name = {sql_literal(n)}) AS "{n.replace(chr(34), chr(34) * 2)}"'
                      for n in names)
    con.execute(f"CREATE TEMP TABLE attrs AS SELECT doc_id, {pivot} FROM attrs_long GROUP BY doc_id")
    con.execute("CREATE TEMP TABLE candidates AS SELECT * FROM docs LEFT JOIN attrs USING (doc_id)")


def _draw(con: duckdb.DuckDBPyConnection, n: int, cfg: SelectionConfig, what: str) -> dict[str, Any]:
    if cfg.cap_by is None:
        group_text = "NULL"
    elif cfg.cap_by in DOCUMENT_FIELDS:
        group_text = f"CAST({cfg.cap_by} AS VARCHAR)"
    else:  # an attribute is a number: a cluster index 3.0 reads as "3"
        quoted = '"' + cfg.cap_by.replace('"', '""') + '"'
        group_text = (f"CASE WHEN {quoted} = floor({quoted}) THEN CAST(CAST({quoted} AS BIGINT) AS VARCHAR) "
                      f"ELSE CAST({quoted} AS VARCHAR) END")
    order = "weight IS NULL, key DESC, doc_id"
    try:
        con.execute(f"""
            CREATE TEMP TABLE keyed AS
            SELECT doc_id, file, tag, weight, grp,
                   weight / {float(cfg.temperature)!r} + gumbel AS key, gumbel
            FROM (SELECT doc_id, file, tag, {cfg.weight_sql()} AS weight,
                         coalesce({group_text}, {sql_literal(NO_GROUP)}) AS grp,
                         -ln(-ln((CAST(md5_number_lower({sql_literal(str(cfg.seed))} || chr(31) || doc_id) AS DOUBLE)
                                  + 0.5) / 18446744073709551616.0)) AS gumbel
                  FROM candidates)""")
    except duckdb.Error as exc:
        raise ConfigError(f"{what}.weight {cfg.weight!r} is not a SQL expression over the attributes and fields: "
                          f"{str(exc).strip().splitlines()[0]}") from exc
    cap = "" if cfg.cap is None else f"WHERE in_group <= {int(cfg.cap)}"
    con.execute(f"""
        CREATE TEMP TABLE chosen AS
        SELECT * FROM (
            SELECT doc_id, file, tag, CAST(row_number() OVER (ORDER BY {order}) AS BIGINT) AS rank, weight, key, grp
            FROM (SELECT *, row_number() OVER (PARTITION BY grp ORDER BY {order}) AS in_group FROM keyed) {cap})
        WHERE rank <= {int(n)}""")
    chosen = con.sql("SELECT doc_id, file, tag, rank, weight, key, grp FROM chosen ORDER BY rank").to_arrow_table()
    candidates, unscored = con.execute("SELECT count(*), count(*) FILTER (WHERE weight IS NULL) FROM keyed").fetchall()[0]
    groups, total, capped = [], 0, 0
    if cfg.cap_by is not None:
        counts = """SELECT k.grp AS "group", count(*) AS before, count(c.doc_id) AS after
                    FROM keyed k LEFT JOIN chosen c USING (doc_id) GROUP BY k.grp"""
        groups = con.sql(f"{counts} ORDER BY before DESC, \"group\" LIMIT {REPORTED_GROUPS}").to_arrow_table().to_pylist()
        total, capped = con.execute(f"SELECT count(*), count(*) FILTER (WHERE before > {int(cfg.cap)}) "
                                    f"FROM ({counts})").fetchall()[0]
    return {"chosen": chosen.cast(CHOSEN_SCHEMA), "candidates": int(candidates), "unscored": int(unscored),
            "groups": groups, "groups_total": int(total), "groups_capped": int(capped)}
