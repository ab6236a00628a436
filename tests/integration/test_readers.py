"""The job's output opens in what users read embeddings with: pyarrow and pandas (the job's own
venv), DuckDB and Polars, failed rows included; loaded into a FAISS index as the README shows; Lance
output as a fixed-size vector column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import faiss
import lance
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.support.jobs import job, run_cli, table, write_config

IDS = ["a", "b", "bad-1", "c", "bad-2", "d"]
FAILED = {"bad-1", "bad-2"}


@pytest.fixture(scope="module")
def parquet_output(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("readers")
    source = table(work / "in.parquet", IDS)
    config = job(models_root, source, work / "out", input={"srcType": "image_binary"})
    result = run_cli("run", "--config", str(write_config(work / "job.yaml", config)))
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "out"


def check(rows: dict[str, Any]) -> None:
    """id → embedding (None for a failed row): every row there, vectors of one length."""
    assert set(rows) == set(IDS)
    assert {i for i, v in rows.items() if v is None} == FAILED
    lengths = {len(v) for v in rows.values() if v is not None}
    assert len(lengths) == 1 and lengths.pop() > 0
    vectors = np.stack([np.asarray(rows[i], dtype=np.float32) for i in IDS if i not in FAILED])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_pyarrow_reads_it(parquet_output: Path) -> None:
    frame = pq.read_table(parquet_output).to_pydict()
    check(dict(zip(frame["id"], frame["embedding"], strict=True)))


def test_pandas_reads_it(parquet_output: Path) -> None:
    frame = pd.read_parquet(parquet_output)
    check({r.id: (None if r.embedding is None else list(r.embedding)) for r in frame.itertuples()})


def test_duckdb_reads_it(parquet_output: Path) -> None:
    query = f"SELECT id, embedding FROM read_parquet('{parquet_output}/*.parquet')"
    check(dict(duckdb.sql(query).fetchall()))


def test_polars_reads_it(parquet_output: Path) -> None:
    frame = pl.read_parquet(parquet_output / "*.parquet")
    check(dict(zip(frame["id"].to_list(), frame["embedding"].to_list(), strict=True)))


def test_a_vector_index_loads_it_in_a_few_lines(parquet_output: Path) -> None:
    # What the README shows, line for line: the embedded rows into a FAISS inner-product index
    # (the vectors are L2-normalised, so inner product is cosine), then a nearest-neighbour query.
    frame = pd.read_parquet(parquet_output)
    ok = frame[frame.embedding.notna()]
    vectors = np.stack(ok.embedding.to_numpy()).astype("float32")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    scores, neighbours = index.search(vectors[:2], 3)

    assert index.ntotal == len(IDS) - len(FAILED)
    assert list(neighbours[:, 0]) == [0, 1]  # each vector is its own nearest neighbour
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    for row in range(2):  # the scores are the cosines of the rows found
        assert np.allclose(scores[row], vectors[neighbours[row]] @ vectors[row], atol=1e-5)


def test_lance_output_is_a_fixed_size_vector(models_root: Path, tmp_path: Path) -> None:
    source = table(tmp_path / "in.parquet", IDS)
    config = job(
        models_root,
        source,
        tmp_path / "out.lance",
        input={"srcType": "image_binary"},
        output={"format": "lance"},
    )
    result = run_cli("run", "--config", str(write_config(tmp_path / "job.yaml", config)))
    assert result.returncode == 0, result.stderr[-3000:]
    frame = lance.dataset(str(tmp_path / "out.lance")).to_table()
    assert str(frame.schema.field("embedding").type).startswith("fixed_size_list<")
    check(dict(zip(frame["id"].to_pylist(), frame["embedding"].to_pylist(), strict=True)))
