"""The one door to Parquet files and the DuckDB catalog.

Nothing outside this package opens a Parquet file or a DuckDB connection.  Dask workers call
:mod:`storage.shards` (write a shard atomically, read one back); only the flow process calls
:mod:`storage.catalog` to register shards and run bookkeeping, so the catalog has one writer.
"""

from refinery.storage.catalog import Catalog, CatalogError
from refinery.storage.layout import DataHome
from refinery.storage.shards import (
    StageMarker,
    fixed_size_list,
    iter_parquet_records,
    link_files,
    link_tree,
    parquet_row_groups,
    read_rows,
    read_shard,
    read_shards,
    remove_tree,
    rewrite_paths,
    sweep_partial_writes,
    swap_folder,
    to_matrix,
    write_shard,
    write_bytes_atomic,
    write_text_atomic,
)

__all__ = [
    "Catalog",
    "CatalogError",
    "DataHome",
    "StageMarker",
    "fixed_size_list",
    "iter_parquet_records",
    "link_files",
    "link_tree",
    "parquet_row_groups",
    "read_rows",
    "read_shard",
    "read_shards",
    "remove_tree",
    "rewrite_paths",
    "sweep_partial_writes",
    "swap_folder",
    "to_matrix",
    "write_shard",
    "write_bytes_atomic",
    "write_text_atomic",
]
