"""The pipeline ceiling: ``embedding-job run`` with a near-zero-cost model (``dinov2-tiny``:
DINOv2's preprocessing, a 32-wide one-layer encoder) in every input mode (``bench.inputs``:
``ceiling_local``, ``ceiling_http``, ``ceiling_s3``, ``ceiling_binary``, ``ceiling_base64``), with
``ceiling_datapath_mt`` (the raw decode rate on every CPU, same images and preprocessing) as
the reference, and the peers on the same images (``ceiling_peer_*``).

The model costs next to nothing, so each run measures what the pipeline around it can feed:
the job decodes on ``inference.decodeThreads`` = every CPU (on a CPU the job's default decodes
inline, on one thread, behind the model), and each call gets two model batches. The goals
(``report.ceiling_goals``): the embedder busy at least 95 % of the steady window, and at least
90 % of ``datapath_mt``'s images/s per core, in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.in_process import InProcessScenario
from bench.inputs import MODES
from bench.scenario import Context
from bench.scenarios.daft_pipeline import JobSetup, pipeline_figures, run_cli_once
from bench.scenarios.datapath import measure_threaded
from bench.scenarios.peers import peers

#: The model of the ceiling suite (in ``model_configs.CPU_CONFIGS``).
MODEL = "dinov2-tiny"


@dataclass(frozen=True)
class CeilingScenario:
    """``embedding-job run`` (native runner) reading the ceiling's images in ``mode``."""

    name: str
    mode: str
    data_only: bool = False
    suite: str = "ceiling"

    def run(self, context: Context) -> dict[str, Any]:
        if context.inputs is None:
            raise RuntimeError(f"{self.name} needs the ceiling suite's inputs")
        source, env = context.inputs.source(self.mode)
        setup = JobSetup.of(context, env=env)
        out = context.workdir / f"out-{self.name}"
        run, summary = run_cli_once("native", source, out, setup)
        return {**pipeline_figures(run, summary), "input_mode": self.mode}


DATAPATH_MT = InProcessScenario("ceiling_datapath_mt", measure_threaded, True, "ceiling")
INPUT_MODES = tuple(CeilingScenario(f"ceiling_{mode}", mode) for mode in MODES)
PEERS = peers("ceiling_", "ceiling")
