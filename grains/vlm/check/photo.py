"""The photo of a hallucination check: refuse a text-only model, decode and check the image, and give it a content
digest so one photo has one id however it came (path, bytes or PIL image)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grains.errors import InputError

if TYPE_CHECKING:
    from grains.models import LoadedModel


def image_digest(image: Any) -> str:
    """A short content hash of a decoded image (size and RGB pixels), so one photo has one id however it came.

    Args:
        image: a PIL image.

    Returns:
        16 hex digits.

    Example:
        >>> image_digest(Image.new("RGB", (4, 4)))
        '800f83cd145e727a'
    """
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()[:16]


def open_photo(lm: LoadedModel, image: Any) -> tuple[Any, dict[str, Any]]:
    """The photo as a checked RGB image, and what the report says about it; refuses a text-only model.

    Args:
        lm: the loaded model (must be a vision-language model).
        image: a file path, bytes or PIL image.

    Returns:
        (the RGB PIL image, {"name", "width", "height", "digest"}).

    Example:
        >>> pil, info = open_photo(lm, "assets/images/coffee.jpg")
        >>> info["name"]
        'coffee.jpg'
    """
    from grains.images import load_image

    if not getattr(lm, "is_vlm", False):
        raise InputError(f"{lm.model_id} is a text-only model: a hallucination check needs a vision-language model "
                         "(e.g. tiny-random-llava, or llava-hf/llava-v1.6-mistral-7b-hf).")
    if image is None:
        raise InputError("Give a photo to check.")
    pil = load_image(image)
    name = Path(image).name if isinstance(image, str | Path) else "image"
    return pil, {"name": name, "width": pil.width, "height": pil.height, "digest": image_digest(pil)}
