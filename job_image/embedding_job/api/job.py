"""The job config: one typed model of an embedding job (input, model, inference, output,
errors), what the CLI reads and what the operator hands to the job. The model section is in
``api.model``, how images are fetched and turned into RGB in ``api.images``.

Imports nothing heavy (pydantic and the standard library only), so that the operator image can
validate it and embed it in the CRD without torch or daft. Field names on the wire are camelCase
(``srcType``, ``batchSize``) as Kubernetes users expect; Python code uses snake_case attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from embedding_job.api.base import ColumnName, Spec, check_column
from embedding_job.api.images import DownloadSpec, PreprocessingSpec
from embedding_job.api.kube_names import MAX_URI
from embedding_job.api.model import MAX_MODELS, ModelSpec

#: Pass-through columns: a wide table's worth, small enough for a pod's command line.
MAX_COLUMNS = 256


class InputFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    JSON = "json"
    LANCE = "lance"
    IMAGES_GLOB = "images-glob"


class SrcType(StrEnum):
    IMAGE_URL = "image_url"
    IMAGE_BASE64 = "image_base64"
    IMAGE_BINARY = "image_binary"


class Device(StrEnum):
    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"


class OutputFormat(StrEnum):
    PARQUET = "parquet"
    LANCE = "lance"


class WriteMode(StrEnum):
    ERROR = "error"
    OVERWRITE = "overwrite"


class InputSpec(Spec):
    """Where the images come from."""

    uri: str = Field(
        ...,
        min_length=1,
        max_length=MAX_URI,
        description=(
            "Input location: a file path, a directory or glob of images, or an s3://, gs:// or "
            "http(s):// URI of a table or of images."
        ),
    )
    format: InputFormat | None = Field(
        None,
        description=(
            "parquet | csv | json | lance | images-glob. Inferred from the URI when omitted: a "
            "table file extension picks the table format, anything else is read as images."
        ),
    )
    image_column: ColumnName = Field(
        "image", description="Column holding the image (URL/path, base64 text or raw bytes)."
    )
    src_type: SrcType = Field(
        SrcType.IMAGE_URL,
        description="How imageColumn encodes the image: image_url | image_base64 | image_binary.",
    )
    id_column: ColumnName | None = Field(
        None,
        description=(
            "Column that identifies a row; copied to the output. For images-glob input the "
            "image path is the id."
        ),
    )
    columns: list[ColumnName] = Field(
        default_factory=list,
        max_length=MAX_COLUMNS,
        description="Extra input columns copied unchanged to the output.",
    )
    download: DownloadSpec = Field(
        default_factory=DownloadSpec,
        description="How remote images are read, and what a slow or dead host may cost.",
    )

    @field_validator("image_column", "id_column")
    @classmethod
    def _column_names(cls, value: str | None) -> str | None:
        return None if value is None else check_column(value)

    @field_validator("columns")
    @classmethod
    def _passthrough(cls, value: list[str]) -> list[str]:
        for name in value:
            check_column(name)
        if len(set(value)) != len(value):
            raise ValueError("columns must not repeat a name")
        return value

    @model_validator(mode="after")
    def _format_and_source(self) -> InputSpec:
        fmt = self.resolved_format
        if fmt is InputFormat.IMAGES_GLOB and self.src_type is not SrcType.IMAGE_URL:
            raise ValueError("images-glob input reads image files: srcType must be image_url")
        return self

    @property
    def resolved_format(self) -> InputFormat:
        """The explicit format, or the one the URI's extension names (images otherwise)."""
        if self.format is not None:
            return self.format
        return infer_input_format(self.uri)


