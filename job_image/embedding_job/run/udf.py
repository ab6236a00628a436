"""Daft class UDFs that run the Embedder inside Daft workers (threads, processes or Ray actors)."""

from __future__ import annotations

import atexit
import time
from collections.abc import Sequence

import daft
import numpy as np
import pyarrow as pa
from daft import DataType, Series
from daft.udf.metrics import increment_counter

from embedding_job.api import SrcType
from embedding_job.io.cells import image_items
from embedding_job.io.fetch import FetchSettings
from embedding_job.logs import exit_without_teardown, main_module_name
from embedding_job.model.embedder import EmbedderSettings
from embedding_job.run.metrics import Call, JobLabels, worker_metrics
from embedding_job.run.row_counts import (
    FAILED_STAT,
    PRECISION_STAT,
    precision,
    settle,
    worker_counter,
)
from embedding_job.run.shared_worker import shared_worker


def result_field(number: int) -> str:
    """The result struct's field of model ``number`` (``embedding`` for the first)."""
    return "embedding" if number == 0 else f"embedding_{number}"


def result_dtype(models: int = 1) -> DataType:
    """What the embedding UDF returns per row: a vector per model, or nulls and the reason."""
    fields = {result_field(n): DataType.list(DataType.float32()) for n in range(models)}
    return DataType.struct({**fields, "error": DataType.string()})


def result_array(
    vectors: list[np.ndarray | None], errors: list[str | None], *more: list[np.ndarray | None]
) -> pa.Array:
    """Arrow struct array of (embedding, [embedding_1...], error) rows, ``more`` being further
    models' vectors; built from their buffers: no Python float per element, and no pandas
    (``pa.array`` imports pandas to ask whether its argument is a pandas object: 0.3-0.6 s,
    measured here, before the worker's first result)."""
    columns = [_vector_array(v) for v in (vectors, *more)]
    names = [result_field(n) for n in range(len(columns))]
    return pa.StructArray.from_arrays([*columns, _strings(errors)], names=[*names, "error"])


def _vector_array(vectors: list[np.ndarray | None]) -> pa.Array:
    missing = np.array([v is None for v in vectors], dtype=bool)
    lengths = np.array([0 if v is None else len(v) for v in vectors], dtype=np.int32)
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in vectors if v is not None]
    values = np.concatenate(present) if present else np.empty(0)
    return pa.ListArray.from_arrays(
        _numbers(offsets, pa.int32()),
        _numbers(values.astype(np.float32, copy=False), pa.float32()),
        type=pa.list_(pa.float32()),
        mask=pa.Array.from_buffers(pa.bool_(), len(missing), [None, _validity(missing)]),
    )


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
    """Embeds one column of images with one or more models; every input row yields one output
    row (one vector per model, each image decoded once).

    ``source`` is the image column as the input has it (URL or path, base64 text, bytes). The
    worker reads every image itself, on its data path's threads, under ``reads``' bounds: local
    files, remote URLs and base64 text. ``raw_path`` carries a local listing's exact file names.
    The instances of one ``run`` in a process share its Embedder and Fetcher (shared_worker).
    """

    def __init__(
        self,
        run: str,
        settings: EmbedderSettings | Sequence[EmbedderSettings],
        src_type: SrcType,
        reads: FetchSettings,
        progress_actor: str | None = None,
        metric_labels: JobLabels | None = None,
    ):
        exit_fast_after_daft_worker()
        self.shared = shared_worker(run, settings, reads)
        self.embedder = self.shared.embedder
        device = self.embedder.device.type
        self.precisions = [
            precision(number, device, str(model.dtype).removeprefix("torch."))
            for number, model in enumerate(self.embedder.models)
        ]
        self.src_type = src_type
        self.counter = worker_counter(progress_actor)
        self.counted = False
        self.metrics = worker_metrics(metric_labels)

    # The pipeline sets the return type for its number of models (result_dtype).
    @daft.method.batch(return_dtype=result_dtype())
    def embed(self, source: Series, raw_path: Series | None = None) -> pa.Array:
        started = time.perf_counter()
        raws = raw_path.to_pylist() if raw_path is not None else None
        fetcher = self.shared.fetcher
        items, errors = image_items(source.to_pylist(), self.src_type, fetcher, raws)
        # Its first images are read and decoded while another thread's call has the turn.
        rows = self.embedder.start(items, errors)
        with self.shared.turn:
            model_before = self.embedder.model_seconds
            vectors, row_errors = self.embedder.embed_started(rows)
            model = self.embedder.model_seconds
        failed = sum(e is not None for e in row_errors)
        self._count(len(row_errors), failed)
        if self.metrics is not None:
            seconds = time.perf_counter() - started
            spent = tuple(after - before for after, before in zip(model, model_before, strict=True))
            self.metrics.record(Call(len(row_errors), failed, seconds, spent))
        return result_array(vectors[0], row_errors, *vectors[1:])

    def _count(self, rows: int, failed: int) -> None:
        """Progress for the driver, each row once: the Ray actor, or else Daft's UDF counters
        (row_counts); and the rows each model computed at its precision."""
        if self.counter is not None:
            sent = self.counter.add.remote(rows, failed, self.precisions)
            if not self.counted:
                # Once: the driver reads the precision when the query ends, so it must be there.
                settle(sent)
                self.counted = True
            return
        increment_counter(FAILED_STAT, failed)
        for key in self.precisions:
            increment_counter(PRECISION_STAT + key, rows)
