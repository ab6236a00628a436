from __future__ import annotations

import pytest
from PIL import Image

from embedding_job.api import SrcType
from embedding_job.demo import encode, sample_image
from embedding_job.errors import RowError
from embedding_job.imaging.decode import decode_image, to_rgb
from embedding_job.io.cells import decode_base64, resolve_inline, short_error
from tests.support.images import bad_images, good_images


@pytest.mark.parametrize("name", sorted(good_images()))
def test_every_good_mode_decodes_to_rgb(name: str) -> None:
    image = decode_image(good_images()[name])
    assert image.mode == "RGB"
    assert image.size[0] > 0 and image.size[1] > 0


def test_exif_orientation_is_applied() -> None:
    assert decode_image(good_images()["exif"]).size == (32, 64)


def test_sixteen_bit_keeps_its_range_instead_of_clipping_to_white() -> None:
    image = decode_image(good_images()["sixteen"])
    low, high = image.convert("L").getextrema()
    assert low < 10 and high > 245


def test_transparency_is_composited_over_white() -> None:
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)


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
    with pytest.raises(RowError, match="invalid base64"):
        decode_base64("not base64 at all!!")
    with pytest.raises(RowError, match="empty"):
        decode_base64("")


def test_inline_cells() -> None:
    with pytest.raises(RowError, match="null"):
        resolve_inline(None, SrcType.IMAGE_BINARY)
    with pytest.raises(RowError, match="got text"):
        resolve_inline("abc", SrcType.IMAGE_BINARY)
    assert resolve_inline(b"\x01", SrcType.IMAGE_BINARY) == b"\x01"


def test_short_error_keeps_first_line_and_innermost_cause() -> None:
    exc = OSError("MiscTransient\n\nCaused by:\n  1: outer\n  2: Connection refused (os error 111)")
    assert short_error(exc) == "MiscTransient (Connection refused (os error 111))"
