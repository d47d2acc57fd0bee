"""Per-family VLM adapters: the language model's decoder layers, merged input embeddings, image-token positions, and
where each image token sits on the picture as the processor saw it.

Every adapter attributes on the merged input embeddings: `embed_ids` runs the vision tower and projector and scatters
the image features into the image-token slots found BY ID (never by embedding equality); `forward_embeds` runs the
language model from those embeddings without pixel values, so the image is never merged twice. The per-token layout
(`image_layout` in a prompt's extras) maps each image token to a cell of one or more "views" of the image; the
first view is the heatmap (`result.image_grid`), the others go to `result.extra["views"]`. Boxes are in
original-image pixel coordinates (x0, y0, x1, y1) and may reach outside the picture where the processor padded it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from grains.adapters import TextAdapter
from grains.errors import ImageError, InputError, ModelLoadError
from grains.prompts import PromptEncoding, PromptStyle, check_text, token_strings

SUPPORTED_FAMILIES = [
    "LLaVA-1.5 (LlavaForConditionalGeneration)",
    "LLaVA-NeXT / LLaVA-1.6 (LlavaNextForConditionalGeneration)",
    "Qwen2-VL / Qwen2.5-VL (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration)",
    "Idefics3 / SmolVLM (Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration)",
    "Gemma-3 multimodal (Gemma3ForConditionalGeneration)",
]
LAYOUT_KEY = "image_layout"
SOURCE_KEY = "_one_example"  # expanded extras keep the single example they came from (expansion is idempotent)
_NOT_MODEL_INPUTS = {"input_ids", "attention_mask", "offset_mapping", "text_replacement_offsets",
                     "mm_token_type_ids", "token_type_ids", LAYOUT_KEY, SOURCE_KEY}


def as_pil_image(image: Any) -> Any:
    """A decoded RGB PIL image from a PIL image, a path, bytes or an HxW(x3) array (grains.images.load_image does
    the checks: size caps, truncation, EXIF orientation); anything else raises ImageError."""
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


def _view(name: str, shape: tuple[int, int], cells: list[int], box: tuple[float, float, float, float],
          processed_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """One view of the image: a rows x cols grid, each image token's flat cell (-1: none), its box on the image."""
    return {"name": name, "shape": [int(shape[0]), int(shape[1])], "cells": [int(c) for c in cells],
            "box": [float(v) for v in box], "processed_size": list(processed_size) if processed_size else None}


class VLMAdapter(TextAdapter):
    """Base class: a vision-language model whose image features are scattered into image-token slots."""

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

    def attach_image_scores(self, result: Any, example: Any) -> None:
        """Lay the prompt's image-token scores on the first view's grid; image share and the other views in extra."""
        layout = example.prompt.extras.get(LAYOUT_KEY)
        scores = list(result.scores)
        positions = [i for i, m in enumerate(example.prompt.image_mask) if m]
        image_scores = [float(scores[i]) for i in positions]
        response_total = sum(result.plus_scores[result.prompt_len:]) + sum(result.minus_scores[result.prompt_len:])
        image_sum = sum(image_scores)
        text_sum = sum(s for i, s in enumerate(scores) if not example.prompt.image_mask[i]) + response_total
        abs_image = sum(abs(s) for s in image_scores)
        abs_all = sum(abs(s) for s in scores)
        extra = {"image_token_count": len(positions), "image_share": abs_image / abs_all if abs_all > 0 else 0.0,
                 "image_score": image_sum, "text_score": text_sum, "family": self.family}
        if layout is None:
            result.extra.update(extra)
            return
        grids = {}
        for view in layout["views"]:
            rows, cols = view["shape"]
            grid = torch.zeros(rows * cols, dtype=torch.float64)
            for score, cell in zip(image_scores, view["cells"]):
                if cell >= 0:
                    grid[cell] += score
            grids[view["name"]] = grid.view(rows, cols).tolist()
        main = layout["views"][0]
        result.image_grid = grids[main["name"]]
        off_grid = sum(s for s, c in zip(image_scores, main["cells"]) if c < 0)
        extra.update({
            "grid_shape": list(main["shape"]), "grid_view": main["name"], "crop_box": list(main["box"]),
            "image_size": list(layout["image_size"]), "processed_size": main.get("processed_size"),
            "off_grid_score": off_grid,
            "views": {v["name"]: {"grid": grids[v["name"]], "shape": v["shape"], "box": v["box"]}
                      for v in layout["views"][1:]},
        })
        result.extra.update(extra)


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


