"""Bytes → RGB Pillow image, as the job's ``preprocessing`` section says; decompression bombs
and unreadable data are row errors.

Decoding comes in two steps so that a caller can decide between them: :func:`open_image` reads
only the header (the size the image will decode to), :func:`load_rgb` decodes the pixels.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from embedding_job.api import HighBitDepth, PreprocessingSpec, Transparency
from embedding_job.errors import RowError

#: Pillow's own default guard (~89 Mpx); larger images are refused as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485

#: What the original component does (see embedding_job.api.images).
ORIGINAL = PreprocessingSpec()

# A truncated file must be an error row, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_WHITE = (255, 255, 255)
_ORIENTATION = 0x0112
#: EXIF orientations that transpose the image (width and height swap).
_SWAPS_AXES = (5, 6, 7, 8)
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, options: PreprocessingSpec = ORIGINAL
) -> Image.Image:
    """Decode image bytes into an RGB image at full resolution.

    Raises RowError with a short reason for anything that is not a readable image.
    """
    return decode_scaled(data, max_pixels=max_pixels, options=options)[0]


def decode_scaled(
    data: bytes,
    *,
    min_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: PreprocessingSpec = ORIGINAL,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes into an RGB image, JPEGs reduced in the DCT domain when allowed.

    See :func:`open_image` and :func:`load_rgb`, which this runs one after the other.
    """
    image, full_size = open_image(data, min_size=min_size, max_pixels=max_pixels)
    return load_rgb(image, full_size, options)


def open_image(
    data: bytes, *, min_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """Read an image's header: the image, not yet decoded, and its (width, height).

    With ``min_size``, a JPEG is set to decode at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT,
    via Pillow's ``draft``) as long as both sides stay at least ``min_size`` pixels; other
    formats decode at full size. ``image.size`` is then the size it will decode to, and the
    (width, height) returned the full one. Raises RowError for data that is not an image and
    for images over ``max_pixels``.
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
    except RowError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RowError(f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise RowError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"corrupt image: {exc}") from None
    return image, (width, height)


def load_rgb(
    image: Image.Image, full_size: tuple[int, int], options: PreprocessingSpec = ORIGINAL
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode an opened image into RGB; returns it and its full (width, height), swapped when
    ``options`` apply an EXIF rotation that transposes it. RowError if the data is corrupt."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"corrupt image: {exc}") from None
    width, height = full_size
    if options.exif_orientation:
        try:
            orientation = image.getexif().get(_ORIENTATION, 1)
            if orientation != 1:
                # In place: without an orientation tag exif_transpose would copy the image.
                ImageOps.exif_transpose(image, in_place=True)
                if orientation in _SWAPS_AXES:
                    width, height = height, width
        except Exception as exc:  # noqa: BLE001 - a broken EXIF block is this row's problem only
            raise RowError(f"bad EXIF data: {exc}") from None
    return to_rgb(image, options), (width, height)


def to_rgb(image: Image.Image, options: PreprocessingSpec = ORIGINAL) -> Image.Image:
    """Convert any Pillow mode to RGB. By default exactly Pillow's ``convert("RGB")`` (what the
    original component's image processor applies); ``options`` may composite transparency over
    white and scale 16-bit ranges instead."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_DEPTH and options.high_bit_depth is HighBitDepth.SCALE:
        return _high_depth_to_rgb(image)
    if options.transparency is Transparency.WHITE and _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    # A palette or RGB/L image may name one colour transparent (PNG tRNS, GIF).
    return "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info


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
