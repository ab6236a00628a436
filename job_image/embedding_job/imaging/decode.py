"""Bytes → RGB Pillow image, with EXIF orientation applied and decompression bombs refused."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from embedding_job.errors import RowError

#: Pillow's own default guard (~89 Mpx); larger images are refused as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

# A truncated file must be an error row, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_WHITE = (255, 255, 255)
_ORIENTATION = 0x0112
#: EXIF orientations that transpose the image (width and height swap).
_SWAPS_AXES = (5, 6, 7, 8)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes into an RGB image at full resolution.

    Raises RowError with a short reason for anything that is not a readable image.
    """
    return decode_scaled(data, max_pixels=max_pixels)[0]


def decode_scaled(
    data: bytes,
    *,
    min_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes into an RGB image, JPEGs reduced in the DCT domain when allowed.

    With ``min_size``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT, via
    Pillow's ``draft``) as long as both sides stay at least ``min_size`` pixels; other formats
    decode at full size. Returns the image and the (width, height) the image has at full
    resolution after EXIF orientation, so that resize targets are computed exactly as for a full
    decode. Raises RowError with a short reason for anything that is not a readable image.
    """
    if not data:
        raise RowError("empty image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise RowError(
                    f"image too large: {width}x{height} exceeds {max_pixels} pixels "
                    "(decompression bomb guard)"
                )
            if min_size is not None and image.format == "JPEG":
                # Keeps the mode; only picks the largest 1/s scale with both sides >= min_size.
                image.draft(None, (min_size, min_size))
            image.load()
    except RowError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RowError(f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise RowError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"corrupt image: {exc}") from None
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
        if orientation != 1:
            # In place: without an orientation tag exif_transpose would copy the whole image.
            ImageOps.exif_transpose(image, in_place=True)
            if orientation in _SWAPS_AXES:
                width, height = height, width
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block is this row's problem only
        raise RowError(f"bad EXIF data: {exc}") from None
    return to_rgb(image), (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white (as HF does)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values at 255 (a white image); scale the range instead.
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = 1.0 if array.size and float(np.nanmax(array)) <= 1.0 else 255.0
        scaled = np.nan_to_num(array) * (255.0 / peak)
    else:
        scaled = array / 257.0
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
