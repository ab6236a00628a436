"""How an image reference becomes pixels: fetching remote images (``input.download``) and
decoding them (``preprocessing``).

The preprocessing defaults reproduce the original component, which hands the image exactly as
Pillow opens it to its image processor, whose RGB conversion is Pillow's ``convert("RGB")``:
no EXIF rotation, transparent pixels keep the colour stored under them, 16-bit greyscale is
clipped. The better handling is there to ask for.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from embedding_job.api.base import Spec

#: The pause before a read's first retry; it doubles before each further one.
RETRY_PAUSE_SECONDS = 0.2


class Transparency(StrEnum):
    IGNORE = "ignore"
    WHITE = "white"


class HighBitDepth(StrEnum):
    CLIP = "clip"
    SCALE = "scale"


class PreprocessingSpec(Spec):
    """How decoded images are turned into RGB before the model's own resize and normalise.

    The defaults match the original component; change them only for a new index.
    """

    exif_orientation: bool = Field(
        False,
        description=(
            "Rotate and flip each image as its EXIF orientation tag says (phone photos). false "
            "embeds the pixels as stored, as the original component does."
        ),
    )
    transparency: Transparency = Field(
        Transparency.IGNORE,
        description=(
            "Images with an alpha channel or a transparent palette colour (PNG, WebP, GIF): "
            "ignore uses the colour stored under each pixel whatever its alpha, as Pillow's "
            "convert('RGB') and the original component do; white composites them over a "
            "white background."
        ),
    )
    high_bit_depth: HighBitDepth = Field(
        HighBitDepth.CLIP,
        description=(
            "16-bit and 32-bit greyscale images (PNG, TIFF): clip maps values above 255 to "
            "white, as Pillow's convert('RGB') and the original component do; scale maps the "
            "full range onto 0-255."
        ),
    )


class DownloadSpec(Spec):
    """How remote images are fetched: http(s) URLs by the job's own HTTP client, s3:// and
    gs:// through Daft's IO, each by the embedding worker's read threads. Absolute paths and
    file:/// URLs are read from the worker's file system.

    A worker stops dialling a host that failed (timed out, refused or reset the connection)
    ``retries + 1`` times in a row: its rows fail at once, naming the host, until
    ``hostCooldownSeconds`` have passed; then one row tries it again.
    """

    max_connections: int = Field(
        32,
        ge=1,
        le=1024,
        description="Remote images read at once by each embedding worker.",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description=(
            "Connect timeout, and the longest a host may stay silent while answering, in seconds."
        ),
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description=(
            "Retries of a failed read (timeout, reset, HTTP 5xx or 429) before the row is an "
            "error; a missing image (404) is not retried."
        ),
    )
    row_deadline_seconds: float | None = Field(
        None,
        gt=0,
        le=36000,
        description=(
            "Most time one image may take, every try included; empty: (retries + 1) x "
            "timeoutSeconds plus the pauses between tries (0.2 s, doubling). Stops a host that "
            "answers, but too slowly."
        ),
    )
    host_cooldown_seconds: float = Field(
        120.0,
        ge=0,
        le=86400,
        description=(
            "How long a worker skips a host that failed retries + 1 times in a row; doubles "
            "each time the host fails again when tried after it, up to an hour."
        ),
    )

    @property
    def deadline_seconds(self) -> float:
        """The most one image may take, every try included."""
        if self.row_deadline_seconds is not None:
            return self.row_deadline_seconds
        pauses = RETRY_PAUSE_SECONDS * ((1 << self.retries) - 1)
        return (self.retries + 1) * self.timeout_seconds + pauses
