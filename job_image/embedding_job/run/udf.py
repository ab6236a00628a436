"""Daft class UDFs that run the Embedder inside Daft workers (threads, processes or Ray actors)."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from typing import Any

import daft
import numpy as np
import pyarrow as pa
from daft import DataType, Series
from daft.udf.metrics import increment_counter

from embedding_job.api import SrcType
from embedding_job.imaging.datapath import ImageData
from embedding_job.io.cells import DeadHosts, LocalFile, fetch_error, local_file, resolve_inline
from embedding_job.model.embedder import Embedder, EmbedderSettings
from embedding_job.run.metrics import Call, worker_metrics
from embedding_job.run.row_counts import (
    FAILED_STAT,
    PRECISION_STAT,
    precision,
    settle,
    worker_counter,
)

#: What the embedding UDF returns per row: a vector, or null and the reason.
RESULT_DTYPE = DataType.struct(
    {"embedding": DataType.list(DataType.float32()), "error": DataType.string()}
)
_ARROW_RESULT = pa.struct([("embedding", pa.list_(pa.float32())), ("error", pa.string())])


def result_array(vectors: list[np.ndarray | None], errors: list[str | None]) -> pa.Array:
    """Arrow struct array of (embedding, error) rows, built from the vectors' buffers (no
    Python float per element)."""
    lengths = np.array([0 if v is None else len(v) for v in vectors], dtype=np.int32)
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in vectors if v is not None]
    values = np.concatenate(present).astype(np.float32, copy=False) if present else np.empty(0)
    embedding = pa.ListArray.from_arrays(
        pa.array(offsets),
        pa.array(values, type=pa.float32()),
        type=pa.list_(pa.float32()),
        mask=pa.array(np.array([v is None for v in vectors], dtype=bool)),
    )
    error = pa.array(errors, type=pa.string())
    return pa.StructArray.from_arrays([embedding, error], fields=list(_ARROW_RESULT))


def exit_fast_after_daft_worker() -> None:
    """In Daft's UDF worker process, skip the interpreter's teardown when the worker ends.

    Unloading torch and transformers takes several seconds (8 s measured here on a busy 2-core
    machine), longer than the 5 s Daft waits before it logs "Error tearing down UDF actor" and
    kills the process, on every clean run. By then the worker has sent all its output and
    closed its connection; its shared memory is released by the parent.
    """
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) != _DAFT_UDF_WORKER:
        return

    def leave() -> None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)


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
        metric_labels: dict[str, str] | None = None,
    ):
        exit_fast_after_daft_worker()
        self.embedder = Embedder(settings)
        self.precision = precision(
            self.embedder.device.type, str(self.embedder.dtype).removeprefix("torch.")
        )
        self.src_type = src_type
        self.io_config = io_config
        self.dead_hosts = DeadHosts()
        self.counter = worker_counter(progress_actor)
        self.counted = False
        self.metrics = worker_metrics(metric_labels)
        # The first Arrow conversion imports pandas (~0.6 s): pay it here, not after batch 1.
        result_array([None], ["warm-up"])

    @daft.method.batch(return_dtype=RESULT_DTYPE)
    def embed(self, source: Series, data: Series, raw_path: Series | None = None) -> pa.Array:
        started, model_before = time.perf_counter(), self.embedder.model_seconds
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
        failed = sum(e is not None for e in row_errors)
        self._count(len(row_errors), failed)
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            model = self.embedder.model_seconds - model_before
            self.metrics.record(Call(len(row_errors), failed, seconds, model))
        return result_array(vectors, row_errors)

    def _count(self, rows: int, failed: int) -> None:
        """Progress for the driver: the Ray actor, or else Daft's UDF counters (row_counts)."""
        if self.counter is not None:
            sent = self.counter.add.remote(rows, failed, self.precision)
            if not self.counted:
                # Once: the driver reads the precision when the query ends, so it must be there.
                settle(sent)
                self.counted = True
            return
        increment_counter(FAILED_STAT, failed)
        increment_counter(PRECISION_STAT + self.precision, rows)
