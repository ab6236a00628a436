"""Every variant of the bench, by name, in the order a run measures them.

Adding a variant: a module here with a scenario object (``bench.scenario.Scenario``: a name, a
suite, ``data_only`` and ``run(context)``; ``bench.in_process.InProcessScenario`` for code timed
inside one worker process), and one line below.
"""

from __future__ import annotations

from bench.scenario import Scenario
from bench.scenarios import (
    baseline,
    ceiling,
    daft_pipeline,
    datapath,
    datapath_baseline,
    embedder,
    peers,
    startup,
    two_models,
)

_IN_ORDER: tuple[Scenario, ...] = (
    baseline.SCENARIO,
    datapath_baseline.SCENARIO,
    datapath.INLINE,
    datapath.THREADED,
    embedder.PER_CALL,
    embedder.STREAM,
    two_models.SCENARIO,
    daft_pipeline.NATIVE,
    daft_pipeline.RAY,
    *peers.peers(),
    ceiling.DATAPATH_MT,
    *ceiling.INPUT_MODES,
    *ceiling.PEERS,
    startup.SCENARIO,
)
SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _IN_ORDER}
