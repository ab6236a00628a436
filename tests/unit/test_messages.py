"""What users read: errors that point at the fix, and help that shows every target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedding_job import cli
from embedding_job.api import ConfigError, ModelSpec, parse_config, parse_spec
from embedding_job.errors import ModelNotFoundError
from embedding_job.model.files import locate_model
from tests.support.models import DINOV2, VIT

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"input": {"uri": "/data/images"}, "output": {"uri": "/data/out"}}


def test_an_unknown_field_is_told_the_nearest_known_one() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "modle": {}, "inference": {"batchsize": 8}})
    assert "modle: unknown field (did you mean model?)" in err.value.problems
    assert "inference.batchsize: unknown field (did you mean batchSize?)" in err.value.problems
    with pytest.raises(ConfigError) as err:
        parse_spec({**MINIMAL, "cluster": {"volumes": [{"name": "v", "mountpath": "/v"}]}})
    assert any(
        "volumes.0.mountpath: unknown field (did you mean mountPath?)" in p
        for p in err.value.problems
    )


def test_a_field_like_no_other_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "output": {"uri": "/o", "zzz": 1}})
    (problem,) = err.value.problems
    assert problem.startswith("output.zzz: unknown field (known: uri, format, mode")


def test_validate_prints_the_format_the_run_will_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "--config-json", json.dumps(MINIMAL)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["input"]["format"] == "images-glob"
    table = {**MINIMAL, "input": {"uri": "s3://b/t.parquet"}}
    assert cli.main(["validate", "--config-json", json.dumps(table)]) == 0
    assert json.loads(capsys.readouterr().out)["input"]["format"] == "parquet"


def test_a_missing_model_names_the_cli_that_exists(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        locate_model(ModelSpec(name="facebook/dinov2-base", path=str(tmp_path)))
    message = str(err.value)
    assert "hf download facebook/dinov2-base" in message and "huggingface-cli" not in message


def test_make_help_lists_every_target_without_make_escapes() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    documented = {
        line.split(":")[0]
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "## " in line and ":" in line and not line.startswith(("\t", "#", " "))
    }
    assert documented and documented <= listed, documented - listed
    assert {"e2e-local", "bench-operator"} <= listed
    assert "$$" not in out


def test_loading_a_model_prints_no_third_party_warning(models_root: Path) -> None:
    # A fresh process: transformers prints its notes once per process (the PIL processor note
    # without torchvision, the load report of a ViT without its pooler).
    load = (
        "import sys; from embedding_job.logs import setup_logging; setup_logging('INFO', True); "
        "from embedding_job.api import Device, DType; "
        "from embedding_job.model.embedder import Embedder, EmbedderSettings; "
        "Embedder(EmbedderSettings(sys.argv[1], dtype=DType.FLOAT32, device=Device.CPU))"
    )
    for model in (DINOV2, VIT):
        result = subprocess.run(
            [sys.executable, "-c", load, str(models_root / model)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert [line for line in lines if not line.startswith("{")] == []  # printed, not logged
        records = [json.loads(line) for line in lines]
        assert [r["message"] for r in records if r["level"] != "info"] == []
        assert all(r["logger"].startswith("embedding_job") for r in records), records
        assert any(r["message"].startswith("loaded ") for r in records)