def _size_dict(size: Any) -> dict[str, Any]:
    if size is None:
        return {}
    if isinstance(size, dict):
        return dict(size)
    return {k: getattr(size, k) for k in ("height", "width", "shortest_edge", "longest_edge")
            if getattr(size, k, None) is not None}


def _block_sums(frames: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[F, C, H, W] -> per frame, sums over channels and each of rows x cols pixel blocks, row-major: [F*rows*cols]."""
    f, _, h, w = frames.shape
    summed = frames.sum(dim=1)[:, : (h // rows) * rows, : (w // cols) * cols]
    return summed.reshape(f, rows, h // rows, cols, w // cols).sum(dim=(2, 4)).reshape(-1)


def resize_crop_box(width: int, height: int, image_processor: Any) -> tuple[tuple[float, ...], tuple[int, int]]:
    """Box (original pixels) seen after CLIP-style optional pad-to-square, resize and centre crop; and its px size."""
    x0, y0, w, h = 0.0, 0.0, float(width), float(height)
    if getattr(image_processor, "do_pad", False):  # LLaVA pads to a square first
        side = max(w, h)
        x0, y0, w, h = (w - side) / 2, (h - side) / 2, side, side
    size = _size_dict(getattr(image_processor, "size", None))
    if getattr(image_processor, "do_resize", True) and size:
        if "shortest_edge" in size and size.get("shortest_edge"):
            scale = size["shortest_edge"] / min(w, h)
            sx = sy = scale
        else:
            sx, sy = size["width"] / w, size["height"] / h
    else:
        sx = sy = 1.0
    rw, rh = w * sx, h * sy
    crop = _size_dict(getattr(image_processor, "crop_size", None))
    if getattr(image_processor, "do_center_crop", False) and crop:
        cw, ch = min(crop["width"], rw), min(crop["height"], rh)
        cx, cy = x0 + w / 2, y0 + h / 2
        box = (cx - cw / sx / 2, cy - ch / sy / 2, cx + cw / sx / 2, cy + ch / sy / 2)
        return box, (int(round(ch)), int(round(cw)))
    return (x0, y0, x0 + w, y0 + h), (int(round(rh)), int(round(rw)))


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: one CLIP view (pad-to-square if the processor does it, shortest-edge resize, centre crop), its
    patch grid row-major; with the "full" feature strategy the CLS token is off-grid."""

    family = "llava"

    def _vision_args(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"vision_feature_layer": cfg.vision_feature_layer,
                "vision_feature_select_strategy": cfg.vision_feature_select_strategy}

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  return_dict=True, **self._vision_args())
        return torch.cat(list(out.pooler_output), dim=0)

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        main = extras[LAYOUT_KEY]["views"][0]
        rows, cols = main["shape"]
        grid = _block_sums(attr.reshape(-1, *attr.shape[-3:]), rows, cols)
        return torch.cat([grid.new_zeros(len(main["cells"]) - grid.numel()), grid])  # CLS ("full"): no pixels

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        n = sum(t == self.image_token_id for t in ids)
        ph, pw = extras["pixel_values"].shape[-2:]
        patch = int(self.model.config.vision_config.patch_size)
        rows, cols = int(ph) // patch, int(pw) // patch
        box, processed = resize_crop_box(image_size[0], image_size[1], processor.image_processor)
        extra = n - rows * cols
        cells = [-1] * extra + list(range(rows * cols))
        return {"image_size": list(image_size), "views": [_view("crop", (rows, cols), cells, box, processed)]}


