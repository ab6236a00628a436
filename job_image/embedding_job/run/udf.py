"""Daft class UDFs that run the Embedder inside Daft workers (threads, processes or Ray actors)."""

from __future__ import annotations

import atexit
import os
from typing import Any

import daft
import numpy as np
import pyarrow as pa
from daft import DataType, Series

from embedding_job.api import SrcType
from embedding_job.imaging.datapath import ImageData
from embedding_job.io.cells import DeadHosts, LocalFile, fetch_error, local_file, resolve_inline
from embedding_job.logs import exit_without_teardown, main_module_name
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.run.row_counts import worker_counter

#: What the embedding UDF returns per row: a vector, or null and the reason.
RESULT_DTYPE = DataType.struct(
    {"embedding": DataType.list(DataType.float32()), "error": DataType.string()}
)
_ARROW_RESULT = pa.struct([("embedding", pa.list_(pa.float32())), ("error", pa.string())])


def _validity(valid: np.ndarray) -> pa.Buffer:
    """Arrow's validity bitmap (least significant bit first) of a boolean array."""
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _numbers(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A numeric array without nulls on ``values``' memory (``values`` of ``arrow_type``)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def _strings(values: list[str | None]) -> pa.Array:
    """A string array; ``None`` is null."""
    data = [value.encode() if value is not None else b"" for value in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(item) for item in data], out=offsets[1:])
    present = np.array([value is not None for value in values], dtype=bool)
    buffers = [_validity(present), pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def result_array(vectors: list[np.ndarray | None], errors: list[str | None]) -> pa.Array:
    """Arrow struct array of (embedding, error) rows, built from their buffers: no Python float
    per element, and no pandas (``pa.array`` imports pandas to ask whether its argument is a
    pandas object: 0.3-0.6 s, measured here, before the worker's first result)."""
    missing = np.array([v is None for v in vectors], dtype=bool)
    lengths = np.array([0 if v is None else len(v) for v in vectors], dtype=np.int32)
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in vectors if v is not None]
    values = np.concatenate(present) if present else np.empty(0)
    embedding = pa.ListArray.from_arrays(
        _numbers(offsets, pa.int32()),
        _numbers(values.astype(np.float32, copy=False), pa.float32()),
        type=pa.list_(pa.float32()),
        mask=pa.Array.from_buffers(pa.bool_(), len(missing), [None, _validity(missing)]),
    )
    error = _strings(errors)
    return pa.StructArray.from_arrays([embedding, error], fields=list(_ARROW_RESULT))


def exit_fast_after_daft_worker() -> None:
    """In Daft's UDF worker process, skip the interpreter's teardown when the worker ends.

    Unloading torch and transformers takes several seconds (8 s measured here on a busy 2-core
    machine), longer than the 5 s Daft waits before it logs "Error tearing down UDF actor" and
    kills the process, on every clean run. By then the worker has sent all its output and
    closed its connection; its shared memory is released by the parent.
    """
    if main_module_name() == _DAFT_UDF_WORKER:
        atexit.register(exit_without_teardown, 0)


_DAFT_UDF_WORKER = "daft.execution.udf_worker"


@daft.cls(name_override="EmbedImages")
class EmbedImages:
    """Embeds one column of images; every input row yields one output row.

    For ``image_url`` sources the caller passes the batched download result as ``data`` and the
    URL as ``source``. Local files are not downloaded (``data`` is null): the embedder reads
    them on its decode threads. Rows whose download came back empty are retried once, alone, to
    capture why they failed. For inline sources ``data`` is the cell itself (base64 text or
    bytes).
    """

    def __init__(
        self,
        settings: EmbedderSettings,
        src_type: SrcType,
        io_config: Any = None,
        progress_actor: str | None = None,
    ):
        exit_fast_after_daft_worker()
        self.embedder = Embedder(settings)
        self.src_type = src_type
        self.io_config = io_config
        self.dead_hosts = DeadHosts()
        self.counter = worker_counter(progress_actor)

    @daft.method.batch(return_dtype=RESULT_DTYPE)
    def embed(self, source: Series, data: Series, raw_path: Series | None = None) -> pa.Array:
        sources = source.to_pylist()
        cells = data.to_pylist()
        # A local listing's exact file names (bytes), where ``source`` only displays them.
        raws = raw_path.to_pylist() if raw_path is not None else [None] * len(sources)
        items: list[ImageData | None] = []
        errors: list[str | None] = []
        for src, cell, raw in zip(sources, cells, raws, strict=True):
            if self.src_type is SrcType.IMAGE_URL:
                item = cell or (LocalFile(os.fsdecode(raw)) if raw else local_file(src))
                items.append(item)
                errors.append(None if item else fetch_error(src, self.io_config, self.dead_hosts))
                continue
            try:
                items.append(resolve_inline(cell, self.src_type))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - RowError or anything else: this row only
                items.append(None)
                errors.append(str(exc))
        vectors, row_errors = self.embedder.embed_bytes(items, errors)
        if self.counter is not None:
            failed = sum(e is not None for e in row_errors)
            self.counter.add.remote(len(row_errors), failed)
        return result_array(vectors, row_errors)
