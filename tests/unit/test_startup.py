"""What keeps the job's start-up and exit short (``make bench``'s ``startup`` measures them): an
embedding worker's results built without importing pandas, and the CLI's process ending without
the interpreter's teardown once its work is done, with its exit code and output intact."""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import textwrap

import pytest

from embedding_job import cli


def test_building_a_result_does_not_import_pandas() -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from embedding_job.run.udf import result_array
        rows = result_array([np.ones(3, np.float32), None], [None, "decode failed: x"])
        assert rows.to_pylist()[1] == {"embedding": None, "error": "decode failed: x"}
        print("pandas" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["schema"], 0),
        (["validate", "--config-json", '{"input": {}}'], 2),
        (["no-such-command"], 2),  # argparse's own exit, before main returns
    ],
)
def test_the_command_keeps_its_exit_code_and_output(args: list[str], code: int) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "embedding_job.cli", *args], capture_output=True, text=True
    )
    assert run.returncode == code, run.stderr[-2000:]
    if code == 0:
        assert json.loads(run.stdout)["title"]  # the whole schema, flushed before the exit
    else:
        assert run.stderr


def test_main_called_by_another_program_leaves_its_exit_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handlers = atexit._ncallbacks()
    assert cli.main(["schema"]) == 0
    assert atexit._ncallbacks() == handlers
    assert json.loads(capsys.readouterr().out)
