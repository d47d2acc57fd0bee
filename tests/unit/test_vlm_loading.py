"""Loading VLM checkpoints from a local directory through load_model, and refusing unsupported architectures."""

from pathlib import Path

import pytest
import torch

from grains.errors import ModelLoadError
from grains.models import load_model
from grains.vlm.loading import load_vlm_pretrained
from grains.vlm.tiny import TINY_BUILDERS

COFFEE = str(Path(__file__).resolve().parents[2] / "assets" / "images" / "coffee.jpg")


@pytest.mark.parametrize("family", list(TINY_BUILDERS))
def test_saved_tiny_vlm_loads_from_a_directory(tmp_path, family):
    """save_pretrained then load_model(dir): AutoModelForImageTextToText + AutoProcessor (PIL image processors;
    Qwen2-VL gets the image-only processor, as its video processor needs torchvision)."""
    model, processor = TINY_BUILDERS[family]()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path))
    assert lm.is_vlm and lm.adapter.family == family and lm.prompt_style == "chat"
    enc = lm.encode_prompt("Is there a cup?", image=COFFEE)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        reloaded = lm.adapter.forward_embeds(lm.adapter.embed_ids(ids, enc.extras), torch.ones_like(ids),
                                             enc.extras, ids).logits
        original = model(**{**lm.adapter.generation_inputs(ids, enc.extras)}).logits
    assert torch.allclose(reloaded, original, atol=1e-5)


def test_unsupported_vlm_checkpoint_is_refused_before_loading_weights():
    from transformers import AutoConfig

    config = AutoConfig.for_model("paligemma")
    config.architectures = ["PaliGemmaForConditionalGeneration"]
    with pytest.raises(ModelLoadError, match="PaliGemmaForConditionalGeneration is not a supported") as info:
        load_vlm_pretrained("/nonexistent", config, {})
    assert "Qwen2-VL" in str(info.value)
