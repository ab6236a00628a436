"""What a scenario is: a named way to measure, run by the driver once per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing import Any

    from bench.inputs import Inputs
    from bench.traced_run import TracedRun

#: The suites a bench run is made of: the per-model variants; the pipeline ceiling (a
#: near-zero-cost model, every input mode); the start-up of the demo-sized job.
SUITES = ("model", "ceiling", "startup")


@dataclass
class Context:
    """Everything one suite's scenarios share in a bench run (for the model suite: one model's)."""

    workdir: Path
    paths: list[Path]
    models_root: Path
    model_name: str
    device: str
    dtype: str
    min_seconds: float
    draft_factor: float | None
    batch_size: int
    call_batch_size: int
    #: inference.decodeThreads of the job's runs (None: the job's default).
    decode_threads: int | None = None
    #: One-batch pipeline runs, by runner: made once per model, reused in later rounds.
    small_runs: dict[str, TracedRun] = field(default_factory=dict)
    #: The images in every input mode (the ceiling suite).
    inputs: Inputs | None = None

    @property
    def model_dir(self) -> Path:
        return self.models_root / "bench" / self.model_name


class Scenario(Protocol):
    """A variant of the bench: ``run`` returns its figures, ``images_per_s`` at least."""

    @property
    def name(self) -> str: ...

    @property
    def suite(self) -> str:
        """Which of ``SUITES`` runs it."""
        ...

    @property
    def data_only(self) -> bool:
        """Bytes to tensors only, no model: no TFLOP/s."""
        ...

    def run(self, context: Context) -> dict[str, Any]: ...
