"""Tiny randomly initialised models built from configs, for tests and for trying the flow without weights.

Their outputs are meaningless: they exist so the whole code path runs in seconds with no download.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

TINY_SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>"]
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}<|end|>"
    "{% else %}<|assistant|>{{ m['content'] }}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "Q: What is the capital of France?\nA: The capital of France is Paris.",
    "Is there a cat in the image? Yes, there is a cat sitting on the sofa.",
    "The quick brown fox jumps over the lazy dog. A red apple and a green pear.",
    "What happens if you eat watermelon seeds? Nothing happens; they pass through you.",
    "Choices: (A) Yes (B) No. Answer: (A) The answer is no, that premise is false.",
    "Photos of a rocket, an astronaut, a coffee cup, a motorcycle, a flower and a building.",
]


@functools.lru_cache(maxsize=4)
def _trained_tokenizer(extra_special: tuple[str, ...] = ()) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=TINY_SPECIAL_TOKENS + list(extra_special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def tiny_tokenizer(extra_special: tuple[str, ...] = (), chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (~400 tokens) with BOS/EOS/PAD and a small chat template."""
    backend = Tokenizer.from_str(_trained_tokenizer(tuple(extra_special)).to_str())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>", *extra_special],
    )
    # A ByteLevel tokenizer does not add BOS by itself; do it the way Llama/Gemma tokenizers do.
    from tokenizers.processors import TemplateProcessing

    bos_id = tokenizer.convert_tokens_to_ids("<bos>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)]
    )
    if chat_template:
        tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _text_config(arch: str, vocab_size: int, tokenizer: PreTrainedTokenizerFast):
    common = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(**common)
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(**common)
    if arch == "gemma3":
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig(**common, head_dim=8, sliding_window=16, query_pre_attn_scalar=8)
    raise ValueError(f"unknown tiny architecture {arch!r}")


def tiny_text_model(arch: str = "llama", seed: int = 0, chat_template: bool = True):
    """(model, tokenizer) for a 4-layer, 32-wide random causal LM of the given architecture."""
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer(chat_template=chat_template)
    config = _text_config(arch, len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # larger weights than the default init, so random outputs vary with the input
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.08)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
