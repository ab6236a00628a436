"""What a scenario is: a named way to measure, run by the driver once per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Context:
    """Everything one model's scenarios share in a bench run."""

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
    #: One-batch pipeline runs, by runner: made once per model, reused in later rounds.
    small_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.models_root / "bench" / self.model_name


class Scenario(Protocol):
    """A variant of the bench: ``run`` returns its figures, ``images_per_s`` at least."""

    @property
    def name(self) -> str: ...

    @property
    def data_only(self) -> bool:
        """Bytes to tensors only, no model: no TFLOP/s."""
        ...

    def run(self, context: Context) -> dict[str, Any]: ...
