"""``datapath_baseline``: bytes → model-ready tensor with the Hugging Face processor only, on one
thread (the baseline's data path, no model)."""

from __future__ import annotations

from typing import Any

from bench.in_process import InProcessScenario, Worker
from bench.scenarios.baseline import hugging_face_reference, time_reference


def measure(worker: Worker) -> dict[str, Any]:
    """Per-core figures: one thread, and no intra-op parallelism behind its back."""
    import torch

    torch.set_num_threads(1)
    figures: dict[str, Any] = time_reference(worker, hugging_face_reference(worker, False))
    figures["threads"] = 1
    return figures


SCENARIO = InProcessScenario("datapath_baseline", measure, data_only=True)
