"""The bad-input corpus shared by the API, CLI and app tests.

Each `Case` names what it exercises (`surface`), its inputs (`args`; file inputs are `File(name)` and are made on
demand by `make_file` in a temporary folder) and the message fragment its error must contain. `fragment=None`
means the input must WORK (unicode edge cases, tiny/greyscale/RGBA images): the result must be finite.

Surfaces: "attribute" (prompt/chosen/rejected/steps[/image]), "select" (top-k k on the last attribution),
"generate" (layer/strength/max_new_tokens with a valid vector), "image" (an image file for a VLM, or for the text
model when `model` says so), "dataset" (a JSONL/CSV file), "vector" (a vector file checked against the model) and
"model" (a model name or path).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grains.errors import DataError, GrainsError, ImageError, InputError, ModelLoadError, VectorError

TEXT_MODEL = "tiny-random-llama"
VLM_MODEL = "tiny-random-llava"
PROMPT = "Q: What is the capital of France?\nA:"
CHOSEN, REJECTED = " Paris", " London"
NAN, INF = float("nan"), float("inf")
SCRIPT_PROMPT = "<script>alert(1)</script> and <img src=x onerror=alert(1)> says hi"
# marker file a malicious pickle would create if anything ever unpickled it
PICKLE_MARKER = "PWNED_BY_PICKLE"


@dataclass(frozen=True)
class File:
    """A file input made by `make_file(name, folder)`."""

    name: str


@dataclass(frozen=True)
class Case:
    id: str
    surface: str
    args: dict[str, Any]
    fragment: str | None  # None: must work
    error: type[GrainsError] = InputError
    model: str = TEXT_MODEL
    cli: bool = True  # expressible on the command line
    cli_fragment: str | None = None  # when the CLI words it differently (argparse-level checks)
    app: bool = True  # expressible through the app's API
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.fragment is None


def _attr(prompt: str = PROMPT, chosen: str = CHOSEN, rejected: str = REJECTED, steps: Any = 2) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "steps": steps}


def _gen(layer: Any = 1, strength: Any = 0.5, max_new_tokens: Any = 3) -> dict[str, Any]:
    return {"prompt": "Hello there", "layer": layer, "strength": strength, "max_new_tokens": max_new_tokens}


CASES: list[Case] = [
    # ---- text
    Case("prompt-empty", "attribute", _attr(prompt=""), "empty"),
    Case("prompt-whitespace", "attribute", _attr(prompt=" \n\t  "), "empty"),
    Case("chosen-empty", "attribute", _attr(chosen=""), "empty"),
    Case("rejected-whitespace", "attribute", _attr(rejected="   "), "empty"),
    Case("prompt-over-char-limit", "attribute", _attr(prompt="ab " * 8_000), "characters long"),
    Case("prompt-past-context", "attribute", _attr(prompt="zq " * 3_000), "tokens long"),
    Case("chosen-past-response-limit", "attribute", _attr(chosen=" yes" * 400), "tokens long"),
    Case("chosen-equals-rejected", "attribute", _attr(chosen=" Paris", rejected=" Paris"), "identical"),
    Case("chosen-equals-rejected-spacing", "attribute", _attr(chosen=" Paris", rejected="Paris  "), "identical"),
    Case("steps-zero", "attribute", _attr(steps=0), "steps"),
    Case("steps-negative", "attribute", _attr(steps=-3), "steps"),
    Case("steps-huge", "attribute", _attr(steps=100_000), "steps"),
    Case("steps-nan", "attribute", _attr(steps=NAN), "steps"),
    # ---- top-k
    Case("k-zero", "select", {"k": 0}, "at least 1"),
    Case("k-negative", "select", {"k": -2}, "at least 1"),
    Case("k-more-than-tokens", "select", {"k": 60}, "larger than", cli=False,
         note="build clips k to the eligible tokens by design"),
    Case("k-nan", "select", {"k": NAN}, "whole number"),
    Case("k-fraction", "select", {"k": 2.5}, "whole number"),
    Case("k-huge", "select", {"k": 10_000}, "at most"),
    # ---- steering sliders
    Case("layer-out-of-range", "generate", _gen(layer=99), "out of range"),
    Case("layer-negative", "generate", _gen(layer=-1), "out of range"),
    Case("layer-nan", "generate", _gen(layer=NAN), "whole number", cli_fragment="--layer"),
    Case("layer-fraction", "generate", _gen(layer=1.5), "whole number", cli_fragment="--layer"),
    Case("strength-below-range", "generate", _gen(strength=-5), "from -4 to 4",
         note="negative strengths are allowed (toward the rejected answers) down to -4"),
    Case("strength-nan", "generate", _gen(strength=NAN), "finite"),
    Case("strength-inf", "generate", _gen(strength=INF), "finite"),
    Case("strength-huge", "generate", _gen(strength=1e9), "from -4 to 4"),
    Case("max-new-tokens-zero", "generate", _gen(max_new_tokens=0), "max_new_tokens", cli_fragment="--max-new-tokens"),
    Case("max-new-tokens-huge", "generate", _gen(max_new_tokens=10**6), "max_new_tokens"),
    # ---- unicode: these must work
    Case("unicode-rtl", "attribute", _attr(prompt="مرحبا بالعالم؟ שלום עולם"), None),
    Case("unicode-emoji", "attribute", _attr(prompt="🙂🚀 👩‍👩‍👧 family? 🇫🇷", chosen=" 🎉", rejected=" 💥"), None),
    Case("unicode-zero-width", "attribute", _attr(prompt="Pa\u200bris\u200c is\u200d \ufeffthe capital?"), None),
    Case("unicode-control-chars", "attribute", _attr(prompt="tab\tbell\x07 esc\x1b[31m red\x1b[0m nul\x00 end"), None),
    Case("unicode-bidi-override", "attribute", _attr(prompt="\u202eevil\u202c text \u2066iso\u2069"), None),
    Case("unicode-combining", "attribute", _attr(prompt="Z̴̡̛a̶͓͝l̷g̸o̵ t̷e̶x̵t̸?"), None),
    Case("html-in-prompt", "attribute", _attr(prompt=SCRIPT_PROMPT), None),
    # ---- images
    Case("image-not-an-image", "image", {"image": File("not_an_image.png")}, "not an image", ImageError,
         model=VLM_MODEL),
    Case("image-empty-file", "image", {"image": File("empty.jpg")}, "empty", ImageError, model=VLM_MODEL, app=False,
         note="Gradio itself refuses an empty upload"),
    Case("image-truncated-jpeg", "image", {"image": File("truncated.jpg")}, "damaged", ImageError, model=VLM_MODEL),
    Case("image-decompression-bomb", "image", {"image": File("bomb_20000x20000.png")}, "pixels", ImageError,
         model=VLM_MODEL),
    Case("image-on-text-model", "image", {"image": File("grey.png")}, "text-only", InputError),
    Case("image-1x1", "image", {"image": File("one_pixel.png")}, None, model=VLM_MODEL),
    Case("image-greyscale", "image", {"image": File("grey.png")}, None, model=VLM_MODEL),
    Case("image-rgba", "image", {"image": File("rgba.png")}, None, model=VLM_MODEL),
    # ---- datasets
    Case("dataset-empty", "dataset", {"file": File("empty.jsonl")}, "no rows", DataError),
    Case("dataset-wrong-columns", "dataset", {"file": File("wrong_columns.jsonl")}, "unknown dataset format",
         DataError),
    Case("dataset-wrong-columns-csv", "dataset", {"file": File("wrong_columns.csv")}, "unknown dataset format",
         DataError),
    Case("dataset-wrong-type-in-row", "dataset", {"file": File("wrong_type.jsonl")}, ':2: "chosen" must be a string',
         DataError),
    Case("dataset-not-utf8", "dataset", {"file": File("latin1.jsonl")}, "UTF-8", DataError),
    Case("dataset-100mb", "dataset", {"file": File("huge_100mb.jsonl")}, "limit", DataError,
         note="the app refuses the upload itself (max_file_size)"),
    Case("dataset-image-escapes-folder", "dataset", {"file": File("escape.jsonl")}, "outside the dataset folder",
         DataError),
    Case("dataset-image-absolute-path", "dataset", {"file": File("absolute.jsonl")}, "outside the dataset folder",
         DataError),
    # ---- vectors
    Case("vector-other-model", "vector", {"vector": File("other_model.safetensors")}, "hidden size", VectorError),
    Case("vector-same-size-other-id", "vector", {"vector": File("other_id.safetensors")}, "built for", VectorError),
    Case("vector-corrupted-header", "vector", {"vector": File("corrupt.safetensors")}, "corrupt", VectorError),
    Case("vector-truncated-data", "vector", {"vector": File("truncated_data.safetensors")}, "corrupt", VectorError),
    Case("vector-pickle-disguised", "vector", {"vector": File("pickle.safetensors")}, "pickle", VectorError),
    Case("vector-torch-save-disguised", "vector", {"vector": File("torch_save.safetensors")}, "pickle",
         VectorError),
    Case("vector-metadata-missing", "vector", {"vector": File("no_metadata.safetensors")}, "no GrAInS metadata",
         VectorError),
    Case("vector-metadata-partial", "vector", {"vector": File("partial_metadata.safetensors")},
         "missing or malformed", VectorError),
    Case("vector-nan-values", "vector", {"vector": File("nan.safetensors")}, "NaN", VectorError),
    Case("vector-empty-file", "vector", {"vector": File("empty.safetensors")}, "empty or truncated", VectorError),
    # ---- models
    Case("model-unknown-name", "model", {"name": "no-such-model-xyz"}, "not a preset", ModelLoadError),
    Case("model-hub-offline", "model", {"name": "someone/definitely-not-a-model"}, "Cannot reach the Hugging Face hub",
         ModelLoadError, extra={"env": {"HF_HUB_OFFLINE": "1"}}),
    Case("model-dir-without-config", "model", {"name": File("model_no_config")}, "without a config.json",
         ModelLoadError),
    Case("model-dir-without-weights", "model", {"name": File("model_no_weights")}, "model.safetensors",
         ModelLoadError),
    Case("model-file-not-gguf", "model", {"name": File("not_a_model.bin")}, "not a .gguf", ModelLoadError),
    Case("model-blank-name", "model", {"name": "   "}, "No model", InputError, cli=False, app=False,
         note="the CLI and app fall back to the default model for a blank name"),
]

CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "duplicate case ids"


def ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


# ---------------------------------------------------------------- file makers


def _png(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    colour: Any = {"L": 128, "RGB": (200, 30, 30), "RGBA": (10, 200, 10, 90)}[mode]
    Image.new(mode, (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header declares width x height (the pixel data is not there): cheap to make."""
    data = bytearray(_png(8, 8))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((96, 96), 40).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