class InferenceSpec(Spec):
    """How inference is spread over devices."""

    batch_size: int = Field(32, ge=1, le=8192, description="Images per model forward pass.")
    call_batch_size: int | None = Field(
        None,
        ge=1,
        le=65536,
        description=(
            "Rows handed to each call of an embedding worker; empty: 8 x batchSize, at most "
            "1024, on a GPU worker, and batchSize on a CPU worker (it decodes between its "
            "model batches). A value below batchSize is raised to batchSize. Decoding overlaps "
            "the model within a call, so several model batches per call keep the GPU busy "
            "across batch boundaries."
        ),
    )
    gpus_per_worker: float = Field(
        1.0,
        ge=0,
        le=16,
        description=(
            "GPUs requested by each embedding worker (model replica); 0 runs on CPU. Ignored "
            "with a log line when the cluster has no GPU."
        ),
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=4096,
        description=(
            "Number of embedding workers (model replicas). Empty: on Ray, one per "
            "gpusPerWorker GPUs in the cluster (1 without GPUs); on the native runner, 1."
        ),
    )
    device: Device = Field(Device.AUTO, description="auto | cuda | cpu.")
    cpus_per_worker: float | None = Field(
        None,
        gt=0,
        le=1024,
        description=(
            "CPUs reserved per embedding worker on Ray (decode runs on them); a worker "
            "without a GPU also runs its model on that many threads, on either runner. Empty: "
            "Daft's default, and a worker without a GPU uses every CPU of its machine (give "
            "several such workers on one node their CPUs). See the README on sizing a worker."
        ),
    )
    decode_threads: int | None = Field(
        None,
        ge=0,
        le=256,
        description=(
            "CPU threads decoding images ahead of the model in each worker; empty: automatic "
            "(up to 16 with a GPU, inline on CPU); 0: inline."
        ),
    )
    jpeg_draft_factor: float | None = Field(
        2.0,
        ge=1,
        le=16,
        description=(
            "Decode JPEGs at reduced size, down to this multiple of the model's input size "
            "(2 keeps embeddings within 1e-4 cosine of a full decode); empty: full-size decode."
        ),
    )
    decode_megapixels: float | None = Field(
        64.0,
        gt=0,
        le=100000,
        description=(
            "Most pixels (megapixels, at the size they decode to) a worker holds decoded at "
            "once across its decode threads, which bounds its decoding memory (about 14 bytes "
            "a pixel, measured on PNGs); a larger image decodes alone. Empty: no bound (each "
            "thread holds one image, whatever its size)."
        ),
    )
    compile: bool = Field(False, description="torch.compile the model (slow first batches).")
    gpu_decode: bool = Field(
        False,
        description="Decode JPEGs on the GPU with torchvision's nvJPEG when available.",
    )
    rank: int = Field(
        0, ge=0, description="GPU index for a worker, taken modulo the visible GPU count."
    )


class OutputSpec(Spec):
    """Where the embeddings are written."""

    uri: str = Field(
        ...,
        min_length=1,
        max_length=MAX_URI,
        description="Output directory: local path, s3:// or gs://.",
    )
    format: OutputFormat = Field(OutputFormat.PARQUET, description="parquet | lance.")
    mode: WriteMode = Field(
        WriteMode.ERROR,
        description="error: refuse to write where output already exists; overwrite: replace it.",
    )
    resume: bool = Field(
        False,
        description=(
            "Continue earlier output: keep its complete files, skip input rows whose id is "
            "already there, write the rest (needs input.idColumn, or images-glob)."
        ),
    )
    embedding_column: ColumnName = Field("embedding", description="Name of the embedding column.")
    error_column: ColumnName = Field(
        "embedding_error", description="Name of the per-row error column (null when embedded)."
    )

    @field_validator("uri")
    @classmethod
    def _writable(cls, value: str) -> str:
        if value.startswith(("http://", "https://")):
            raise ValueError(
                "output cannot be written to an http(s) URL; use a path, s3:// or gs://"
            )
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> OutputSpec:
        if self.embedding_column == self.error_column:
            raise ValueError("embeddingColumn and errorColumn must differ")
        return self


class ErrorPolicy(Spec):
    """When bad rows fail the whole job."""

    max_failed_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description=(
            "Fail the job when more than this fraction of rows could not be embedded "
            "(1 never fails on bad rows)."
        ),
    )