def _unpad_range(original: tuple[int, int], current: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows [r0, r1) and cols [c0, c1) that LLaVA-NeXT's unpad_image keeps of a (rows, cols) feature grid."""
    oh, ow = original
    ch, cw = current
    if ow / oh > cw / ch:
        new_h = int(round(oh * (cw / ow), 7))
        pad = (ch - new_h) // 2
        return pad, ch - pad, 0, cw
    new_w = int(round(ow * (ch / oh), 7))
    pad = (cw - new_w) // 2
    return 0, ch, pad, cw - pad


class LlavaNextAdapter(LlavaAdapter):
    """LLaVA-NeXT (anyres): the heatmap is the high-resolution tiles STITCHED into one grid, unpadded as the model
    does (so it covers the picture, not the letterbox); the per-row newline tokens are off-grid. The low-resolution
    base view (the whole image squashed to one tile) is the second view, "base"."""

    family = "llava_next"

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(
            pixel_values=extras["pixel_values"].to(self.input_device), image_sizes=extras["image_sizes"],
            return_dict=True, **self._vision_args())
        return torch.cat(list(out.pooler_output), dim=0)

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        from transformers.image_processing_utils import select_best_resolution

        cfg = self.model.config
        width, height = image_size
        n = sum(t == self.image_token_id for t in ids)
        tile = int(cfg.vision_config.image_size)
        patch = int(cfg.vision_config.patch_size)
        side = tile // patch
        pinpoints = [list(p) for p in cfg.image_grid_pinpoints]
        bh, bw = select_best_resolution((height, width), pinpoints)
        r0, r1, c0, c1 = _unpad_range((height, width), ((bh // tile) * side, (bw // tile) * side))
        rows, cols = r1 - r0, c1 - c0
        base_count = n - rows * (cols + 1)
        base_cells = [-1] * (base_count - side * side) + list(range(side * side))
        tile_cells = [-1] * base_count
        for r in range(rows):
            tile_cells += [r * cols + c for c in range(cols)] + [-1]
        # canvas pixels -> original pixels: the image was resized to fit (bh, bw) and centred
        scale = min(bw / width, bh / height)
        if bw / width < bh / height:
            nw, nh = bw, min(math.ceil(height * scale), bh)
        else:
            nh, nw = bh, min(math.ceil(width * scale), bw)
        px, py = (bw - nw) // 2, (bh - nh) // 2
        fx, fy = width / nw, height / nh
        box = ((c0 * patch - px) * fx, (r0 * patch - py) * fy, (c1 * patch - px) * fx, (r1 * patch - py) * fy)
        base_cells_full = base_cells + [-1] * (n - len(base_cells))
        views = [_view("tiles", (rows, cols), tile_cells, box, (bh, bw)),
                 _view("base", (side, side), base_cells_full, (0.0, 0.0, float(width), float(height)), (tile, tile))]
        anyres = {"tiles": [bh // tile, bw // tile], "unpad": [r0, r1, c0, c1], "side": side,
                  "base_count": base_count}
        return {"image_size": list(image_size), "views": views, "anyres": anyres}

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        info = extras[LAYOUT_KEY]["anyres"]
        side, (nph, npw), (r0, r1, c0, c1) = info["side"], info["tiles"], info["unpad"]
        frames = attr.reshape(-1, *attr.shape[-3:])
        base = _block_sums(frames[:1], side, side)
        tiles = _block_sums(frames[1:1 + nph * npw], side, side).reshape(nph, npw, side, side)
        stitched = tiles.permute(0, 2, 1, 3).reshape(nph * side, npw * side)[r0:r1, c0:c1]
        with_newlines = torch.cat([stitched, stitched.new_zeros(stitched.shape[0], 1)], dim=1).reshape(-1)
        lead = base.new_zeros(info["base_count"] - base.numel())
        return torch.cat([lead, base, with_newlines])


class Qwen2VLAdapter(VLMAdapter):
    """Qwen2-VL / Qwen2.5-VL: dynamic resolution. The image is resized (no crop) to multiples of patch x merge; each
    visual token is one 2x2 block of patches, row-major on the (grid_h/2, grid_w/2) merged grid. Forward passes get
    3-D M-RoPE position ids computed from input_ids and image_grid_thw."""

    family = "qwen2_vl"
    flat_keys = ("pixel_values",)

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  image_grid_thw=extras["image_grid_thw"].to(self.input_device),
                                                  return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)

    def _position_kwargs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                         extras: dict[str, Any] | None, input_ids: torch.Tensor | None) -> dict[str, Any]:
        if input_ids is None:
            raise InputError("Qwen2-VL needs input_ids to place its 3-D positions.")
        ids = input_ids.to(inputs_embeds.device)
        has_image = (ids == self.image_token_id).any(dim=1)
        grid = (extras or {}).get("image_grid_thw")
        mask = attention_mask.to(ids.device) if attention_mask is not None else torch.ones_like(ids)
        if grid is None or not bool(has_image.any()):
            # always explicit: without positions the model would reuse rope deltas cached by an earlier generate()
            text_positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
            return {"position_ids": text_positions.unsqueeze(0).expand(3, -1, -1)}
        grid = grid.to(ids.device)
        n_rows_with_image = int(has_image.sum())
        if grid.shape[0] != n_rows_with_image:  # one example's grid, repeated for every row that has the image
            grid = grid[:1].repeat(n_rows_with_image, 1)
        mm_types = (ids == self.image_token_id).int()
        position_ids, _ = self.model.model.get_rope_index(ids, mm_token_type_ids=mm_types, image_grid_thw=grid,
                                                          attention_mask=mask)
        return {"position_ids": position_ids}

    def placeholder(self, processor: Any) -> str:
        vocab = processor.tokenizer.get_vocab()
        wrap = "<|vision_start|>" in vocab and "<|vision_end|>" in vocab
        return f"<|vision_start|>{processor.image_token}<|vision_end|>" if wrap else processor.image_token

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        out = super().generation_inputs(input_ids, extras)
        if "pixel_values" in out:
            out["mm_token_type_ids"] = (out["input_ids"] == self.image_token_id).int()
        return out

    def _broadcast_channels(self, channels: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        # each row is one patch flattened as (C, T, ps, ps): channel c is a contiguous block
        per_channel = pixel_values.shape[1] // 3
        return channels.repeat_interleave(per_channel).unsqueeze(0).expand_as(pixel_values).clone()

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        merge = int(self.model.config.vision_config.spatial_merge_size)
        return attr.sum(dim=1).reshape(-1, merge * merge).sum(dim=1)  # each token = merge^2 consecutive patches

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        t, gh, gw = (int(v) for v in extras["image_grid_thw"][0].tolist())
        merge = int(self.model.config.vision_config.spatial_merge_size)
        patch = int(self.model.config.vision_config.patch_size)
        rows, cols = gh // merge, gw // merge
        cells = [k % (rows * cols) for k in range(t * rows * cols)]  # frames of one image share the grid
        box = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        return {"image_size": list(image_size),
                "views": [_view("dynamic", (rows, cols), cells, box, (gh * patch, gw * patch))]}


class Idefics3Adapter(VLMAdapter):
    """Idefics3 / SmolVLM: the image is resized to whole tiles and split into rows x cols tiles plus a global view
    (the whole image squashed to one tile). The heatmap STITCHES the tiles into one grid (each tile k x k tokens after
    the pixel shuffle, row-major); the global view is the second view, "global". Unsplit images have only "global"."""

    family = "idefics3"

    def language_model(self) -> nn.Module:
        return self.model.model.text_model

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        mask = extras.get("pixel_attention_mask")
        out = self.model.model.get_image_features(
            pixel_values=extras["pixel_values"].to(self.input_device),
            pixel_attention_mask=mask.to(self.input_device) if mask is not None else None, return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        cfg = self.model.config
        k = int(cfg.vision_config.image_size) // int(cfg.vision_config.patch_size) // int(cfg.scale_factor)
        return _block_sums(attr.reshape(-1, *attr.shape[-3:]), k, k)  # frames: tiles row-major, then global

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        cfg = self.model.config
        k = int(cfg.vision_config.image_size) // int(cfg.vision_config.patch_size) // int(cfg.scale_factor)
        seq = k * k
        n = sum(t == self.image_token_id for t in ids)
        tok = processor.tokenizer
        present = set(ids)
        rows = cols = 0
        for r in range(1, 7):
            for c in range(1, 7):
                tid = tok.convert_tokens_to_ids(f"<row_{r}_col_{c}>")
                if isinstance(tid, int) and tid in present and tid != tok.unk_token_id:
                    rows, cols = max(rows, r), max(cols, c)
        tile_px = int(cfg.vision_config.image_size)
        full = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        global_cells = [-1] * (n - seq) + list(range(seq))
        global_view = _view("global", (k, k), global_cells, full, (tile_px, tile_px))
        if rows * cols == 0 or n != (rows * cols + 1) * seq:
            return {"image_size": list(image_size), "views": [global_view]}
        cells = []
        for r in range(rows):
            for c in range(cols):
                cells += [(r * k + i) * (cols * k) + c * k + j for i in range(k) for j in range(k)]
        cells += [-1] * seq
        tiles = _view("tiles", (rows * k, cols * k), cells, full, (rows * tile_px, cols * tile_px))
        return {"image_size": list(image_size), "views": [tiles, global_view]}


class Gemma3Adapter(VLMAdapter):
    """Gemma-3: the image is squashed to the SigLIP size and its patches average-pooled to a k x k grid (k^2 =
    mm_tokens_per_image), row-major. Image tokens attend to each other both ways: forward passes get token_type_ids.
    With pan & scan on, only the first (whole-image) block is laid out; the crops' tokens are off-grid."""

    family = "gemma3"

    def image_features(self, extras: dict[str, Any]) -> torch.Tensor:
        out = self.model.model.get_image_features(pixel_values=extras["pixel_values"].to(self.input_device),
                                                  return_dict=True)
        feats = out.pooler_output
        return feats.reshape(-1, feats.shape[-1])

    def _position_kwargs(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                         extras: dict[str, Any] | None, input_ids: torch.Tensor | None) -> dict[str, Any]:
        if input_ids is None:
            return {}
        return {"token_type_ids": (input_ids.to(inputs_embeds.device) == self.image_token_id).long()}

    def generation_inputs(self, input_ids: torch.Tensor, extras: dict[str, Any] | None = None) -> dict[str, Any]:
        out = super().generation_inputs(input_ids, extras)
        out["token_type_ids"] = (out["input_ids"] == self.image_token_id).long()
        return out

    def placeholder(self, processor: Any) -> str:
        return processor.boi_token

    def pixel_token_scores(self, attr: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        k = int(round(math.sqrt(int(self.model.config.mm_tokens_per_image))))
        return _block_sums(attr.reshape(-1, *attr.shape[-3:]), k, k)

    def layout(self, processor: Any, extras: dict[str, Any], ids: list[int], image_size: tuple[int, int]
               ) -> dict[str, Any]:
        n = sum(t == self.image_token_id for t in ids)
        k = int(round(math.sqrt(int(self.model.config.mm_tokens_per_image))))
        cells = [c if c < k * k else -1 for c in range(n)]
        ph, pw = extras["pixel_values"].shape[-2:]
        box = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        return {"image_size": list(image_size), "views": [_view("squash", (k, k), cells, box, (int(ph), int(pw)))]}


_BY_NAME: dict[str, type[VLMAdapter]] = {
    "LlavaForConditionalGeneration": LlavaAdapter, "llava": LlavaAdapter,
    "LlavaNextForConditionalGeneration": LlavaNextAdapter, "llava_next": LlavaNextAdapter,
    "Qwen2VLForConditionalGeneration": Qwen2VLAdapter, "qwen2_vl": Qwen2VLAdapter,
    "Qwen2_5_VLForConditionalGeneration": Qwen2VLAdapter, "qwen2_5_vl": Qwen2VLAdapter,
    "Idefics3ForConditionalGeneration": Idefics3Adapter, "idefics3": Idefics3Adapter,
    "SmolVLMForConditionalGeneration": Idefics3Adapter, "smolvlm": Idefics3Adapter,
    "Gemma3ForConditionalGeneration": Gemma3Adapter, "gemma3": Gemma3Adapter,
}


def adapter_class_for_name(name: str) -> type[VLMAdapter] | None:
    """The adapter class for an architecture (class name) or config model_type, or None."""
    return _BY_NAME.get(name)


def adapter_for(model: nn.Module) -> VLMAdapter:
    """The GrAInS adapter for a loaded VLM; an unsupported class raises ModelLoadError naming the supported ones."""
    cls = adapter_class_for_name(type(model).__name__)
    if cls is None:
        raise ModelLoadError(f"{type(model).__name__} is not a supported vision-language architecture; "
                             f"supported: {', '.join(SUPPORTED_FAMILIES)}.")
    return cls(model)
