from __future__ import annotations

import pytest
from PIL import Image

from embedding_job.api import HighBitDepth, PreprocessingSpec, SrcType, Transparency
from embedding_job.demo import encode, sample_image
from embedding_job.errors import RowError
from embedding_job.imaging.decode import decode_image, to_rgb
from embedding_job.io.cells import Base64Image, decode_base64, resolve_inline
from embedding_job.io.fetch import short_error
from tests.support.images import bad_images, good_images, to_pil


@pytest.mark.parametrize("name", sorted(good_images()))
def test_every_good_mode_decodes_to_rgb(name: str) -> None:
    image = decode_image(good_images()[name])
    assert image.mode == "RGB"
    assert image.size[0] > 0 and image.size[1] > 0


@pytest.mark.parametrize("name", sorted(good_images()))
def test_by_default_every_mode_is_pillows_own_rgb_conversion(name: str) -> None:
    # What the original component's image processor does with the image as Pillow opens it.
    data = good_images()[name]
    assert decode_image(data).tobytes() == to_pil(data).convert("RGB").tobytes()


def test_exif_orientation_is_applied_only_when_asked() -> None:
    assert decode_image(good_images()["exif"]).size == (64, 32)
    rotate = PreprocessingSpec(exif_orientation=True)
    assert decode_image(good_images()["exif"], options=rotate).size == (32, 64)


def test_sixteen_bit_is_clipped_unless_scaling_is_asked() -> None:
    data = good_images()["sixteen"]
    assert decode_image(data).convert("L").getextrema() == (0, 255)
    assert sum(decode_image(data).convert("L").histogram()[255:]) > 0.9 * 48 * 40
    scale = PreprocessingSpec(high_bit_depth=HighBitDepth.SCALE)
    low, high = decode_image(data, options=scale).convert("L").getextrema()
    assert low < 10 and high > 245
    assert max(decode_image(data, options=scale).convert("L").histogram()) < 0.1 * 48 * 40


def test_transparency_keeps_the_hidden_colour_unless_white_is_asked() -> None:
    white = PreprocessingSpec(transparency=Transparency.WHITE)
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (10, 20, 30)
    assert to_rgb(clear, white).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("LA", (4, 4), (100, 128))
    assert to_rgb(half, white).getpixel((0, 0)) == (177, 177, 177)
    palette = to_pil(good_images()["palette"])
    transparent = palette.info["transparency"]
    spot = next(
        xy
        for xy in ((x, y) for x in range(40) for y in range(40))
        if palette.getpixel(xy) == transparent
    )
    assert to_rgb(palette, white).getpixel(spot) == (255, 255, 255)
    assert to_rgb(palette).getpixel(spot) == palette.convert("RGB").getpixel(spot)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("truncated", "corrupt image"), ("random", "not an image"), ("empty", "empty image data")],
)
def test_bad_bytes_raise_a_short_row_error(name: str, reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        decode_image(bad_images()[name])


def test_decompression_bombs_are_refused() -> None:
    data = encode(sample_image(0, (200, 200)), "PNG")
    with pytest.raises(RowError, match="too large"):
        decode_image(data, max_pixels=100 * 100)


def test_base64_variants() -> None:
    import base64

    payload = good_images()["png"]
    plain = base64.b64encode(payload).decode()
    assert decode_base64(plain) == payload
    assert decode_base64("data:image/png;base64," + plain) == payload
    assert decode_base64(base64.urlsafe_b64encode(payload).decode().rstrip("=")) == payload
    assert decode_base64(plain[:40] + "\n" + plain[40:]) == payload
    assert decode_base64(plain.encode()) == payload  # bytes holding base64 text
    with pytest.raises(RowError, match="invalid base64"):
        decode_base64("not base64 at all!!")
    with pytest.raises(RowError, match="empty"):
        decode_base64("")
    # What the one-pass path refuses goes the general way, and is refused there too.
    for bad in (plain + "=", "=" + plain, plain[:-4] + "é" + plain[-3:], plain + "AB=C"):
        with pytest.raises(RowError, match="invalid base64"):
            decode_base64(bad)


def test_inline_cells() -> None:
    with pytest.raises(RowError, match="null"):
        resolve_inline(None, SrcType.IMAGE_BINARY)
    with pytest.raises(RowError, match="got text"):
        resolve_inline("abc", SrcType.IMAGE_BINARY)
    assert resolve_inline(b"\x01", SrcType.IMAGE_BINARY) == b"\x01"
    # base64 is decoded later, on a data-path thread; a bad one fails there, as its row's error.
    deferred = resolve_inline("not base64 at all!!", SrcType.IMAGE_BASE64)
    assert deferred == Base64Image("not base64 at all!!")
    with pytest.raises(RowError, match="invalid base64"):
        deferred.read()


def test_short_error_keeps_first_line_and_innermost_cause() -> None:
    exc = OSError("MiscTransient\n\nCaused by:\n  1: outer\n  2: Connection refused (os error 111)")
    assert short_error(exc) == "MiscTransient (Connection refused (os error 111))"
    throttled = OSError("DaftError::ComputeError Throttled when trying to read path `s3://b/k`")
    assert short_error(throttled) == "Throttled when trying to read path `s3://b/k`"
