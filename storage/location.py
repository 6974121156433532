"""Where a data home's files live: a local folder, or a prefix of an S3-compatible bucket.

A location is a :class:`pathlib.Path` for a local home and a :class:`upath.UPath` (fsspec's
pathlib, universal-pathlib) for ``s3://bucket/prefix``: both join with ``/``, ``exists()``,
``glob()``, ``open()`` and ``read_text()``, so the code that lays out a home does not care which.
What differs is here: how Parquet and DuckDB reach the files, and how a write is made atomic (a
rename on a local disk; on object storage a PUT is atomic by itself, and a stage's marker, written
last, is what names its files as finished).

Credentials come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, and
``AWS_ENDPOINT_URL`` for MinIO, R2 or another S3-compatible server), through s3fs and botocore's own
lookup; nothing is written to the config or the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from upath import UPath

REMOTE_SCHEMES = ("s3://",)

Location = Union[Path, "UPath"]


def _fresh_listings() -> None:
    """No cached listings: the flow process lists what workers wrote after it last looked (a stage's
    shards, a dataset's index), and s3fs keeps a listing until its own process writes there."""
    import fsspec.config

    fsspec.config.conf.setdefault("s3", {}).setdefault("use_listings_cache", False)


def is_url(value: str | os.PathLike[str]) -> bool:
    return isinstance(value, str) and value.startswith(REMOTE_SCHEMES)


def location(value: str | os.PathLike[str]) -> Location:
    """``value`` as a location: a UPath for an ``s3://`` URL (or a UPath already), else a Path."""
    if not isinstance(value, (str, Path)):
        return value  # type: ignore[return-value]  (a UPath already)
    if is_url(value):
        from upath import UPath

        _fresh_listings()
        return UPath(value)
    return Path(value)


def is_remote(value: Any) -> bool:
    """Whether ``value`` is a location on object storage (a UPath that is not a local path)."""
    if isinstance(value, str):
        return is_url(value)
    return type(value).__module__.startswith("upath") and getattr(value, "protocol", "") not in ("", "file", "local")


def arrow_target(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """(filesystem, path) to hand pyarrow for ``path``: (None, the path) locally; for a bucket, the
    location's fsspec filesystem wrapped for Arrow and the key without its scheme."""
    loc = location(path) if isinstance(path, str) else path
    if not is_remote(loc):
        return None, str(path)
    import pyarrow.fs as pafs

    return pafs.PyFileSystem(pafs.FSSpecHandler(loc.fs)), loc.path


def register_filesystems(con: Any) -> None:
    """Let DuckDB connection ``con`` read ``s3://`` paths through s3fs (credentials from the
    environment), without DuckDB's httpfs extension (its registry package does not match the pinned
    DuckDB, and nothing is downloaded at run time). Always: a catalog's views may name files in a
    bucket whichever process opens it."""
    try:
        import fsspec

        _fresh_listings()
        fs = fsspec.filesystem("s3")
    except ImportError:
        return
    con.register_filesystem(fs)


# Where folders and files read from object storage are kept locally (models: torch, ONNX Runtime
# and fastText read local files); ``REFINERY_REMOTE_CACHE`` moves it.
REMOTE_CACHE_ENV = "REFINERY_REMOTE_CACHE"


def local_copy(path: str | os.PathLike[str]) -> Path:
    """``path`` as a local path: itself when it is local; for a folder or file in object storage, a
    copy downloaded once into the remote cache, keyed by its objects' names, sizes and ETags (a
    folder replaced in the bucket, like a dataset's promoted model, is fetched again)."""
    import shutil
    import tempfile

    import xxhash

    loc = location(path) if isinstance(path, (str, Path)) else path
    if not is_remote(loc):
        return Path(path)
    fs = loc.fs
    listing = fs.find(loc.path, detail=True) or {}
    if not listing and not fs.exists(loc.path):
        raise FileNotFoundError(f"{loc} does not exist")
    digest = xxhash.xxh3_128(str(loc).encode())
    for key in sorted(listing):
        info = listing[key]
        digest.update(f"\0{key}\0{info.get('size')}\0{info.get('ETag') or info.get('etag')}".encode())
    root = Path(os.environ.get(REMOTE_CACHE_ENV) or Path.home() / ".cache" / "refinery" / "remote")
    target = root / f"{digest.hexdigest()[:32]}" / loc.name
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        if list(listing) == [loc.path]:  # a file
            fs.get_file(loc.path, str(tmp / loc.name))
        else:
            fs.get(loc.path.rstrip("/") + "/", str(tmp / loc.name), recursive=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp / loc.name, target)
        except OSError:  # another process fetched it first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def staging_dir(out: str | os.PathLike[str]) -> Path:
    """A new empty local folder to build ``out`` in before :func:`refinery.storage.swap_folder` puts
    it in place: beside ``out`` on a local disk (a rename away), in the temp folder for a bucket."""
    import tempfile

    loc = location(out) if isinstance(out, (str, Path)) else out
    if is_remote(loc):
        return Path(tempfile.mkdtemp(prefix=f"refinery-{loc.name}-"))
    loc.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{loc.name}-", dir=loc.parent))
