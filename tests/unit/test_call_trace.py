"""The call trace the bench adds to the job's and the peers' processes from outside the code
measured (bench/call_trace.py, trace_site/sitecustomize.py), and what a traced run's start-up is
read from (bench/traced_run.py, bench/tree_memory.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from bench import call_trace
from bench.traced_run import TracedRun, startup_figures, steady_cores, steady_figures
from bench.tree_memory import TreeMemory, cpu_at, cpu_by
from tests.support.models import DINOV2


def test_trace_rate_counts_from_the_end_of_the_first_batch() -> None:
    calls = [(8.0, 10.0, 32), (10.5, 12.0, 32), (12.0, 14.0, 16)]
    assert call_trace.trace_rate(calls, skip=1) == pytest.approx(12.0)
    assert call_trace.busy_fraction(calls, skip=1) == pytest.approx(3.5 / 4)
    assert call_trace.trace_rate(calls) == pytest.approx(8.0)  # from the end of the 2nd call
    assert call_trace.busy_fraction(calls) == pytest.approx(1.0)
    assert math.isnan(call_trace.trace_rate(calls[:1]))
    assert math.isnan(call_trace.busy_fraction([]))


def test_overlapping_calls_of_several_workers_count_once_in_the_busy_share() -> None:
    # Two workers: calls 2 and 3 overlap by 1 s; the window runs from 4 to 10.
    calls = [(0.0, 4.0, 8), (5.0, 8.0, 8), (7.0, 9.0, 8), (9.5, 10.0, 8)]
    assert call_trace.busy_fraction(calls, skip=1) == pytest.approx((4.0 + 0.5) / 6.0)
    assert call_trace.trace_rate(calls, skip=1) == pytest.approx(24 / 6.0)


def test_the_trace_is_read_by_label_relative_to_the_start_and_ordered_by_end(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace"
    assert call_trace.read_trace(trace, since=0.0) == []
    trace.write_text(
        "105.5 108.0 32 11 embed\n100.5 104.0 32 12\n100.0 100.0 0 12 proc\n"
        "101.0 101.5 16 12 model\n\n"
    )
    # A line without a label is the embedder's (the trace's first format).
    assert call_trace.read_trace(trace, since=100.0) == [(0.5, 4.0, 32), (5.5, 8.0, 32)]
    assert call_trace.read_trace(trace, since=100.0, label="model") == [(1.0, 1.5, 16)]
    records = call_trace.read_records(trace, since=100.0)
    assert [r.label for r in records] == ["proc", "model", "embed", "embed"]
    assert records[0] == call_trace.Record(0.0, 0.0, 0, 12, "proc")


def test_the_hook_env_puts_the_site_dir_first_and_keeps_the_rest(tmp_path: Path) -> None:
    env = call_trace.hook_env(tmp_path / "t", {"PYTHONPATH": "/a:/b", "HOME": "/h"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(call_trace.SITE_DIR), "/a:/b"])
    assert env[call_trace.TRACE_ENV] == str(tmp_path / "t") and env["HOME"] == "/h"
    assert (call_trace.SITE_DIR / "sitecustomize.py").is_file()
    assert call_trace.hook_env(tmp_path / "t", {})["PYTHONPATH"] == str(call_trace.SITE_DIR)


class _Tensor:
    shape = (5, 3, 224, 224)


@pytest.mark.parametrize(
    ("args", "kwargs", "rows"),
    [
        (([b"a", b"b"],), {}, 2),  # Embedder.embed_bytes(items)
        ((types.SimpleNamespace(rows=4, todo=[0, 2]),), {}, 4),  # Embedder.embed_started
        ((), {"pixel_values": _Tensor()}, 5),  # model(pixel_values=...)
        (({"image": [1, 2, 3], "path": ["a", "b", "c"]},), {}, 3),  # a Ray Data batch
        ((object(),), {}, 0),  # Embedder.__init__(settings)
        ((), {}, 0),
    ],
)
def test_the_rows_of_a_call(args: tuple[object, ...], kwargs: dict[str, object], rows: int) -> None:
    assert call_trace.rows_of(args, kwargs) == rows


def test_the_traced_method_records_start_end_rows_and_label(tmp_path: Path) -> None:
    class Fake:
        def embed_bytes(self, items: list[bytes], errors: object = None) -> tuple[int, object]:
            return len(items), errors

    trace = tmp_path / "trace"
    method = call_trace.traced(Fake.embed_bytes, str(trace), "model")
    assert method(Fake(), [b"a", b"b"], errors="e") == (2, "e")
    assert method(Fake(), []) == (0, None)
    lines = [line.split() for line in trace.read_text().splitlines()]
    assert [int(rows) for _, _, rows, _, _ in lines] == [2, 0]
    assert all(float(start) <= float(end) for start, end, *_ in lines)
    assert {(int(pid), label) for *_, pid, label in lines} == {(os.getpid(), "model")}


def test_a_call_nested_in_a_traced_call_is_traced_once(tmp_path: Path) -> None:
    """In transformers 5 a model's encoder is itself a ``PreTrainedModel``: one forward, one
    line."""

    class Model:
        def __init__(self, inner: Model | None = None):
            self.inner = inner

        def __call__(self, pixel_values: _Tensor) -> int:
            return 1 + (self.inner(pixel_values) if self.inner else 0)

    trace = tmp_path / "trace"
    Model.__call__ = call_trace.traced(Model.__call__, str(trace), "model")  # type: ignore[method-assign]
    assert Model(Model())(pixel_values=_Tensor()) == 2
    assert Model(Model())(pixel_values=_Tensor()) == 2
    assert [line.split()[2:] for line in trace.read_text().splitlines()] == [
        ["5", str(os.getpid()), "model"],
        ["5", str(os.getpid()), "model"],
    ]


def test_a_model_call_while_the_embedder_loads_is_part_of_the_load(tmp_path: Path) -> None:
    """The embedder checks each model on a blank image as it loads it: load time, not a model
    batch (which would start the steady state early)."""

    class Model:
        def __call__(self, pixel_values: _Tensor) -> int:
            return 1

    class Embedder:
        def __init__(self) -> None:
            Model()(pixel_values=_Tensor())

    trace = tmp_path / "trace"
    Model.__call__ = call_trace.traced(Model.__call__, str(trace), "model")  # type: ignore[method-assign]
    Embedder.__init__ = call_trace.traced(Embedder.__init__, str(trace), "load")  # type: ignore[method-assign]
    Embedder()
    Model()(pixel_values=_Tensor())
    assert [line.split()[2:] for line in trace.read_text().splitlines()] == [
        ["0", str(os.getpid()), "load"],
        ["5", str(os.getpid()), "model"],
    ]


def test_install_traces_the_process_start_and_patches_every_target_once(tmp_path: Path) -> None:
    trace = tmp_path / "trace"

    class Embedder:
        def __init__(self, settings: object) -> None:
            self.settings = settings

        def embed_started(self, items: list[bytes]) -> int:
            return len(items)

    module = types.ModuleType("embedding_job.model.embedder")
    module.Embedder = Embedder  # type: ignore[attr-defined]
    call_trace.patch(module, str(trace))
    call_trace.patch(module, str(trace))  # a second import hook must not wrap twice
    assert Embedder(None).embed_started([b"x", b"y", b"z"]) == 3
    labels = [line.split()[4] for line in trace.read_text().splitlines()]
    assert labels == ["load", "embed"]
    original = Embedder.embed_started.__wrapped__  # type: ignore[attr-defined]
    assert not getattr(original, "__bench_traced__", False)
    other = types.ModuleType("somewhere.else")
    other.Embedder = Embedder  # type: ignore[attr-defined]
    call_trace.patch(other, str(trace))  # not a target module: nothing more is wrapped
    Embedder(None).embed_started([b"x"])
    assert len(trace.read_text().splitlines()) == 4


def test_the_trace_reaches_a_fresh_process_that_runs_the_embedder(
    tmp_path: Path, models_root: Path
) -> None:
    """What the traced scenarios rely on: a process started with ``hook_env`` (as Daft's UDF
    workers and Ray's workers are, inheriting it) traces its start, the model load and every
    embedder and model call, the library untouched."""
    from tests.support.images import good_images

    image = tmp_path / "image.jpg"
    image.write_bytes(good_images()["jpeg"])
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from embedding_job.model.embedder import Embedder, EmbedderSettings
        embedder = Embedder(EmbedderSettings(model_dir={str(models_root / DINOV2)!r}))
        data = Path({str(image)!r}).read_bytes()
        embedder.embed_bytes([data, None])
        embedder.embed_bytes([b""])
        print(os.getpid())
        """
    )
    trace = tmp_path / "trace"
    env = call_trace.hook_env(trace, {**os.environ, "HF_HUB_OFFLINE": "1"})
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    records = call_trace.read_records(trace, since=0.0)
    assert [(r.label, r.rows) for r in records] == [
        ("proc", 0),
        ("load", 0),  # its check of the model on a blank image included
        ("model", 1),  # the one good image; the null and the empty one never reach the model
        ("embed", 2),
        ("embed", 1),
    ]
    assert all(r.start <= r.end for r in records)
    assert {r.pid for r in records} == {int(run.stdout.split()[-1])}


