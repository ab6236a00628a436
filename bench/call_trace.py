"""Per-call trace of the embedder, the model and the worker processes inside a traced run.

The pipeline and peer scenarios time what happens inside ``embedding-job run`` or a peer's
script: each call of a traced method (its start and end, wall clock, and its rows), written by
the process that makes the call. The library knows nothing of it; the bench adds the trace from
outside, in three steps:

1. ``hook_env`` puts ``trace_site/`` first on ``PYTHONPATH`` of the subprocess and names the
   trace file in ``TRACE_ENV``.
2. ``trace_site/sitecustomize.py`` runs at start-up in every Python process of that tree: the
   CLI itself, Daft's UDF worker processes (Daft starts them with a copy of ``os.environ``),
   the local Ray cluster's workers (the raylet, started by the driver, passes its environment
   on) and a DataLoader's workers. When ``TRACE_ENV`` is set it calls ``install``, which writes
   one ``proc`` line (the process's start) and wraps every method in ``TARGETS`` when its
   module is first imported (an import hook, so a process that never embeds never imports
   torch for it).
3. Each wrapped call appends one line: ``<unix start> <unix end> <rows> <pid> <label>``.

``TARGETS``: ``embed`` is ``Embedder.embed_started`` (the job's embedder: decode and every
model, the busy share of the issue's goals; ``embed_models`` and ``embed_bytes`` call it, and
the pipeline's UDF calls it once its turn on a shared Embedder has come),
``load`` is ``Embedder.__init__`` (the model load), and ``model`` is every Hugging Face model's
forward call (``PreTrainedModel.__call__``: one line per model batch, whoever calls it), which
is what makes the job and the peers comparable: their steady state is counted the same way,
from model batch ends.

Why this and not the alternatives: a callback in ``EmbedderSettings`` would need a way through
the job's config into a UDF built from it, which is library surface for a benchmark; Daft's
subscribers see operators, not the calls inside the UDF's process; and the peers are scripts as
their users write them. Wrapping methods at import time needs nothing from the code measured,
reaches every process that can run the model whatever the runner, and measures one line per
call in the process that runs it. Lines are appended with one ``write`` per call, so concurrent
workers do not interleave within a line.

This module imports only the standard library: ``sitecustomize`` loads it by file path, before
anything else, in processes whose ``sys.path`` may not include the repository.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

#: The trace file; each call appends "<unix start> <unix end> <rows> <pid> <label>".
TRACE_ENV = "EMBEDDING_BENCH_TRACE_FILE"
#: The directory whose sitecustomize.py installs the trace in every process of the run.
SITE_DIR = Path(__file__).resolve().parent / "trace_site"
#: What is traced, by label: (module, class, method).
TARGETS: dict[str, tuple[str, str, str]] = {
    "embed": ("embedding_job.model.embedder", "Embedder", "embed_started"),
    "load": ("embedding_job.model.embedder", "Embedder", "__init__"),
    "model": ("transformers.modeling_utils", "PreTrainedModel", "__call__"),
}
#: The label of the line each traced process writes when it starts.
PROCESS = "proc"

#: One call: (start, end, rows), seconds on a clock of the reader's choice.
Call = tuple[float, float, int]


class Record(NamedTuple):
    """One line of the trace, in seconds after the reader's origin."""

    start: float
    end: float
    rows: int
    pid: int
    label: str