class _Evil:
    """Unpickling this creates the file `marker`: proof that something unpickled it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def valid_vector(model_id: str = TEXT_MODEL, hidden: int = 32, layers: int = 4, value: float = 1.0) -> Any:
    import torch

    from grains.vectors import SteeringVector

    gen = torch.Generator().manual_seed(int(hidden + 1000 * value))
    directions = {layer: torch.randn(hidden, generator=gen) * value for layer in range(layers)}
    return SteeringVector(directions=directions, layer_norms={layer: 2.0 for layer in range(layers)},
                          model_id=model_id, hidden_size=hidden, num_layers=layers, default_layer=1,
                          default_strength=0.5)


def _vector_bytes(folder: Path, vector: Any, name: str) -> bytes:
    return vector.save(folder / f"_{name}.safetensors").read_bytes()


def _make(name: str, folder: Path) -> Path:
    path = folder / name
    if name == "not_an_image.png":
        path.write_text("this is plain text, not a picture\n")
    elif name == "empty.jpg" or name == "empty.safetensors":
        path.write_bytes(b"")
    elif name == "truncated.jpg":
        raw = _jpeg()
        path.write_bytes(raw[: len(raw) // 2])
    elif name == "bomb_20000x20000.png":
        path.write_bytes(_bomb_png())
    elif name == "one_pixel.png":
        path.write_bytes(_png(1, 1, "RGB"))
    elif name == "grey.png":
        path.write_bytes(_png(40, 30, "L"))
    elif name == "rgba.png":
        path.write_bytes(_png(33, 47, "RGBA"))
    elif name == "empty.jsonl":
        path.write_text("")
    elif name == "wrong_columns.jsonl":
        path.write_text(json.dumps({"question_text": "Q?", "good": "a", "bad": "b"}) + "\n")
    elif name == "wrong_columns.csv":
        path.write_text("query,answer_a,answer_b\nIs it?,yes,no\n")
    elif name == "wrong_type.jsonl":
        rows = [{"prompt": "Q: one?\nA:", "chosen": " yes", "rejected": " no"},
                {"prompt": "Q: two?\nA:", "chosen": 5, "rejected": " no"},
                {"prompt": "Q: three?\nA:", "chosen": " yes", "rejected": " no"}]
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif name == "latin1.jsonl":
        path.write_bytes(json.dumps({"prompt": "caf\u00e9", "chosen": "a", "rejected": "b"}, ensure_ascii=False)
                         .encode("latin-1") + b"\n")
    elif name == "huge_100mb.jsonl":
        with path.open("wb") as fh:  # sparse: costs no disk space or time
            fh.write(b'{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
            fh.truncate(100 * 1024 * 1024)
    elif name == "escape.jsonl":
        path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "image": "../../etc/passwd"}))
    elif name == "absolute.jsonl":
        path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "image": "/etc/passwd"}))
    elif name == "valid.safetensors":
        valid_vector().save(path)
    elif name == "other_model.safetensors":
        valid_vector("tiny-random-qwen2", hidden=16).save(path)
    elif name == "other_id.safetensors":
        valid_vector("some-other-model").save(path)
    elif name == "corrupt.safetensors":
        raw = bytearray(_vector_bytes(folder, valid_vector(), "corrupt"))
        raw[20:40] = b"\xff" * 20
        path.write_bytes(bytes(raw))
    elif name == "truncated_data.safetensors":
        raw = _vector_bytes(folder, valid_vector(), "truncated")
        path.write_bytes(raw[:-100])
    elif name == "pickle.safetensors":
        path.write_bytes(pickle.dumps({"layer.0": _Evil(folder / PICKLE_MARKER)}))
    elif name == "torch_save.safetensors":
        import torch

        torch.save({"layer.0": torch.ones(32)}, path)
    elif name == "no_metadata.safetensors":
        import torch
        from safetensors.torch import save_file

        save_file({"layer.0": torch.ones(32)}, str(path))
    elif name == "partial_metadata.safetensors":
        import torch
        from safetensors.torch import save_file

        save_file({"layer.0": torch.ones(32)}, str(path),
                  metadata={"grains": json.dumps({"format": "grains-steering-vector/1", "model_id": TEXT_MODEL})})
    elif name == "nan.safetensors":
        import torch
        from safetensors.torch import save_file

        meta = valid_vector().metadata()
        save_file({"layer.0": torch.full((32,), math.nan)}, str(path), metadata={"grains": json.dumps(meta)})
    elif name == "model_no_config":
        path.mkdir()
        (path / "README.md").write_text("not a checkpoint\n")
    elif name == "model_no_weights":
        from grains.tiny import tiny_text_model

        model, tokenizer = tiny_text_model("llama")
        model.config.save_pretrained(path)
        tokenizer.save_pretrained(path)
    elif name == "not_a_model.bin":
        path.write_bytes(b"\x00" * 64)
    else:
        raise KeyError(name)
    return path


def make_file(name: str, folder: Path) -> Path:
    """Make (once per folder) the file called `name`."""
    path = folder / name
    if not path.exists():
        _make(name, folder)
    return path


def resolve(args: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`args` with every File replaced by the path of a freshly made file."""
    return {k: (str(make_file(v.name, folder)) if isinstance(v, File) else v) for k, v in args.items()}


def all_finite(values: Any) -> bool:
    """True when every number in a (nested) list is finite."""
    if isinstance(values, list | tuple):
        return all(all_finite(v) for v in values)
    return values is None or math.isfinite(float(values))