def test_the_library_writes_no_trace_of_its_own(
    tmp_path: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedding_job.model import embedder as embedder_module
    from tests.support.images import good_images

    trace = tmp_path / "trace"
    monkeypatch.setenv(call_trace.TRACE_ENV, str(trace))
    monkeypatch.setenv("EMBEDDING_JOB_TRACE_FILE", str(trace))  # the hook the library had
    embedder = embedder_module.Embedder(
        embedder_module.EmbedderSettings(model_dir=str(models_root / DINOV2))
    )
    vectors, errors = embedder.embed_bytes([good_images()["jpeg"]])
    assert vectors[0] is not None and errors == [None]
    assert not trace.exists()
    assert not hasattr(embedder_module, "TRACE_ENV")


def _record(start: float, end: float, rows: int, pid: int, label: str) -> call_trace.Record:
    return call_trace.Record(start, end, rows, pid, label)


def test_where_a_runs_start_up_went() -> None:
    records = [
        _record(0.4, 0.4, 0, 10, "proc"),  # the CLI
        _record(3.0, 3.0, 0, 20, "proc"),  # the embedding worker
        _record(5.0, 6.5, 0, 20, "load"),
        _record(7.0, 7.1, 8, 20, "model"),
        _record(6.9, 7.3, 8, 20, "embed"),
        _record(7.4, 7.5, 8, 20, "model"),
        _record(7.3, 7.6, 8, 20, "embed"),
    ]
    cpu = {
        10: [(1.0, 0.5), (2.9, 2.0), (3.1, 2.1)],  # the CLI: 2.0 s of CPU when the worker starts
        20: [(3.5, 0.3), (7.0, 4.0), (7.5, 4.2)],  # the worker: 4.0 s by its first batch
    }
    run = TracedRun(9.0, sorted(records, key=lambda r: r.end), "", 100.0, 80.0, 7.9, 10, cpu)
    assert startup_figures(run) == {
        "worker_started_s": 3.0,
        "model_load_started_s": 5.0,
        "model_loaded_s": 6.5,
        "first_model_call_s": 7.0,
        "first_batch_done_s": 7.3,
        "first_file_s": 7.9,
        "end_s": 9.0,
        "embedder_in_command": False,
        "driver_cpu_until_worker_s": 2.0,
        "worker_cpu_until_first_batch_s": 4.0,
        "first_batch_cpu_path_s": 6.0,
    }
    # A peer has no embedder: its first batch is its first model call.
    peer = TracedRun(9.0, [r for r in run.records if r.label in ("proc", "model")], "", 1, 1, None)
    figures = startup_figures(peer)
    assert figures["first_batch_done_s"] == 7.1 and figures["worker_started_s"] == 3.0
    assert math.isnan(figures["model_load_started_s"]) and figures["first_file_s"] is None
    assert math.isnan(figures["first_batch_cpu_path_s"])  # no CPU samples
    steady = steady_figures(run, rows=16)
    assert steady["end_to_end_images_per_s"] == pytest.approx(16 / 9.0)
    # Two model calls: the window shrinks to the second one (8 rows from 7.1 s to 7.5 s).
    assert steady["model_steady_images_per_s"] == pytest.approx(8 / 0.4)
    assert steady["peak_rss_mb"] == 100.0 and steady["images"] == 16


def test_the_cpu_a_process_had_used_by_a_time() -> None:
    samples = [(1.0, 0.2), (1.25, 0.4), (1.5, 0.45)]
    assert cpu_by(samples, 0.5) == 0.0
    assert cpu_by(samples, 1.25) == 0.4
    assert cpu_by(samples, 1.4) == 0.4
    assert cpu_by(samples, 9.0) == 0.45
    assert math.isnan(cpu_by([], 1.0))


def test_the_cpu_a_process_had_used_interpolated_between_samples() -> None:
    samples = [(1.0, 0.2), (1.5, 0.4), (2.0, 0.4)]
    assert cpu_at(samples, 0.5) == 0.0
    assert cpu_at(samples, 1.25) == pytest.approx(0.3)
    assert cpu_at(samples, 1.75) == pytest.approx(0.4)
    assert cpu_at(samples, 9.0) == 0.4
    assert math.isnan(cpu_at([], 1.0))


def test_where_the_cpus_went_in_the_steady_window() -> None:
    # Embedder calls end at 2, 3, 4 and 6 s: the steady window is 3 s → 6 s.
    records = [_record(end - 0.9, end, 8, 20, "embed") for end in (2.0, 3.0, 4.0, 6.0)]
    cpu = {
        10: [(0.0, 0.0), (3.0, 1.0), (6.0, 2.5)],  # the driver: 1.5 s in 3 s
        20: [(0.0, 0.0), (3.0, 2.0), (6.0, 5.0)],  # the embedder: 3.0 s in 3 s
        30: [(2.0, 0.0), (4.5, 0.3), (7.0, 0.3)],  # a helper: 0.3 s, interpolated at both ends
    }
    # The bench's own process (its servers): 0.9 s in the window, outside the command's total.
    bench = [(0.0, 0.0), (3.0, 1.0), (6.0, 1.9)]
    run = TracedRun(7.0, records, "", 1.0, 1.0, None, 10, cpu, bench)
    cores = steady_cores(run)
    assert cores["bench"] == pytest.approx(0.3)
    assert cores["driver"] == pytest.approx(0.5) and cores["embedder"] == pytest.approx(1.0)
    assert cores["other"] == pytest.approx((0.3 - 0.12) / 3)
    assert cores["total"] == pytest.approx(sum(cores[k] for k in ("driver", "embedder", "other")))
    assert steady_cores(TracedRun(7.0, records, "", 1.0, 1.0, None, 10, cpu))["bench"] == 0.0
    assert steady_cores(TracedRun(7.0, records[:1], "", 1.0, 1.0, None, 10, cpu)) == {}
    # The native runner's embedder in the command's own process: that process is the embedder.
    inside = [r._replace(pid=10) for r in records]
    cores = steady_cores(TracedRun(7.0, inside, "", 1.0, 1.0, None, 10, cpu))
    assert cores["driver"] == 0.0 and cores["embedder"] == pytest.approx(0.5)


def test_tree_memory_samples_each_processs_cpu_time() -> None:
    busy = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    with TreeMemory(proc.pid, interval=0.05) as memory:
        proc.wait(timeout=60)
    used = [cpu for _, cpu in memory.cpu[proc.pid]]
    assert used == sorted(used) and used[-1] >= 0.3
    assert memory.peak_rss_kb > 0