def hook_env(trace: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus what makes every process started with it trace its calls."""
    path = [str(SITE_DIR), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    return {**env, "PYTHONPATH": os.pathsep.join(path), TRACE_ENV: str(trace)}


def rows_of(args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    """The rows of a call: the first argument's (a list, a Series, a tensor's first dimension,
    a batch of columns, or the ``rows`` of the embedder's ``Started``), 0 when it has none."""
    value = args[0] if args else next(iter(kwargs.values()), None)
    rows = getattr(value, "rows", None)
    if isinstance(rows, int):
        return rows
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    if isinstance(value, Mapping):
        value = next(iter(value.values()), ())
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return 0


def _append(trace: str, line: str) -> None:
    with open(trace, "a") as handle:
        handle.write(line)


#: A call under the key's label made while a call under the value's label runs on the same
#: thread is part of that call, not traced: the embedder checks each model on a blank image as
#: it loads it, which is load time, not a model batch.
PART_OF = {"model": "load"}
#: Per thread: how many calls under each label are running.
_running = threading.local()


def traced(method: Callable[..., Any], trace: str, label: str = "embed") -> Callable[..., Any]:
    """``method`` that appends its start, end and rows to ``trace`` under ``label``; a call
    made inside another call of the same label on the same thread is not traced again (in
    transformers 5 a model's encoder is itself a ``PreTrainedModel``), nor one inside a call
    of the label it is ``PART_OF``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        running: dict[str, int] = _running.__dict__.setdefault("labels", {})
        outer = not running.get(label) and not running.get(PART_OF.get(label, ""))
        running[label] = running.get(label, 0) + 1
        started = time.time()
        try:
            result = method(self, *args, **kwargs)
        finally:
            running[label] -= 1
        if outer:
            line = (
                f"{started:.6f} {time.time():.6f} {rows_of(args, kwargs)} {os.getpid()} {label}\n"
            )
            _append(trace, line)
        return result

    wrapper.__bench_traced__ = True  # type: ignore[attr-defined]
    return wrapper


def patch(module: ModuleType, trace: str) -> None:
    """Wrap, once, every target method that lives in ``module``."""
    for label, (name, class_name, method_name) in TARGETS.items():
        cls = getattr(module, class_name, None) if module.__name__ == name else None
        if cls is None:
            continue
        method = getattr(cls, method_name)
        if not getattr(method, "__bench_traced__", False):
            setattr(cls, method_name, traced(method, trace, label))


class _PatchingLoader(importlib.abc.Loader):
    """The module's own loader, then ``patch`` before anyone else sees the module."""

    def __init__(self, loader: importlib.abc.Loader, trace: str):
        self.loader = loader
        self.trace = trace

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        patch(module, self.trace)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for inspect, linecache
        return getattr(self.loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, trace: str):
        self.trace = trace
        self.modules = {module for module, _, _ in TARGETS.values()}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self.trace)
                return spec
        return None


def install(trace: str) -> None:
    """Trace this process's start and every call of ``TARGETS`` into ``trace``."""
    if any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        return
    now = time.time()
    _append(trace, f"{now:.6f} {now:.6f} 0 {os.getpid()} {PROCESS}\n")
    for module_name, _, _ in TARGETS.values():
        module = sys.modules.get(module_name)
        if module is not None:
            patch(module, trace)
    sys.meta_path.insert(0, _PatchOnImport(trace))


def read_records(trace: Path, since: float) -> list[Record]:
    """Every line of ``trace``, in seconds after ``since`` (unix time), ordered by their end."""
    records: list[Record] = []
    if trace.is_file():
        for line in trace.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 4:
                label = fields[4] if len(fields) > 4 else "embed"
                begin, end = float(fields[0]) - since, float(fields[1]) - since
                records.append(Record(begin, end, int(fields[2]), int(fields[3]), label))
    records.sort(key=lambda record: record.end)
    return records


def calls(records: Sequence[Record], label: str = "embed") -> list[Call]:
    """The (start, end, rows) of the calls under ``label``, ordered by their end."""
    return [(r.start, r.end, r.rows) for r in records if r.label == label]


def read_trace(trace: Path, since: float, label: str = "embed") -> list[Call]:
    """The calls under ``label`` in ``trace``, in seconds after ``since``, ordered by end."""
    return calls(read_records(trace, since), label)


def _window(calls: list[Call], skip: int) -> tuple[int, float, float] | None:
    skip = max(1, min(skip, len(calls) - 1))
    if len(calls) < 2 or calls[-1][1] <= calls[skip - 1][1]:
        return None
    return skip, calls[skip - 1][1], calls[-1][1]


def steady_window(calls: list[Call], skip: int = 2) -> tuple[float, float] | None:
    """The steady-state window (``trace_rate``'s and ``busy_fraction``'s): from the end of
    call ``skip`` to the end of the last call."""
    window = _window(calls, skip)
    return None if window is None else (window[1], window[2])


def trace_rate(calls: list[Call], skip: int = 2) -> float:
    """Rows per second from the end of call ``skip`` to the end of the last call.

    The first call also warms the model up, and Daft's pipeline may still be filling before the
    second. Measured on a CPU: 5-10 ms between calls; before commit 1133827 also one 0.5-0.7 s
    wait before the second call, and 30-40 ms between calls while Daft moved the images' bytes.
    """
    window = _window(calls, skip)
    if window is None:
        return math.nan
    skip, begin, end = window
    return sum(rows for _, _, rows in calls[skip:]) / (end - begin)


def busy_fraction(calls: list[Call], skip: int = 2) -> float:
    """Share of the steady-state window spent inside calls (their union: several workers'
    overlapping calls count once)."""
    window = _window(calls, skip)
    if window is None:
        return math.nan
    skip, begin, end = window
    busy, reached = 0.0, begin
    for start, stop, _ in sorted(calls[skip:]):
        start = max(start, reached)
        if stop > start:
            busy += stop - start
            reached = stop
    return busy / (end - begin)
