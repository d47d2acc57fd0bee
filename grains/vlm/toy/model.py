"""The toy VLM's architecture and processor: a LLaVA-1.5 model (small CLIP vision tower, two-layer projector, small
Llama decoder) with its real LlavaProcessor (the LLaVA PIL image processor and a byte-level BPE tokenizer trained
offline on the toy language, with `<image>` and a chat template), built from scratch in a second."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch

from grains.vlm.toy.scenes import IMAGE_SIZE
from grains.vlm.toy.shapes import KINDS

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>", "<image>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{% else %}<|assistant|>{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}\n<image>{% endif %}{% endfor %}"
    "{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CAPTION_QUESTION = "What is in the image?"


@dataclass(frozen=True)
class ToyVLMConfig:
    """Sizes of the toy VLM.

    Args:
        image_size: the square input side in pixels (the scenes' side).
        patch_size: the vision tower's patch side (image_size / patch_size patches per row).
        vision_width, vision_layers, vision_heads: the CLIP vision tower.
        text_width, text_layers, text_heads: the Llama decoder.
        vocab_size: the BPE tokenizer's target vocabulary.

    Example:
        >>> ToyVLMConfig(text_layers=2).text_layers
        2
    """

    image_size: int = IMAGE_SIZE
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vocab_size: int = 512

    def to_dict(self) -> dict[str, Any]:
        """The sizes as a dict."""
        return asdict(self)


def _corpus() -> list[str]:
    """The toy language the tokenizer is trained on: the questions, the answers and a little general text."""
    lines = [f"Is there a {k} in the image? Yes No" for k in KINDS]
    lines += [f"{CAPTION_QUESTION} a {a}, a {b} and a {c}." for a, b, c in zip(KINDS, KINDS[1:], KINDS[2:])]
    lines += ["Q: Is there a cat in the picture?\nA: Yes, there is. No, there is not.",
              "Which shapes are red, blue, green, yellow, orange, pink, purple, cyan or brown? Describe the scene.",
              "The quick brown fox jumps over the lazy dog. What colour is the object on the left?"]
    return lines * 8


@functools.lru_cache(maxsize=2)
def _trained_backend(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def build_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained offline on the toy language, with BOS, EOS, PAD, `<image>` and a chat
    template; every kind name, "Yes" and "No" are single tokens.

    Args:
        vocab_size: the target vocabulary (the 256 byte symbols, the specials and the merges).

    Returns:
        A PreTrainedTokenizerFast.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_backend(vocab_size)), bos_token="<bos>", eos_token="<eos>",
        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>", "<image>"],
    )
    bos_id = tokenizer.convert_tokens_to_ids("<bos>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(config: ToyVLMConfig = ToyVLMConfig()) -> Any:
    """The LlavaProcessor: LLaVA's PIL image processor at the scene size (no resize or crop of a scene) and the
    toy tokenizer; `<image>` expands to (image_size / patch_size)^2 tokens.

    Args:
        config: the sizes.

    Returns:
        The LlavaProcessor.
    """
    from transformers import LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    side = config.image_size
    image_processor = LlavaImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    tokenizer = build_tokenizer(config.vocab_size)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=config.patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def build_model(config: ToyVLMConfig = ToyVLMConfig(), seed: int = 0) -> tuple[Any, Any]:
    """A freshly initialised toy LLaVA model (fp32) and its processor.

    Args:
        config: the sizes.
        seed: the initialisation seed.

    Returns:
        (LlavaForConditionalGeneration, LlavaProcessor).

    Example:
        >>> model, processor = build_model(ToyVLMConfig(text_layers=1))
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    processor = build_processor(config)
    tok = processor.tokenizer
    grid = config.image_size // config.patch_size
    vision = CLIPVisionConfig(hidden_size=config.vision_width, intermediate_size=2 * config.vision_width,
                              num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
                              image_size=config.image_size, patch_size=config.patch_size,
                              projection_dim=config.text_width)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=config.text_width, intermediate_size=3 * config.text_width,
                       num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
                       num_key_value_heads=config.text_heads, max_position_embeddings=512,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=True)
    llava = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                        image_seq_length=grid * grid, vision_feature_layer=-1,
                        vision_feature_select_strategy="default", projector_hidden_act="gelu",
                        tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava).to(torch.float32)
    end_ids = [tok.convert_tokens_to_ids("<|end|>"), tok.eos_token_id]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = end_ids
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, processor
