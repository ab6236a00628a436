"""``baseline``: the original component. PIL ``open().convert("RGB")``,
``AutoImageProcessor(use_fast=True)`` and ``AutoModel`` in the model dtype, CLS, L2, per batch
of 32 (``--batch-size``)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from bench.in_process import InProcessScenario, Worker, batches, sync, timed
from embedding_job.imaging.datapath import available_cpus


def hugging_face_reference(worker: Worker, with_model: bool) -> Callable[[Sequence[bytes]], int]:
    """One batch of bytes through the Hugging Face processor (and the model if ``with_model``),
    as the original component does it; returns the batch's size."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model_dir = worker.spec.model_dir
    device, dtype = worker.device, worker.dtype
    processor = AutoImageProcessor.from_pretrained(model_dir, use_fast=True)
    model = AutoModel.from_pretrained(model_dir).to(device, dtype).eval() if with_model else None

    def reference(batch: Sequence[bytes]) -> int:
        pil = [Image.open(io.BytesIO(data)).convert("RGB") for data in batch]
        pixel_values = processor(images=pil, return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(device, dtype)
        if model is not None:
            with torch.no_grad():
                hidden = model(pixel_values=pixel_values).last_hidden_state
            pooled = torch.nn.functional.normalize(hidden[:, 0].float(), dim=-1)
            pooled.cpu().numpy()
        sync(device)
        return len(batch)

    return reference


def time_reference(worker: Worker, reference: Callable[[Sequence[bytes]], int]) -> dict[str, Any]:
    """``reference`` over all images, batch by batch, after one warm-up batch."""
    datas, size = worker.datas, worker.spec.batch_size

    def run_pass() -> int:
        return sum(reference(batch) for batch in batches(datas, size))

    return timed(run_pass, lambda: reference(datas[:size]), worker.spec.min_seconds)


def measure(worker: Worker) -> dict[str, Any]:
    """The original component, on every CPU torch uses by default."""
    figures: dict[str, Any] = time_reference(worker, hugging_face_reference(worker, True))
    figures["threads"] = available_cpus()
    return figures


SCENARIO = InProcessScenario("baseline", measure)
