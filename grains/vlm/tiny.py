"""Tiny randomly initialised vision-language models with their REAL processor classes, built offline in seconds.

Each builder returns `(model, processor)`: a 2-layer, 32-wide language model behind a 2-layer vision tower, and the
family's own processor (PIL image processor, byte-level BPE tokenizer from grains.tiny) with small image settings, so
the processors' real resizing, tiling and token expansion run. Outputs are meaningless; weights are seeded.
"""

from __future__ import annotations

from typing import Any

import torch

from grains.tiny import tiny_tokenizer
from grains.vlm.loading import image_only_processor_class

HIDDEN = 32
SEED = 0


def vlm_chat_template(image_text: str) -> str:
    """A small chat template that writes `image_text` where a message has an image (string content also works)."""
    return (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}<|user|>{% else %}<|assistant|>{% endif %}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}" + image_text + "\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )


def _tokenizer(special: tuple[str, ...], image_text: str) -> Any:
    tok = tiny_tokenizer(extra_special=special)
    tok.chat_template = vlm_chat_template(image_text)
    return tok


def _text_kwargs(tok: Any, layers: int = 2) -> dict[str, Any]:
    return dict(
        vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )


def _vision_kwargs(image_size: int, patch_size: int) -> dict[str, Any]:
    return dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=image_size, patch_size=patch_size)


def _build(model_cls: Any, config: Any, tok: Any, seed: int) -> Any:
    """Instantiate with a fixed seed; weights larger than the default init so random outputs depend on the input."""
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def tiny_llava(seed: int = SEED) -> tuple[Any, Any]:
    """LLaVA-1.5: CLIP tower (48 px, 8 px patches: a 6x6 grid), shortest-edge resize + centre crop."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tok = _tokenizer(("<image>",), "<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(48, 8), projection_dim=HIDDEN),
        text_config=LlamaConfig(**_text_kwargs(tok)), image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=36, vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=True,
    )
    image_processor = LlavaImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tok.chat_template)
    return _build(LlavaForConditionalGeneration, config, tok, seed), processor


def tiny_llava_next(seed: int = SEED) -> tuple[Any, Any]:
    """LLaVA-NeXT: 32 px tiles (4x4 patches each) on anyres pinpoints 32x64 / 64x32 / 64x64, plus the base view."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    pinpoints = [[32, 64], [64, 32], [64, 64]]
    tok = _tokenizer(("<image>",), "<image>")
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(32, 8), projection_dim=HIDDEN),
        text_config=LlamaConfig(**_text_kwargs(tok)), image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints, image_seq_length=16, vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=True,
    )
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                                 image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=tok.chat_template)
    return _build(LlavaNextForConditionalGeneration, config, tok, seed), processor


def tiny_qwen2_vl(seed: int = SEED) -> tuple[Any, Any]:
    """Qwen2-VL: dynamic resolution (8 px patches, 2x2 merge, at most 96x96 px), 3-D M-RoPE."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    tok = _tokenizer(specials, "<|vision_start|><|image_pad|><|vision_end|>")
    text = _text_kwargs(tok)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in zip(("start", "end", "image", "video"), specials)}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=2, embed_dim=HIDDEN, hidden_size=HIDDEN, num_heads=4, mlp_ratio=2, patch_size=8,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["start"],
        vision_end_token_id=ids["end"], tie_word_embeddings=True,
    )
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 32 * 32, "longest_edge": 96 * 96},
                                               patch_size=8, merge_size=2, temporal_patch_size=2)
    # the stock class insists on a video processor (which needs torchvision): use the image-only variant
    processor = image_only_processor_class(Qwen2VLProcessor)(image_processor, tok, chat_template=tok.chat_template)
    return _build(Qwen2VLForConditionalGeneration, config, tok, seed), processor


def tiny_qwen2_5_vl(seed: int = SEED) -> tuple[Any, Any]:
    """Qwen2.5-VL: as tiny_qwen2_vl, with the windowed vision tower (32 px windows, full attention in block 1)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    tok = _tokenizer(specials, "<|vision_start|><|image_pad|><|vision_end|>")
    text = _text_kwargs(tok)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in zip(("start", "end", "image", "video"), specials)}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=2, hidden_size=HIDDEN, out_hidden_size=HIDDEN, intermediate_size=64, num_heads=4,
                           patch_size=8, spatial_merge_size=2, temporal_patch_size=2, window_size=32,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["image"], video_token_id=ids["video"], vision_start_token_id=ids["start"],
        vision_end_token_id=ids["end"], tie_word_embeddings=True,
    )
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 32 * 32, "longest_edge": 96 * 96},
                                               patch_size=8, merge_size=2, temporal_patch_size=2)
    processor = image_only_processor_class(Qwen2_5_VLProcessor)(image_processor, tok, chat_template=tok.chat_template)
    return _build(Qwen2_5_VLForConditionalGeneration, config, tok, seed), processor


IDEFICS3_TILE = 48
IDEFICS3_MAX_SPLITS = 2


def tiny_idefics3(seed: int = SEED) -> tuple[Any, Any]:
    """Idefics3 / SmolVLM: 48 px tiles (6x6 patches, pixel shuffle 2 -> 3x3 tokens), up to 2x2 tiles + a global view."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, LlamaConfig
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    rows_cols = tuple(f"<row_{r}_col_{c}>" for r in range(1, IDEFICS3_MAX_SPLITS + 1)
                      for c in range(1, IDEFICS3_MAX_SPLITS + 1))
    specials = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *rows_cols)
    tok = _tokenizer(specials, "<image>")
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_vision_kwargs(IDEFICS3_TILE, 8)),
        text_config=LlamaConfig(**_text_kwargs(tok)), image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2, tie_word_embeddings=True,
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": IDEFICS3_TILE * IDEFICS3_MAX_SPLITS}, max_image_size={"longest_edge": IDEFICS3_TILE},
        do_image_splitting=True,
    )
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=9,
                                  chat_template=tok.chat_template)
    return _build(Idefics3ForConditionalGeneration, config, tok, seed), processor


def tiny_gemma3(seed: int = SEED) -> tuple[Any, Any]:
    """Gemma-3: SigLIP tower on a 32x32 squash (8x8 patches average-pooled to 4x4 = 16 tokens), pan&scan off."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    specials = ("<start_of_image>", "<end_of_image>", "<image_soft_token>")
    tok = _tokenizer(specials, "<start_of_image>")
    tok._set_model_specific_special_tokens(
        {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    )
    ids = [tok.convert_tokens_to_ids(t) for t in specials]
    config = Gemma3Config(
        text_config=Gemma3TextConfig(**_text_kwargs(tok), head_dim=8, sliding_window=64, query_pre_attn_scalar=8),
        vision_config=SiglipVisionConfig(**_vision_kwargs(32, 4)), mm_tokens_per_image=16,
        boi_token_index=ids[0], eoi_token_index=ids[1], image_token_index=ids[2], tie_word_embeddings=True,
    )
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=16,
                                chat_template=tok.chat_template)
    return _build(Gemma3ForConditionalGeneration, config, tok, seed), processor


TINY_BUILDERS = {
    "llava": tiny_llava, "llava_next": tiny_llava_next, "qwen2_vl": tiny_qwen2_vl, "idefics3": tiny_idefics3,
    "gemma3": tiny_gemma3,
}
