"""The VLM adapter base class: a vision-language model whose image features are scattered into image-token slots
found by id, its prompt encoding (processor, image / special / content masks, layout) and its pixel baseline.
Families subclass it (grains.vlm.adapters.llava, qwen_vl, idefics3, gemma3); grid geometry lives in
grains.vlm.adapters.layout."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grains.adapters import TextAdapter
from grains.errors import ImageError, InputError, ModelLoadError
from grains.prompts import PromptEncoding, PromptStyle, check_text, token_strings
from grains.vlm.adapters.layout import image_summary

LAYOUT_KEY = "image_layout"
SOURCE_KEY = "_one_example"  # expanded extras keep the single example they came from (expansion is idempotent)
_NOT_MODEL_INPUTS = {"input_ids", "attention_mask", "offset_mapping", "text_replacement_offsets",
                     "mm_token_type_ids", "token_type_ids", LAYOUT_KEY, SOURCE_KEY}


def as_pil_image(image: Any) -> Any:
    """A decoded RGB PIL image from a PIL image, a path, bytes or an HxW(x3) array (grains.images.load_image does
    the checks: size caps, truncation, EXIF orientation).

    Args:
        image: a PIL image, a file path, bytes, or an HxW / HxWx3 array (floats in [0, 1] are scaled to 0-255).

    Returns:
        The RGB PIL image; anything else raises ImageError.

    Example:
        >>> as_pil_image(np.zeros((8, 8, 3), dtype=np.uint8)).size
        (8, 8)
    """
    from PIL import Image

    from grains.images import load_image

    if hasattr(image, "shape") and not isinstance(image, Image.Image) and len(image.shape) in (2, 3):
        import numpy as np

        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.size and arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        try:
            image = Image.fromarray(arr)
        except (TypeError, ValueError) as exc:
            raise ImageError("The image array must be HxW or HxWx3.") from exc
    if not isinstance(image, (Image.Image, str, bytes, bytearray)) and not hasattr(image, "__fspath__"):
        raise ImageError("The image must be a PIL image, an image file path or an HxWx3 array.")
    pil = load_image(image)
    if pil.width < 1 or pil.height < 1:
        raise ImageError("The image is empty.")
    return pil


class VLMAdapter(TextAdapter):
    """Base class: a vision-language model whose image features are scattered into image-token slots.

    Subclasses (one module per family) give `image_features`, `pixel_token_scores` and `layout`; `adapter_for(model)`
    picks the right one.

    Args:
        model: the loaded transformers vision-language model.

    Example:
        >>> adapter = adapter_for(model)
        >>> enc = adapter.encode_prompt(processor, "What is on the table?", "chat", image="photo.jpg")
        >>> sum(enc.image_mask) == len(enc.extras["image_layout"]["views"][0]["cells"])
        True
    """

    is_vlm = True
    family = "vlm"
    # keys of the processor output whose first dimension is already the flattened patch list (not the batch)
    flat_keys: tuple[str, ...] = ()

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = self.language_model().layers
        self.image_token_id = int(model.config.image_token_id)

    # ----- model structure -------------------------------------------------------------------------------------
    def language_model(self) -> nn.Module:
        """The decoder stack (its `.layers` are what steering hooks)."""
        return self.model.model.language_model

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        """Projected image features [N_image_tokens, D] for ONE example, in image-token order."""
        raise NotImplementedError

    # ----- embeddings and forward ------------------------------------------------------------------------------
    def embed_ids(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> torch.Tensor:
        """Token embeddings with the image features scattered into the image-token slots (found by id)."""
        ids = input_ids.to(self.input_device)
        if not bool((ids == self.image_token_id).any()):
            return self.text_embeddings(ids)
        if not extras or extras.get("pixel_values") is None:
            raise InputError("The prompt has image tokens but no image was given.")
        # expanded extras: run the vision tower once on the one example and repeat its features for every row
        source = extras.get(SOURCE_KEY, extras)
        return self.merge_image_features(ids, self.text_embeddings(ids), self.image_features(source))

    def text_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings only (image slots hold the placeholder's embedding, or row 0's if it is out of vocab)."""
        ids = input_ids.to(self.input_device)
        is_image = ids == self.image_token_id
        text_ids = ids.masked_fill(is_image, 0) if self.image_token_id >= self._vocab_size() else ids
        return self.model.get_input_embeddings()(text_ids)

    def merge_image_features(self, input_ids: torch.Tensor, embeds: torch.Tensor, feats: torch.Tensor
                             ) -> torch.Tensor:
        """Scatter image features [N, D] into the image-token slots of `embeds` (repeated for several rows)."""
        is_image = input_ids.to(embeds.device) == self.image_token_id
        n_slots = int(is_image.sum())
        feats = feats.to(embeds.device, embeds.dtype)
        if n_slots != feats.shape[0]:
            if n_slots % feats.shape[0] != 0:
                raise InputError(f"The prompt has {n_slots} image tokens but the image gives {feats.shape[0]}.")
            feats = feats.repeat(n_slots // feats.shape[0], 1)  # several rows of the same example
        return embeds.masked_scatter(is_image.unsqueeze(-1), feats)

    def _vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def forward_embeds(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       extras: dict[str, Any] | None = None, input_ids: torch.Tensor | None = None,
                       **kwargs: Any) -> Any:
        """Run from merged embeddings; no pixel values are passed, so the image is not merged again."""
        kwargs.update(self._position_kwargs(inputs_embeds, attention_mask, extras, input_ids))
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, **kwargs)

    def _position_kwargs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                         extras: dict[str, Any] | None, input_ids: torch.Tensor | None) -> dict[str, Any]:
        """Extra forward arguments the family needs besides embeddings (masks, 3-D positions)."""
        return {}

    def model_extras(self, extras: dict[str, Any] | None) -> dict[str, Any]:
        """Only the model inputs among the extras (the layout and per-token fields are dropped)."""
        return {k: v for k, v in (extras or {}).items() if k not in _NOT_MODEL_INPUTS and v is not None}

    def expand_extras(self, extras: dict[str, Any] | None, batch: int) -> dict[str, Any]:
        """Model inputs repeated for `batch` copies of one example (views where possible, no copy).

        Idempotent: already expanded extras are re-expanded from the example they came from, so passing them on to
        `generation_inputs` (which expands again) gives `batch` images, not batch squared."""
        source = (extras or {}).get(SOURCE_KEY, extras)
        out: dict[str, Any] = {SOURCE_KEY: source} if source else {}
        for key, value in self.model_extras(source).items():
            if not isinstance(value, torch.Tensor):
                out[key] = value
            elif key in self.flat_keys:
                out[key] = value.repeat(batch, *([1] * (value.dim() - 1)))
            else:
                out[key] = value.expand(batch, *value.shape[1:]) if value.shape[0] == 1 else value.repeat(
                    batch, *([1] * (value.dim() - 1)))
        return out

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        """model.generate kwargs for a batch of identical prompts: ids plus the image repeated to the batch."""
        ids = input_ids.to(self.input_device)
        out: dict[str, Any] = {"input_ids": ids}
        if bool((ids == self.image_token_id).any()):
            expanded = self.model_extras(self.expand_extras(extras, ids.shape[0]))
            out.update({k: v.contiguous().to(self.input_device) if isinstance(v, torch.Tensor) else v
                        for k, v in expanded.items()})
        return out

    # ----- prompts ---------------------------------------------------------------------------------------------
    def placeholder(self, processor: Any) -> str:
        """The text the processor expands into the image tokens."""
        return processor.image_token

    def format_text(self, processor: Any, prompt: str, style: PromptStyle, with_image: bool) -> tuple[str, str]:
        """(text with one image placeholder, the user's words to find in it)."""
        content = prompt.strip()
        holder = self.placeholder(processor) if with_image else ""
        if style == "chat":
            template = getattr(processor, "chat_template", None)
            if template:
                parts = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
                text = processor.apply_chat_template([{"role": "user", "content": parts}], tokenize=False,
                                                     add_generation_prompt=True)
            else:
                text = processor.tokenizer.apply_chat_template(
                    [{"role": "user", "content": (holder + "\n" if holder else "") + prompt}], tokenize=False,
                    add_generation_prompt=True)
            return text, content
        if style == "qa":
            body = prompt.rstrip() if prompt.rstrip().endswith("A:") else f"Q: {content}\nA:"
            return (holder + "\n" if holder else "") + body, content
        return (prompt if not holder or holder in prompt else holder + prompt), content

    def encode_prompt(self, processor: Any, prompt: str, style: PromptStyle, image: Any = None,
                      max_tokens: int = 2048) -> PromptEncoding:
        """Format the prompt with its image, run the processor, mark image / special / content tokens."""
        check_text(prompt, "prompt")
        tokenizer = processor.tokenizer
        pil = as_pil_image(image) if image is not None else None
        text, content = self.format_text(processor, prompt, style, with_image=pil is not None)
        bos = getattr(tokenizer, "bos_token", None)
        add_special = style != "chat" or (bool(bos) and not text.startswith(bos) and self._adds_bos(tokenizer))
        kwargs: dict[str, Any] = {"add_special_tokens": add_special, "return_offsets_mapping": True,
                                  "return_tensors": "pt"}
        if pil is not None:
            kwargs["return_text_replacement_offsets"] = True
            try:
                enc = processor(images=[pil], text=[text], **kwargs)
            except (ValueError, TypeError, RuntimeError) as exc:
                raise ImageError(f"The processor could not prepare this image: {str(exc).splitlines()[0]}") from exc
        else:
            enc = processor(text=[text], **kwargs)
        expanded = _apply_replacements(text, (enc.get("text_replacement_offsets") or [[]])[0])
        ids = enc["input_ids"][0].tolist()
        if len(ids) > max_tokens:
            raise InputError(f"The prompt with its image is {len(ids):,} tokens long; the limit is {max_tokens:,}.")
        offsets = [tuple(int(v) for v in o) for o in enc["offset_mapping"][0].tolist()]
        image_mask = [t == self.image_token_id for t in ids]
        special = _special_ids(tokenizer) - {self.image_token_id}
        special_mask = [(t in special) and not im for t, im in zip(ids, image_mask)]
        after = max((r["new_span"][1] for r in (enc.get("text_replacement_offsets") or [[]])[0]), default=0)
        start = expanded.find(content, after)
        if start < 0:
            start = expanded.find(content)
        c0, c1 = (start, start + len(content)) if start >= 0 else (0, 0)
        content_mask = [(not s) and (not im) and o[1] > o[0] and o[0] < c1 and o[1] > c0
                        for s, im, o in zip(special_mask, image_mask, offsets)]
        tokens = token_strings(tokenizer, ids, expanded, offsets)
        extras = {k: v for k, v in enc.items() if k not in _NOT_MODEL_INPUTS}
        if pil is not None:
            extras[LAYOUT_KEY] = self.layout(processor, extras, ids, (pil.width, pil.height))
            n_cells = len(extras[LAYOUT_KEY]["views"][0]["cells"])
            if n_cells != sum(image_mask):
                raise ModelLoadError(f"Internal layout mismatch for {self.family}: {n_cells} cells for "
                                     f"{sum(image_mask)} image tokens.")
        return PromptEncoding(text=expanded, ids=ids, tokens=tokens, offsets=offsets, content_mask=content_mask,
                              special_mask=special_mask, image_mask=image_mask, extras=extras)

    @staticmethod
    def _adds_bos(tokenizer: Any) -> bool:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
        return bos_id is not None and bool(ids) and ids[0] == bos_id

    # ----- pixels ----------------------------------------------------------------------------------------------
    def pixel_baseline(self, pixel_values: torch.Tensor, processor: Any, kind: str = "black") -> torch.Tensor:
        """The pixel IG baseline in the processor's normalised units: a black image, or the mean colour (0).

        Black is the default: a mean-colour (all-zero) input gives zero patch embeddings where a tower has no bias
        or class token before its first norm (Qwen2-VL), where IG is singular, and Idefics3 drops all-zero frames
        as batch padding."""
        if kind == "mean":
            return torch.zeros_like(pixel_values)
        ip = processor.image_processor
        channels = pixel_values.new_zeros(3)
        if getattr(ip, "do_normalize", True) and getattr(ip, "image_mean", None) is not None:
            mean = torch.tensor(ip.image_mean, dtype=pixel_values.dtype, device=pixel_values.device)
            std = torch.tensor(ip.image_std, dtype=pixel_values.dtype, device=pixel_values.device)
            channels = -mean / std
        return self._broadcast_channels(channels, pixel_values)

    def _broadcast_channels(self, channels: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """A per-channel value spread over a [..., C, H, W] pixel tensor."""
        return channels.view(3, 1, 1).expand_as(pixel_values).clone()

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        """Per image token, the sum of a pixel_values-shaped attribution over the pixels that token sees."""
        raise NotImplementedError

    # ----- image layout ----------------------------------------------------------------------------------------
    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        """{"image_size": (W, H), "views": [view, ...]} with one cell per image token in each view."""
        raise NotImplementedError

    def image_summary(self, result: Any, example: Any) -> tuple[list[list[float]] | None, dict[str, Any]]:
        """The prompt's image-token scores on the first view's grid, and the image share and other views (pure).

        Args:
            result: the AttributionResult of `example` (read only).
            example: the EncodedExample it was computed on (its prompt's image mask and layout).

        Returns:
            (image_grid, extra): the caller assigns `result.image_grid` and updates `result.extra` with them.

        Example:
            >>> grid, extra = lm.adapter.image_summary(result, example)
            >>> result.image_grid = grid; result.extra.update(extra)
        """
        response_total = sum(result.plus_scores[result.prompt_len:]) + sum(result.minus_scores[result.prompt_len:])
        return image_summary(list(result.scores), list(example.prompt.image_mask), response_total,
                             example.prompt.extras.get(LAYOUT_KEY), self.family)


def _apply_replacements(text: str, replacements: list[dict[str, Any]]) -> str:
    """The text after the processor expanded its image placeholders."""
    out, last = [], 0
    for rep in sorted(replacements, key=lambda r: r["span"][0]):
        s0, s1 = rep["span"]
        out.append(text[last:s0])
        out.append(rep["replacement"])
        last = s1
    out.append(text[last:])
    return "".join(out)


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, tok in added.items() if getattr(tok, "special", False))
    return ids


