"""What the report says about the machine and the code: device, CPU model, commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def device_name(device: str) -> tuple[str, str]:
    """("cuda", the GPU's name) when ``device`` allows CUDA and one is there, else the CPU."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", cpu_model()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str | None:
    """HEAD of the repository the bench runs in, if git can tell."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
