"""The same images in every input mode the job reads: a local folder, http URLs from a loopback
server, an s3:// prefix on moto's S3 server on loopback, a binary column and a base64 column.

Each mode is the job's ``input`` spec plus the environment the run needs (the object store's
endpoint and keys). Servers are the tests' own (``tests.support.web``, ``tests.support.s3_server``)
and run in the bench's process until ``services`` closes them; tables and uploads are made once
per bench run and reused by every round.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.s3_server import new_bucket, running_s3_server
from tests.support.web import serve

#: The input modes, in the order the bench runs them.
MODES = ("local", "http", "s3", "binary", "base64")
#: Rows per Parquet row group of the generated tables (many row groups, as real tables have).
ROW_GROUP = 64


@dataclass
class Inputs:
    """Every mode's input for the images ``paths`` (all in one folder), made on first use."""

    paths: list[Path]
    workdir: Path
    services: contextlib.ExitStack
    made: dict[str, tuple[dict[str, Any], dict[str, str]]] = field(default_factory=dict)

    def source(self, mode: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(the job's ``input`` spec, the environment it needs) for ``mode``."""
        if mode not in self.made:
            self.made[mode] = _BUILDERS[mode](self)
        return self.made[mode]

    def table(self, name: str, column: list[Any]) -> Path:
        """A Parquet table of ``id`` and ``image`` (``column``) in the workdir."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.workdir / f"input-{name}.parquet"
        ids = [p.name for p in self.paths]
        pq.write_table(pa.table({"id": ids, "image": column}), path, row_group_size=ROW_GROUP)
        return path


def _table_source(path: Path, src_type: str) -> dict[str, Any]:
    return {"uri": str(path), "format": "parquet", "idColumn": "id", "srcType": src_type}


def _local(inputs: Inputs) -> tuple[dict[str, Any], dict[str, str]]:
    return {"uri": str(inputs.paths[0].parent), "format": "images-glob"}, {}


def _http(inputs: Inputs) -> tuple[dict[str, Any], dict[str, str]]:
    url = inputs.services.enter_context(serve(inputs.paths[0].parent))
    table = inputs.table("http", [f"{url}/{p.name}" for p in inputs.paths])
    return _table_source(table, "image_url"), {}


def _s3(inputs: Inputs) -> tuple[dict[str, Any], dict[str, str]]:
    server = inputs.services.enter_context(running_s3_server())
    bucket = new_bucket(server, "bench")
    for path in inputs.paths:
        bucket.put(f"images/{path.name}", path.read_bytes())
    return {"uri": f"{bucket.uri}/images/", "format": "images-glob"}, server.env


def _binary(inputs: Inputs) -> tuple[dict[str, Any], dict[str, str]]:
    table = inputs.table("binary", [p.read_bytes() for p in inputs.paths])
    return _table_source(table, "image_binary"), {}


def _base64(inputs: Inputs) -> tuple[dict[str, Any], dict[str, str]]:
    encoded = [base64.b64encode(p.read_bytes()).decode("ascii") for p in inputs.paths]
    return _table_source(inputs.table("base64", encoded), "image_base64"), {}


_BUILDERS: dict[str, Callable[[Inputs], tuple[dict[str, Any], dict[str, str]]]] = {
    "local": _local,
    "http": _http,
    "s3": _s3,
    "binary": _binary,
    "base64": _base64,
}
