"""Per-call trace of ``Embedder.embed_models`` (which ``embed_bytes`` calls too) in whichever
process runs the embedder.

The pipeline scenarios time the embedder inside ``embedding-job run``: each call's start and end
(wall clock) and its rows, written by the process that runs the call. The library knows nothing
of it; the bench adds the trace from outside, in three steps:

1. ``hook_env`` puts ``trace_site/`` first on ``PYTHONPATH`` of the CLI subprocess and names the
   trace file in ``TRACE_ENV``.
2. ``trace_site/sitecustomize.py`` runs at start-up in every Python process of that tree: the
   CLI itself, Daft's UDF worker processes (Daft starts them with a copy of ``os.environ``) and,
   for ``--runner ray``, the local Ray cluster's workers (the raylet, started by the CLI,
   passes its environment on). When ``TRACE_ENV`` is set it calls ``install``.
3. ``install`` wraps ``Embedder.embed_models`` when ``embedding_job.model.embedder`` is first
   imported (an import hook, so a process that never embeds never imports torch for it).

Why this and not the alternatives: a callback in ``EmbedderSettings`` would need a way through
the job's config into a UDF built from it, which is library surface for a benchmark; Daft's
subscribers see operators, not the calls inside the UDF's process. Wrapping the method at import
time needs nothing from the library, reaches every process that can run the embedder whatever
the runner, and measures what the library's own hook measured: one line per call, from the
call's start to its end, in the UDF's process. Lines are appended with one ``write`` per call,
so concurrent workers do not interleave within a line.

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
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

#: The trace file; each call appends "<unix start> <unix end> <rows> <pid>".
TRACE_ENV = "EMBEDDING_BENCH_TRACE_FILE"
#: The directory whose sitecustomize.py installs the trace in every process of the run.
SITE_DIR = Path(__file__).resolve().parent / "trace_site"
TARGET_MODULE = "embedding_job.model.embedder"

#: One embedder call: (start, end, rows), seconds on a clock of the reader's choice.
Call = tuple[float, float, int]


def hook_env(trace: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus what makes every process started with it trace its embedder calls."""
    path = [str(SITE_DIR), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    return {**env, "PYTHONPATH": os.pathsep.join(path), TRACE_ENV: str(trace)}


def traced(method: Callable[..., Any], trace: str) -> Callable[..., Any]:
    """An embedder method (``Embedder.embed_models``) that appends its start, end and rows to
    ``trace``."""

    @functools.wraps(method)
    def call(self: Any, items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        result = method(self, items, *args, **kwargs)
        line = f"{started:.6f} {time.time():.6f} {len(items)} {os.getpid()}\n"
        with open(trace, "a") as handle:
            handle.write(line)
        return result

    call.__bench_traced__ = True  # type: ignore[attr-defined]
    return call


def patch(module: ModuleType, trace: str) -> None:
    """Wrap ``module.Embedder.embed_models`` once: every embedding call goes through it (the
    pipeline's UDF calls it, ``embed_bytes`` too)."""
    embedder = module.Embedder
    if not getattr(embedder.embed_models, "__bench_traced__", False):
        embedder.embed_models = traced(embedder.embed_models, trace)


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

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET_MODULE:
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
    """Trace every ``Embedder.embed_models`` call of this process into ``trace``."""
    module = sys.modules.get(TARGET_MODULE)
    if module is not None:
        patch(module, trace)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(trace))


def read_trace(trace: Path, since: float) -> list[Call]:
    """The calls in ``trace``, in seconds after ``since`` (unix time), ordered by their end."""
    calls: list[Call] = []
    if trace.is_file():
        for line in trace.read_text().splitlines():
            if line.strip():
                begin, end, rows = line.split()[:3]
                calls.append((float(begin) - since, float(end) - since, int(rows)))
    calls.sort(key=lambda call: call[1])
    return calls


def trace_rate(calls: list[Call], skip: int = 2) -> float:
    """Rows per second from the end of embedder call ``skip`` to the end of the last call.

    The first call also warms the model up, and Daft's pipeline may still be filling before the
    second. Measured on a CPU: 5-10 ms between calls; before commit 1133827 also one 0.5-0.7 s
    wait before the second call, and 30-40 ms between calls while Daft moved the images' bytes.
    """
    skip = max(1, min(skip, len(calls) - 1))
    if len(calls) < 2 or calls[-1][1] <= calls[skip - 1][1]:
        return math.nan
    return sum(rows for _, _, rows in calls[skip:]) / (calls[-1][1] - calls[skip - 1][1])


def busy_fraction(calls: list[Call], skip: int = 2) -> float:
    """Share of the steady-state window the embedder spent inside its calls (not waiting)."""
    skip = max(1, min(skip, len(calls) - 1))
    if len(calls) < 2 or calls[-1][1] <= calls[skip - 1][1]:
        return math.nan
    busy = sum(end - begin for begin, end, _ in calls[skip:])
    return busy / (calls[-1][1] - calls[skip - 1][1])
