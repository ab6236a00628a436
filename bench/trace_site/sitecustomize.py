"""Start-up hook of the bench's traced runs (see bench/call_trace.py): with
EMBEDDING_BENCH_TRACE_FILE set, trace this process (its start, its embedder and model calls).

This directory is put first on PYTHONPATH only for the bench's traced subprocesses
(``embedding-job run`` and the peers' scripts). A sitecustomize that was on the path already
still runs, after this one.
"""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name: str, path: str) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _run_the_shadowed_sitecustomize() -> None:
    for entry in sys.path:
        directory = os.path.abspath(entry or os.curdir)
        candidate = os.path.join(directory, "sitecustomize.py")
        if directory != _HERE and os.path.isfile(candidate):
            _load("_shadowed_sitecustomize", candidate)
            return


_trace = os.environ.get("EMBEDDING_BENCH_TRACE_FILE")
if _trace:
    _load("_bench_call_trace", os.path.join(os.path.dirname(_HERE), "call_trace.py"))
    sys.modules["_bench_call_trace"].install(_trace)
_run_the_shadowed_sitecustomize()
