"""Good and bad image payloads for tests: every mode and failure the job must handle."""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from embedding_job.demo import encode, sample_image


def exif_rotated_jpeg() -> bytes:
    """A 64x32 JPEG whose EXIF orientation (6) says: rotate to 32x64."""
    image = sample_image(7, (64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
    array = (np.linspace(0, 65535, 48 * 40).reshape(40, 48)).astype(np.uint16)
    return encode(Image.fromarray(array), "PNG")


def palette_with_transparency() -> bytes:
    image = sample_image(9, (40, 40)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def good_images() -> dict[str, bytes]:
    """Readable images in every mode the decoder must turn into RGB."""
    return {
        "jpeg": encode(sample_image(1, (320, 240)), "JPEG", quality=90),
        "png": encode(sample_image(2, (200, 300)), "PNG"),
        "gray": encode(sample_image(3, (256, 256), "L"), "JPEG"),
        "rgba": encode(sample_image(4, (300, 200), "RGBA"), "PNG"),
        "la": encode(sample_image(5, (64, 64), "LA"), "PNG"),
        "cmyk": encode(sample_image(6, (240, 320), "CMYK"), "JPEG"),
        "exif": exif_rotated_jpeg(),
        "sixteen": sixteen_bit_png(),
        "palette": palette_with_transparency(),
    }


def truncated_jpeg() -> bytes:
    data = encode(sample_image(11, (400, 300)), "JPEG", quality=95)
    return data[: len(data) // 2]


def random_bytes() -> bytes:
    return np.random.default_rng(0).bytes(2048)


def bad_images() -> dict[str, bytes]:
    """Byte payloads that must each become one error row."""
    return {"truncated": truncated_jpeg(), "random": random_bytes(), "empty": b""}


def to_pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


#: (width, height): phone photos both ways, HD frames, web images, thumbnails, a square.
PHOTO_SIZES = [
    (4032, 3024),
    (3024, 4032),
    (1920, 1080),
    (1080, 1920),
    (1024, 683),
    (640, 427),
    (333, 500),
    (97, 130),
    (224, 224),
]


@functools.cache
def photos() -> tuple[bytes, ...]:
    """Photo-sized, mostly non-square JPEGs (PHOTO_SIZES), a grey JPEG and an RGBA PNG: what
    parity with a reference computation is checked on."""
    jpegs = [
        encode(sample_image(i, size), "JPEG", quality=85) for i, size in enumerate(PHOTO_SIZES)
    ]
    extra = [
        encode(sample_image(50, (800, 1200), "L"), "JPEG", quality=85),
        encode(sample_image(51, (1200, 700), "RGBA"), "PNG"),
    ]
    return tuple(jpegs + extra)