class EmbeddingJobConfig(Spec):
    """An embedding job: read images, embed them with one or more models, write vectors."""

    input: InputSpec = Field(..., description="Where the images come from.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The model and pooling.")
    models: Sequence[ModelSpec] = Field(
        default_factory=list,
        max_length=MAX_MODELS,
        description=(
            "Several models in one pass, instead of model: each image is read and decoded "
            "once and embedded by every one of them, into one column per model, "
            "<output.embeddingColumn>_<alias>. Each entry is a model section with its own "
            "dtype, pooling and batchSize."
        ),
        # Present in every stored EmbeddingJob, so that CEL rules can compare it.
        json_schema_extra={"default": []},
    )
    preprocessing: PreprocessingSpec = Field(
        default_factory=PreprocessingSpec,
        description="Decoded image → RGB: EXIF rotation, transparency, 16-bit images.",
    )
    inference: InferenceSpec = Field(
        default_factory=InferenceSpec, description="Devices and batching."
    )
    output: OutputSpec = Field(..., description="Where the embeddings are written.")
    errors: ErrorPolicy = Field(default_factory=ErrorPolicy, description="Bad-row policy.")

    @model_validator(mode="after")
    def _one_way_to_name_the_models(self) -> EmbeddingJobConfig:
        if not self.models:
            if self.model.alias is not None:
                raise ValueError("model.alias: an alias names a column only in models")
            return self
        # An EmbeddingJob's model is defaulted by the apiserver: "left out" is "all defaults".
        if self.model != type(self.model)():
            raise ValueError(
                "model, models: give either model or models; with models, leave model out "
                "(each entry of models has its own name, path, dtype and pooling)"
            )
        aliases = [spec.resolved_alias for spec in self.models]
        repeated = sorted({a for a in aliases if aliases.count(a) > 1})
        if repeated:
            raise ValueError(
                f"models: aliases {repeated} repeat; give each model its own alias "
                "(its column is <output.embeddingColumn>_<alias>)"
            )
        return self

    @model_validator(mode="after")
    def _no_column_clash(self) -> EmbeddingJobConfig:
        produced = [column for _, column in self.embedding_columns()] + [self.output.error_column]
        if len(set(produced)) != len(produced):
            raise ValueError(f"output columns {produced} repeat a name; rename output.errorColumn")
        kept = set(self.input.columns) | {c for c in [self.input.id_column] if c}
        clash = set(produced) & kept
        if clash:
            raise ValueError(
                f"input columns {sorted(clash)} clash with output columns; rename "
                "output.embeddingColumn/errorColumn"
            )
        if self.output.resume:
            if self.output.format is not OutputFormat.PARQUET:
                raise ValueError("output.resume needs output.format parquet")
            glob = self.input.resolved_format is InputFormat.IMAGES_GLOB
            if not glob and self.input.id_column is None:
                raise ValueError("output.resume needs input.idColumn: rows are skipped by id")
        return self

    def embedding_columns(self) -> list[tuple[ModelSpec, str]]:
        """Each model with the column its vectors go to: ``model`` into
        ``output.embeddingColumn``; each of ``models`` into ``<embeddingColumn>_<alias>``."""
        if not self.models:
            return [(self.model, self.output.embedding_column)]
        prefix = self.output.embedding_column
        return [(spec, f"{prefix}_{spec.resolved_alias}") for spec in self.models]

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form (what the CRD stores and the job receives)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        # Raw UTF-8, not \uXXXX escapes: at most 4 bytes a character on a command line.
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def infer_input_format(uri: str) -> InputFormat:
    """Guess the input format from a URI: table extensions, otherwise image files."""
    lowered = uri.lower().rstrip("/")
    for suffix, fmt in (
        (".parquet", InputFormat.PARQUET),
        (".pq", InputFormat.PARQUET),
        (".csv", InputFormat.CSV),
        (".json", InputFormat.JSON),
        (".jsonl", InputFormat.JSON),
        (".ndjson", InputFormat.JSON),
        (".lance", InputFormat.LANCE),
    ):
        if lowered.endswith(suffix):
            return fmt
    return InputFormat.IMAGES_GLOB
