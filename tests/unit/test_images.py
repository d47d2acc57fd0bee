"""Image loading refuses bombs, non-images and truncated files, and normalises every mode to RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grains.errors import ImageError
from grains.images import load_image

ROOT = Path(__file__).resolve().parents[2]


def _photo_path(name: str = "chelsea.jpg") -> Path:
    return ROOT / "assets" / "images" / name  # shipped with the project: a missing photo is a failure


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels but carries one tiny IDAT: a cheap decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg.endswith(".") and "\n" not in msg and "Traceback" not in msg
    return msg


def test_photo_loads_as_rgb_from_path_str_and_bytes() -> None:
    path = _photo_path()
    for source in (path, str(path), path.read_bytes()):
        img = load_image(source)
        assert img.mode == "RGB" and img.size == (451, 300)
        assert img.getpixel((10, 10)) == Image.open(path).convert("RGB").getpixel((10, 10))


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    data = _photo_path().read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as exc:
        load_image(broken)
    _one_sentence(exc)
    with pytest.raises(ImageError):
        load_image(data[: len(data) // 2])


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image, just text with a .png name\n")
    with pytest.raises(ImageError, match="not an image") as exc:
        load_image(text)
    _one_sentence(exc)
    with pytest.raises(ImageError):
        load_image(b"GIF89a but not really")


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageError, match="No image file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="No image file"):
        load_image(tmp_path)  # a directory


def test_png_header_bomb_20000_squared_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20_000, 20_000))
    assert bomb.stat().st_size < 200  # the file is tiny; only its header is huge
    with pytest.raises(ImageError, match="pixels") as exc:
        load_image(bomb)
    _one_sentence(exc)


def test_own_pixel_cap_applies_below_pils_limit() -> None:
    # 7000 x 7000 = 49 Mpx: under PIL's default bomb threshold (~89 Mpx) but over our 40 Mpx cap.
    assert 7000 * 7000 < Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="megapixels"):
        load_image(_png_header_only(7000, 7000))
    # a real, well-compressed single-colour PNG over a caller's smaller cap
    flat = _png_bytes(Image.new("RGB", (300, 300), (5, 5, 5)), optimize=True)
    assert len(flat) < 5_000
    with pytest.raises(ImageError, match="megapixels"):
        load_image(flat, max_pixels=50_000)
    assert load_image(flat).size == (300, 300)


def test_pil_image_source_is_capped_too() -> None:
    with pytest.raises(ImageError):
        load_image(Image.new("RGB", (100, 100)), max_pixels=1000)


def test_byte_cap(tmp_path: Path) -> None:
    data = _photo_path().read_bytes()
    with pytest.raises(ImageError, match="MB"):
        load_image(data, max_bytes=1000)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="MB"):
        load_image(path, max_bytes=1000)


def test_one_pixel_image_is_allowed() -> None:
    img = load_image(_png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))))
    assert img.size == (1, 1) and img.getpixel((0, 0)) == (1, 2, 3)


def test_greyscale_becomes_rgb_with_equal_channels() -> None:
    img = load_image(_png_bytes(Image.new("L", (4, 3), 77)))
    assert img.mode == "RGB" and img.getpixel((2, 1)) == (77, 77, 77)


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    img = load_image(_png_bytes(rgba))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white, not black or red
    assert img.getpixel((1, 1)) == (255, 0, 0)
    assert all(120 <= c <= 135 for c in img.getpixel((2, 2)))  # half-transparent black over white -> mid grey


def test_palette_with_transparency_becomes_rgb() -> None:
    pal = Image.new("P", (3, 3), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    img = load_image(_png_bytes(pal, transparency=0))
    assert img.getpixel((1, 1)) == (0, 200, 0)
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    arr = np.array([[0, 30000, 60000]], dtype=np.uint16)
    img = load_image(_png_bytes(Image.fromarray(arr)))
    values = [img.getpixel((x, 0))[0] for x in range(3)]
    assert values[0] == 0 and values[2] == 255 and 100 < values[1] < 160


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue())
    assert out.size == (10, 20)
    r, _, b = out.getpixel((5, 3))  # the left half ends up on top
    assert r > 200 and b < 60


def test_wrong_source_type_is_refused() -> None:
    with pytest.raises(ImageError):
        load_image(12345)  # type: ignore[arg-type]
