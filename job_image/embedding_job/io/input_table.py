"""The job's input as a Daft DataFrame: a table (Parquet, CSV, JSON, Lance) or image files (a
directory, a glob, a single URL), with the columns the job needs checked before any data is
read."""

from __future__ import annotations

import os

import daft
import pyarrow as pa
from daft import DataType, col

from embedding_job.api import ConfigError, EmbeddingJobConfig, InputFormat, SrcType
from embedding_job.errors import InputNotFoundError, JobError
from embedding_job.io import storage

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Columns of a local listing (_list_local) that never reach the output: the exact bytes of
#: the name, and why an entry cannot be an image.
RAW_PATH = "__raw_path"
LISTING_ERROR = "__listing_error"
_GLOB_CHARS = set("*?[")
_HTTP_PREFIXES = ("http://", "https://")


def read_input(cfg: EmbeddingJobConfig, io: daft.io.IOConfig) -> daft.DataFrame:
    """The input as a DataFrame, with the columns the job needs checked up front."""
    spec = cfg.input
    fmt = spec.resolved_format
    try:
        if fmt is InputFormat.IMAGES_GLOB:
            return _read_images(spec.uri, io)
        if fmt is InputFormat.PARQUET:
            df = daft.read_parquet(spec.uri, io_config=io)
        elif fmt is InputFormat.CSV:
            df = daft.read_csv(spec.uri, io_config=io)
        elif fmt is InputFormat.JSON:
            df = daft.read_json(spec.uri, io_config=io)
        else:
            df = _read_lance(spec.uri, io)
        _check_columns(cfg, df.schema())
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"input {spec.uri!r} not found: {exc}") from None
    return df


def _read_images(uri: str, io: daft.io.IOConfig) -> daft.DataFrame:
    if uri.lower().startswith(_HTTP_PREFIXES):
        # A web server cannot be listed: the URL is one image (``?`` starts its query, not a
        # wildcard). If it does not download, that is this one row's error.
        return daft.from_pydict({"path": [uri]})
    explicit_glob = bool(_GLOB_CHARS & set(uri))
    if (
        not explicit_glob
        and not storage.is_remote(uri)
        and os.path.isdir(uri.removeprefix("file://"))
    ):
        return _list_local(uri)
    pattern = uri if explicit_glob else uri.rstrip("/") + "/**"
    if not explicit_glob and storage.is_file(uri):
        pattern = uri
    # Daft's glob of a missing location only warns (and can stall), so look first.
    if not explicit_glob and not storage.exists(uri):
        raise InputNotFoundError(f"input {uri!r} not found")
    if not storage.has_files(uri, IMAGE_EXTENSIONS if not explicit_glob else None):
        raise InputNotFoundError(f"input {uri!r}: no image files found")
    try:
        df = daft.from_glob_path(pattern, io_config=io)
    except FileNotFoundError:
        raise InputNotFoundError(f"input {uri!r}: no files found ({pattern})") from None
    if not explicit_glob:
        # A directory may hold READMEs or manifests next to its images: take images only.
        lowered = col("path").lower()
        keep = lowered.endswith(IMAGE_EXTENSIONS[0])
        for ext in IMAGE_EXTENSIONS[1:]:
            keep = keep | lowered.endswith(ext)
        df = df.where(keep)
    return df.select(col("path"))


def _list_local(uri: str) -> daft.DataFrame:
    """A local directory, listed by the job itself: every entry is one row, an entry that
    cannot be an image (a symlink loop, a directory it may not read) a row with its error,
    and names that are not UTF-8 are read by their exact bytes (``RAW_PATH``)."""
    listed = storage.walk_local(uri, IMAGE_EXTENSIONS)
    if not listed:
        raise InputNotFoundError(f"input {uri!r}: no image files found")
    table = pa.table(
        {
            # file:// URLs, as Daft's glob names local files (and as earlier outputs hold them,
            # which resume matches by path).
            "path": pa.array([f"file://{f.path}" for f in listed], pa.string()),
            RAW_PATH: pa.array([f.raw for f in listed], pa.binary()),
            LISTING_ERROR: pa.array([f.problem for f in listed], pa.string()),
        }
    )
    return daft.from_arrow(table)


def _read_lance(uri: str, io: daft.io.IOConfig) -> daft.DataFrame:
    try:
        import daft_lance
    except ImportError:
        raise JobError(
            "input.format lance needs the lance extra: pip install 'embedding-job[lance]'"
        ) from None
    df: daft.DataFrame = daft_lance.read_lance(uri, io_config=io)
    return df


def _is_string(dtype: DataType) -> bool:
    return bool(dtype.is_string())


def _is_binary(dtype: DataType) -> bool:
    return bool(dtype.is_binary())


_SRC_DTYPES = {
    SrcType.IMAGE_URL: ("a String", _is_string),
    SrcType.IMAGE_BASE64: ("a String", _is_string),
    SrcType.IMAGE_BINARY: ("a Binary", _is_binary),
}


def _check_columns(cfg: EmbeddingJobConfig, schema: daft.Schema) -> None:
    names = schema.column_names()
    wanted = {"input.imageColumn": cfg.input.image_column}
    if cfg.input.id_column:
        wanted["input.idColumn"] = cfg.input.id_column
    for name in cfg.input.columns:
        wanted[f"input.columns[{name}]"] = name
    problems = [
        f"{field}: column {column!r} is not in the input (it has: {', '.join(names)})"
        for field, column in wanted.items()
        if column not in names
    ]
    if not problems:
        kind, accepts = _SRC_DTYPES[cfg.input.src_type]
        dtype = schema[cfg.input.image_column].dtype
        if not accepts(dtype):
            problems.append(
                f"input.srcType: {cfg.input.src_type.value} needs {kind} column, but "
                f"{cfg.input.image_column!r} is {dtype}"
            )
    if problems:
        raise ConfigError(problems)
