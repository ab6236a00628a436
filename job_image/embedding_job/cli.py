"""``embedding-job``: run, validate or demo an embedding job.

Exit codes: 0 success; 1 unexpected failure; 2 invalid config or usage; 3 the config (from the
EmbeddingJob), model, input or output not usable (before any data is processed); 4 too many rows
failed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from embedding_job.api import (
    FROM_EMBEDDINGJOB_FLAG,
    TELEMETRY_OFF,
    ConfigError,
    EmbeddingJobConfig,
    json_schema,
    load_config,
)
from embedding_job.logs import exit_without_teardown, main_module_name
from embedding_job.run import status_report as report
from embedding_job.run.own_config import read_own_config

log = logging.getLogger("embedding_job")

EXIT_CONFIG = 2
#: The code ``main`` returned, once it has (see ``_exit_without_teardown``).
_returned: list[int] = []


def telemetry_off() -> None:
    """Turn off every library's usage reporting (unless the environment already decided)."""
    # Batch jobs on customer data never phone home.
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embedding-job", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=os.environ.get("EMBEDDING_JOB_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default="auto",
        help="auto: text on a terminal, JSON lines otherwise",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser, own_job: bool = False) -> None:
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--config", "-c", help="job config file (YAML/JSON, or - for stdin)")
        src.add_argument("--config-json", help="job config as a JSON string")
        if own_job:
            src.add_argument(
                FROM_EMBEDDINGJOB_FLAG,
                dest="from_embeddingjob",
                action="store_true",
                help="read the config from the EmbeddingJob named by EMBEDDING_JOB_NAME and "
                "EMBEDDING_JOB_NAMESPACE (what the operator's driver does)",
            )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a field, e.g. --set model.dtype=float32 (repeatable)",
        )

    run = sub.add_parser("run", help="run an embedding job")
    config_args(run, own_job=True)
    run.add_argument(
        "--runner",
        choices=["native", "ray"],
        default=os.environ.get("EMBEDDING_JOB_RUNNER", "native"),
    )
    run.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster address (ray runner)",
    )

    validate = sub.add_parser("validate", help="validate a job config and print it with defaults")
    config_args(validate)

    sub.add_parser("schema", help="print the job config's JSON Schema")

    demo = sub.add_parser(
        "demo",
        help="run the job on generated sample images (random-init model if no real one is found)",
    )
    demo.add_argument("--workdir", default=".demo", help="where sample images, model and output go")
    demo.add_argument("--images", type=int, default=24, help="number of sample images")
    demo.add_argument(
        "--model-path", default="/models", help="models root to look for a real model in"
    )
    demo.add_argument("--model-name", default="facebook/dinov2-base")
    demo.add_argument("--runner", choices=["native", "ray"], default="native")
    return parser


def _read_config(
    args: argparse.Namespace, reporter: report.StatusReporter | None
) -> EmbeddingJobConfig:
    if args.command == "run" and args.from_embeddingjob:
        return read_own_config(reporter, args.overrides)
    if args.config_json is not None:
        text = args.config_json
    elif args.config == "-":
        text = sys.stdin.read()
    else:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError([f"--config: file {path} not found"])
        text = path.read_text()
    return load_config(text, args.overrides)


def _run(cfg: EmbeddingJobConfig, runner: str, ray_address: str | None) -> dict[str, Any]:
    from embedding_job.run.pipeline import RunOptions, run_job

    return run_job(cfg, RunOptions(runner=runner, ray_address=ray_address))


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    from embedding_job.api import parse_config
    from embedding_job.demo import DEMO_MODEL_NAME, SMALL, make_random_model, make_sample_images
    from embedding_job.model.files import missing_files

    workdir = Path(args.workdir).resolve()
    images = workdir / "images"
    if not images.is_dir():
        make_sample_images(images, count=args.images)
        # One unreadable file shows per-row error isolation: it becomes one error row.
        (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    model_path, model_name = args.model_path, args.model_name
    if missing_files(Path(model_path) / model_name):
        model_path, model_name = str(workdir / "models"), DEMO_MODEL_NAME
        if missing_files(Path(model_path) / model_name):
            make_random_model(Path(model_path) / model_name, "dinov2", SMALL)
        log.warning(
            "DEMO: %s not found under %s; using a RANDOM-INIT demo model (%s): the embeddings are "
            "meaningless. Put a real checkpoint there for real vectors.",
            args.model_name,
            args.model_path,
            model_name,
        )
    cfg = parse_config(
        {
            "input": {"uri": str(images), "format": "images-glob"},
            "model": {"name": model_name, "path": model_path, "dtype": "float32"},
            "inference": {"batchSize": 8},
            "output": {"uri": str(workdir / "output"), "mode": "overwrite"},
        }
    )
    return _run(cfg, args.runner, None)


def _report_failure(reporter: report.StatusReporter | None, reason: str, message: str) -> None:
    if reporter is not None:
        reporter.failed(reason, message)


def _exit_without_teardown() -> None:
    """When this process is the ``embedding-job`` command, end it as soon as ``main`` has
    returned and every exit handler registered after this one (Ray's, Daft's) has run: the
    interpreter's teardown with torch loaded took 1.8-3 s here after the output was complete.
    Not for ``main`` called in another program (the tests): its exit code is that program's."""
    if main_module_name() == "embedding_job.cli" or Path(sys.argv[0]).name == "embedding-job":

        def leave() -> None:
            if _returned:
                exit_without_teardown(_returned[-1])

        atexit.register(leave)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``embedding-job`` command."""
    if argv is None:
        _exit_without_teardown()
    code = _main(argv)
    _returned.append(code)
    return code


def _main(argv: list[str] | None) -> int:
    telemetry_off()
    args = _parser().parse_args(argv)
    structured = {"auto": None, "text": False, "json": True}[args.log_format]
    from embedding_job.logs import setup_logging

    setup_logging(args.log_level, structured)
    if structured or (structured is None and not sys.stderr.isatty()):
        os.environ.setdefault("DAFT_PROGRESS_BAR", "0")
    # In a cluster the job tells its EmbeddingJob why it fails (None elsewhere).
    reporter = report.from_env() if args.command == "run" else None
    try:
        if args.command == "schema":
            print(json.dumps(json_schema(), indent=2, sort_keys=True))
            return 0
        if args.command == "demo":
            manifest = _demo(args)
        else:
            cfg = _read_config(args, reporter)
            if args.command == "validate":
                wire = cfg.to_wire()
                # What the run will use: the format inferred from the URI when none is given.
                wire["input"]["format"] = cfg.input.resolved_format.value
                print(json.dumps(wire, indent=2, sort_keys=True))
                return 0
            if reporter is not None:
                reporter.started()
            manifest = _run(cfg, args.runner, args.ray_address)
    except ConfigError as exc:
        print(f"embedding-job: {exc}", file=sys.stderr)
        _report_failure(reporter, report.error_reason(exc), str(exc))
        return EXIT_CONFIG
    except Exception as exc:
        from embedding_job.errors import JobError

        if isinstance(exc, JobError):
            log.error("%s", exc)
            _report_failure(reporter, report.error_reason(exc), str(exc))
            return exc.exit_code
        log.exception("job failed unexpectedly")
        _report_failure(reporter, "UnexpectedError", f"{type(exc).__name__}: {exc}")
        return 1
    summary = {
        k: manifest[k] for k in ("status", "rowsIn", "rowsEmbedded", "rowsFailed", "embeddingDim")
    }
    summary["output"] = manifest["output"]["uri"]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
