"""Safe loading of user-supplied images: size caps before decoding, full decode, EXIF orientation, RGB output."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grains.errors import ImageError

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

ImageSource = str | Path | bytes | bytearray | Image.Image


def _read_bytes(source: str | Path | bytes | bytearray, max_bytes: int) -> bytes:
    """The raw bytes of a file path or a byte string, refusing anything larger than max_bytes."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No image file was found at {path}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"The image file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"The image file could not be read ({exc.strerror or exc}).") from exc
    if not data:
        raise ImageError("The image file is empty.")
    if len(data) > max_bytes:
        raise ImageError(f"The image file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    return data


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:g} megapixels."
        )


def _open_and_decode(data: bytes, max_pixels: int) -> Image.Image:
    """Open from bytes, check the declared size from the header, then decode every pixel."""
    with warnings.catch_warnings():
        # PIL's own bomb guard (Image.MAX_IMAGE_PIXELS) warns first and raises past twice the limit: make both errors.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError("The image declares too many pixels to decode safely (a possible decompression bomb).") \
                from exc
        except UnidentifiedImageError as exc:
            raise ImageError("The file is not an image in a format that can be read (try PNG or JPEG).") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError("The image file is damaged and could not be opened.") from exc
        _check_pixels(img.size, max_pixels)  # header only: nothing has been decoded yet
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError("The image declares too many pixels to decode safely (a possible decompression bomb).") \
                from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError("The image file is truncated or damaged and could not be decoded.") from exc
    return img


def _wide_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale scaled to 8 bits by its own range (PIL's convert would clip)."""
    arr = np.asarray(img, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scaled = np.zeros_like(arr) if hi <= lo else (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any PIL image: transparency composited on white, palettes expanded, wide greyscale rescaled."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _wide_to_l(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode in ("P", "L", "RGB")
                                                                    and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "RGB":
        return img.copy()
    return img.convert("RGB")


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Load a user's image (file path, bytes or PIL image) as a fully decoded RGB image.

    Refuses files over `max_bytes` and images over `max_pixels` (checked from the header before decoding),
    decompression bombs, non-images and truncated files, each with an ImageError. Applies the EXIF
    orientation; greyscale, palette and RGBA images come back as RGB (transparency composited on white).
    Animated images give their first frame.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels)
        try:
            source.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError("The image is truncated or damaged and could not be decoded.") from exc
        img = source
    elif isinstance(source, str | Path | bytes | bytearray):
        img = _open_and_decode(_read_bytes(source, max_bytes), max_pixels)
    else:
        raise ImageError(f"An image must be a file path, bytes or a PIL image, not {type(source).__name__}.")
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block should not cost the user their image: keep it unrotated
        oriented = img
    if oriented is None:  # defensive: older Pillow returned None for in_place calls
        oriented = img
    return to_rgb(oriented)
