"""VLM adapters on the tiny models: merged embeddings equal the model's own merge, image tokens, patch-grid layouts
for two aspect ratios (checked against the processors' resize/tile rules worked out by hand), generation inputs."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from grains.errors import ImageError, ModelLoadError
from grains.models import load_model
from grains.vlm.adapters import LAYOUT_KEY, SUPPORTED_FAMILIES, adapter_for, as_pil_image

IMAGES = str(Path(__file__).resolve().parents[2] / "assets" / "images")
QUESTION = "Is there a spoon in the image?"
FAMILIES = ["tiny-random-llava", "tiny-random-llava-next", "tiny-random-qwen2-vl", "tiny-random-idefics3",
            "tiny-random-gemma3"]
# (grid rows, cols) for coffee.jpg (600x400, wide) and its 200x400 left crop (tall), from each processor's rules:
# LLaVA: 48 px centre crop / 8 px patches; LLaVA-NeXT: best pinpoint 64x64 (wide) or 64x32 (tall), 4x4 patches per
# 32 px tile, unpadded (wide: rows 1..7 of 8); Qwen2-VL: smart_resize to 64x112 / 128x64, 8 px patches, 2x2 merge;
# Idefics3: 96x96 / 96x48 whole tiles of 48 px, 3x3 tokens per tile; Gemma-3: fixed 4x4 pool.
EXPECTED_GRIDS = {
    "tiny-random-llava": ((6, 6), (6, 6)),
    "tiny-random-llava-next": ((6, 8), (8, 4)),
    "tiny-random-qwen2-vl": ((4, 7), (8, 4)),
    "tiny-random-idefics3": ((6, 6), (6, 3)),
    "tiny-random-gemma3": ((4, 4), (4, 4)),
}


@pytest.fixture(scope="module")
def images():
    wide = Image.open(f"{IMAGES}/coffee.jpg").convert("RGB")
    return {"wide": wide, "tall": wide.crop((0, 0, 200, 400))}


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request):
    return load_model(request.param)


def _native_kwargs(lm, ids, extras):
    kwargs = lm.adapter.model_extras(extras)
    if lm.adapter.family == "qwen2_vl":
        kwargs["mm_token_type_ids"] = (ids == lm.adapter.image_token_id).int()
    if lm.adapter.family == "gemma3":
        kwargs["token_type_ids"] = (ids == lm.adapter.image_token_id).long()
    return kwargs


def test_merged_embeddings_match_the_models_own_forward(lm, images):
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        native = lm.model(input_ids=ids, **_native_kwargs(lm, ids, enc.extras)).logits
        embeds = lm.adapter.embed_ids(ids, enc.extras)
        ours = lm.adapter.forward_embeds(embeds, torch.ones_like(ids), enc.extras, ids).logits
        text_only = lm.model.get_input_embeddings()(ids.masked_fill(ids == lm.adapter.image_token_id, 0))
    assert torch.allclose(native, ours, atol=1e-5)
    image_rows = torch.tensor(enc.image_mask)
    # the image slots hold projected image features, not the placeholder's embedding
    assert (embeds[0, image_rows] - text_only[0, image_rows]).abs().max() > 1e-2
    assert torch.equal(embeds[0, ~image_rows], text_only[0, ~image_rows])


@pytest.mark.parametrize("name", ["tiny-random-qwen2-vl", "tiny-random-gemma3"])
def test_family_extras_matter(name, images):
    """The 3-D M-RoPE positions (Qwen2-VL) and the bidirectional image mask (Gemma-3) change the logits, so the
    equality above really checks them. (The other families have no such extras.)"""
    lm = load_model(name)
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        embeds = lm.adapter.embed_ids(ids, enc.extras)
        ours = lm.adapter.forward_embeds(embeds, torch.ones_like(ids), enc.extras, ids).logits
        plain = lm.model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), use_cache=False).logits
    assert (plain - ours).abs().max() > 1e-3


@pytest.mark.parametrize("which", [0, 1])
def test_patch_grid_shape_follows_the_processor(lm, images, which):
    image = images["wide" if which == 0 else "tall"]
    enc = lm.encode_prompt(QUESTION, image=image)
    layout = enc.extras[LAYOUT_KEY]
    main = layout["views"][0]
    assert tuple(main["shape"]) == EXPECTED_GRIDS[lm.model_id][which]
    assert layout["image_size"] == [image.width, image.height]
    n_image = sum(enc.image_mask)
    assert n_image > 0 and len(main["cells"]) == n_image
    on_grid = [c for c in main["cells"] if c >= 0]
    rows, cols = main["shape"]
    assert sorted(on_grid) == list(range(rows * cols))  # every cell exactly once
    # image tokens are neither special (so the baseline zeroes them) nor content
    assert not any(s and m for s, m in zip(enc.special_mask, enc.image_mask))
    assert not any(c and m for c, m in zip(enc.content_mask, enc.image_mask))
    assert "".join(t for t, c in zip(enc.tokens, enc.content_mask) if c).strip() == QUESTION


def test_crop_box_of_llava_is_the_central_square(images):
    lm = load_model("tiny-random-llava")
    wide = lm.encode_prompt(QUESTION, image=images["wide"]).extras[LAYOUT_KEY]["views"][0]["box"]
    tall = lm.encode_prompt(QUESTION, image=images["tall"]).extras[LAYOUT_KEY]["views"][0]["box"]
    assert wide == pytest.approx([100, 0, 500, 400])
    assert tall == pytest.approx([0, 100, 200, 300])


def test_llava_next_tiles_skip_the_newlines_and_keep_a_base_view(images):
    lm = load_model("tiny-random-llava-next")
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    tiles, base = enc.extras[LAYOUT_KEY]["views"]
    # 16 base tokens, then 6 rows of 8 tile tokens each followed by a newline token
    assert sum(enc.image_mask) == 16 + 6 * 9
    assert tiles["cells"][:16] == [-1] * 16 and tiles["cells"][16:25] == list(range(8)) + [-1]
    assert base["cells"][:16] == list(range(16)) and set(base["cells"][16:]) == {-1}
    # the unpadded rows of the 64x64 canvas cover the picture's height (letterbox removed), within one patch
    x0, y0, x1, y1 = tiles["box"]
    assert (x0, x1) == pytest.approx((0, 600))
    assert abs(y0) < 600 / 64 * 8 / 2 and abs(y1 - 400) < 600 / 64 * 8 / 2


def test_idefics3_stitches_tiles_row_major(images):
    lm = load_model("tiny-random-idefics3")
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    tiles, glob = enc.extras[LAYOUT_KEY]["views"]
    cells = tiles["cells"]
    assert cells[:9] == [0, 1, 2, 6, 7, 8, 12, 13, 14]  # tile (1,1): the top-left 3x3 block of the 6x6 grid
    assert cells[9:12] == [3, 4, 5]  # tile (1,2) starts at column 3
    assert cells[36:] == [-1] * 9 and glob["cells"][36:] == list(range(9))


def test_generation_inputs_put_the_image_in_every_row(lm, images):
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    ids = torch.tensor([enc.ids])
    inputs = lm.adapter.generation_inputs(ids.repeat(3, 1), enc.extras)
    assert LAYOUT_KEY not in inputs and inputs["input_ids"].shape[0] == 3
    with torch.no_grad():
        batched = lm.model(**inputs).logits[:, -1]
        single = lm.model(input_ids=ids, **_native_kwargs(lm, ids, enc.extras)).logits[:, -1]
    assert torch.allclose(batched, single.expand_as(batched), atol=1e-5)
    out = lm.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 3 and torch.equal(out[0], out[1])


def test_text_only_prompt_on_a_vlm(lm):
    enc = lm.encode_prompt(QUESTION)
    assert not any(enc.image_mask) and LAYOUT_KEY not in enc.extras
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = lm.adapter.forward_embeds(lm.adapter.embed_ids(ids, enc.extras), torch.ones_like(ids),
                                           enc.extras, ids).logits
    assert torch.isfinite(logits).all()


def test_steering_layers_are_the_language_models(lm):
    assert lm.adapter.layers is lm.adapter.language_model().layers
    assert lm.num_layers == 2 and lm.hidden_size == 32


def test_unsupported_architecture_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ModelLoadError, match="not a supported vision-language architecture") as info:
        adapter_for(model)
    assert "LLaVA-1.5" in str(info.value) and len(SUPPORTED_FAMILIES) == 5


def test_bad_images_raise_image_error(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not an image")
    with pytest.raises(ImageError):
        as_pil_image(str(fake))
    with pytest.raises(ImageError):
        as_pil_image(42)
    gray = as_pil_image(torch.zeros(8, 8).numpy())
    assert gray.mode == "RGB" and gray.size == (8, 8)


def test_expanding_twice_gives_one_image_per_row(lm, images):
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    ids = torch.tensor([enc.ids] * 2)
    direct = lm.adapter.generation_inputs(ids, enc.extras)
    via_expanded = lm.adapter.generation_inputs(ids, lm.adapter.expand_extras(enc.extras, 2))
    assert direct.keys() == via_expanded.keys()
    for key, value in direct.items():
        assert torch.equal(value, via_expanded[key]), key
    # embedding a batch from expanded extras runs the tower once and fills every row with the same features
    with torch.no_grad():
        batched = lm.adapter.embed_ids(ids, lm.adapter.expand_extras(enc.extras, 2))
        single = lm.adapter.embed_ids(ids[:1], enc.extras)
    assert torch.equal(batched[0], single[0]) and torch.equal(batched[1], single[0])


def test_paired_generation_with_an_image(lm, images):
    from grains.generation import GenerationSettings, generate_pair

    pair = generate_pair(lm, QUESTION, image=images["wide"], settings=GenerationSettings(max_new_tokens=3))
    assert pair.unsteered == pair.steered
    assert pair.prompt_text.count(lm.processor.tokenizer.decode([lm.adapter.image_token_id])) == sum(
        lm.encode_prompt(QUESTION, image=images["wide"]).image_mask)


def test_plain_qa_prompt_places_the_image(lm, images):
    plain = load_model(lm.model_id, prompt_format="qa")
    assert plain.prompt_format == "qa"
    enc = plain.encode_prompt(QUESTION, image=images["wide"])
    chat = lm.encode_prompt(QUESTION, image=images["wide"])
    assert sum(enc.image_mask) == sum(chat.image_mask)
    assert enc.text.endswith(f"\nQ: {QUESTION}\nA:") and enc.ids[0] == plain.tokenizer.bos_token_id
    assert "".join(t for t, c in zip(enc.tokens, enc.content_mask) if c) == QUESTION


def test_qwen2_5_vl_uses_the_qwen_adapter(tmp_path, images):
    """Qwen2.5-VL (windowed vision tower) through the Qwen2-VL adapter: same merge, positions and layout."""
    from grains.vlm.pixels import attribute_pixels
    from grains.vlm.tiny import tiny_qwen2_5_vl

    model, processor = tiny_qwen2_5_vl()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path))
    assert type(lm.model).__name__ == "Qwen2_5_VLForConditionalGeneration" and lm.adapter.family == "qwen2_vl"
    enc = lm.encode_prompt(QUESTION, image=images["wide"])
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        native = lm.model(input_ids=ids, **_native_kwargs(lm, ids, enc.extras)).logits
        ours = lm.adapter.forward_embeds(lm.adapter.embed_ids(ids, enc.extras), torch.ones_like(ids), enc.extras,
                                         ids).logits
    assert torch.allclose(native, ours, atol=1e-5)
    assert enc.extras[LAYOUT_KEY]["views"][0]["shape"] == [4, 7]
    # the window attention reorders patches inside the tower only: a black corner still maps to zero cells
    pixels = torch.zeros(64, 64, 3, dtype=torch.uint8)
    pixels[:32, 32:] = 200
    grid = torch.tensor(attribute_pixels(lm, QUESTION, " Yes", " No", image=Image.fromarray(pixels.numpy()),
                                         steps=4).image_grid)
    assert grid[3:, :1].abs().max() < 1e-6 and grid[:1, 3:].abs().max() > 1e-4


def test_image_summary_is_pure_and_sums_cells():
    from grains.vlm.adapters import image_summary

    layout = {"image_size": [20, 10], "views": [
        {"name": "crop", "shape": [1, 2], "cells": [-1, 0, 1, 1], "box": [0.0, 0.0, 20.0, 10.0]},
        {"name": "base", "shape": [1, 1], "cells": [0, 0, -1, -1], "box": [0.0, 0.0, 20.0, 10.0]}]}
    scores = [1.0, 0.5, 2.0, -1.0, 0.25, -3.0]  # text, 4 image tokens, text
    mask = [False, True, True, True, True, False]
    before = (list(scores), list(mask))
    grid, extra = image_summary(scores, mask, 0.5, layout, "llava")
    assert (scores, mask) == before  # nothing written into its inputs
    assert grid == [[2.0, -0.75]]
    assert extra["views"]["base"]["grid"] == [[2.5]]
    assert extra["off_grid_score"] == pytest.approx(0.5)
    assert extra["image_score"] == pytest.approx(1.75)
    assert extra["text_score"] == pytest.approx(1.0 - 3.0 + 0.5)
    assert extra["image_share"] == pytest.approx(3.75 / 7.75)
    assert extra["grid_shape"] == [1, 2] and extra["image_token_count"] == 4
    no_grid, text_only = image_summary(scores, mask, 0.0, None, "llava")
    assert no_grid is None and "views" not in text_only
