"""The e2e suite's clusters: every scenario runs on each provider EMBOP_E2E_PROVIDER lists
(comma-separated; default ``local,node``, what CI runs): ``local`` (kwok's fake nodes and one
Ray head on this machine), ``node`` (real pods on a real kubelet), ``kind`` (users with
Docker). A scenario marked ``real_pods``, ``loopback`` or ``object_store`` runs only on the
providers that have what the marker names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedding_job.demo import TINY, make_random_model
from tests.e2e.checks import show
from tests.e2e.steps import MODEL
from tests.support.hub_models import CLIP, hub_preprocessor
from tests.support.kube import Cluster
from tests.support.models import DINOV2
from tests.support.providers import Provider, make_provider, provider_class

PROVIDERS = [p for p in os.environ.get("EMBOP_E2E_PROVIDER", "local,node").split(",") if p]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run of each scenario per provider, grouped so each cluster is up once."""
    if "provider" not in metafunc.fixturenames:
        return
    names = [
        name
        for name in PROVIDERS
        if all(getattr(provider_class(name), need) for need in NEEDS if _marked(metafunc, need))
    ]
    metafunc.parametrize("provider", names, indirect=True, scope="package")


#: Markers that say what a scenario needs, each a Provider attribute of the same name.
NEEDS = ("real_pods", "loopback", "object_store")


def _marked(metafunc: pytest.Metafunc, name: str) -> bool:
    return metafunc.definition.get_closest_marker(name) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A scenario that no listed provider can run (real pods with EMBOP_E2E_PROVIDER=local)
    is deselected, not skipped: it did not run here, and pytest's summary says so."""
    unrunnable = [
        item
        for item in items
        if "provider" in getattr(item, "fixturenames", ())
        and any(
            str(mark.kwargs.get("reason", "")).startswith("got empty parameter set")
            for mark in item.iter_markers("skip")
        )
    ]
    if unrunnable:
        config.hook.pytest_deselected(items=unrunnable)
        items[:] = [item for item in items if item not in unrunnable]


@pytest.fixture(scope="package")
def provider(request: pytest.FixtureRequest) -> Iterator[Provider]:
    chosen = make_provider(request.param)
    try:
        chosen.up()
        show(f"provider {chosen.name}", chosen.describe())
        yield chosen
    finally:
        chosen.down()


@pytest.fixture(scope="package")
def models(provider: Provider) -> Path:
    """Tiny random-init models under their real names, in the directory the job sees: the ViT
    every scenario embeds with, and a DINOv2 and a CLIP (each with the hub's preprocessor file,
    weights drawn wide so that distinct images get distinct vectors) for several models in one
    job."""
    root = provider.workdir / "models"
    make_random_model(root / MODEL, "vit", seed=1)
    wide = {**TINY, "initializer_range": 0.2, "initializer_factor": 2.0}
    for seed, (name, kind) in enumerate([(DINOV2, "dinov2"), (CLIP, "clip")], start=2):
        config = hub_preprocessor(name)
        make_random_model(root / name, kind, size=wide, seed=seed, preprocessor_config=config)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return root


@pytest.fixture(scope="package")
def cluster(provider: Provider) -> Cluster:
    """The provider's cluster (tests/support/fixtures.py's namespace fixture uses it)."""
    return provider.cluster
