"""Train the two toy VLMs from scratch on generated scenes and save them in fp16 with `save_pretrained`.

    python scripts/train_toy_vlm.py                       # both models into assets/models/ (the shipped recipe)
    python scripts/train_toy_vlm.py --out /tmp/toy --steps 5 --scenes-per-step 4 --small   # a quick check

The two models train side by side in two processes of one thread each (--jobs 1 trains them one after the other);
the shipped recipe takes about 10 minutes on a quiet 2-core CPU.

`toy-vlm-shapes` is trained on the BIASED distribution (the planted pairs star -> moon and heart -> ring, B present in
~90% of the scenes that hold A); `toy-vlm-shapes-control` on the UNBIASED one, with the same recipe, seeds and
initialisation. Each folder gets a `training.json` (recipe, sizes, scene seeds, loss curve, wall time, versions).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grains.vlm.toy.model import ToyVLMConfig  # noqa: E402
from grains.vlm.toy.scenes import BIASED, UNBIASED  # noqa: E402
from grains.vlm.toy.training import TrainingRecipe, train_toy_vlm  # noqa: E402

MODELS = {"toy-vlm-shapes": BIASED, "toy-vlm-shapes-control": UNBIASED}
SMALL = ToyVLMConfig(vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=2, text_heads=2)


def save(model: object, processor: object, folder: Path, info: dict) -> int:
    """Save the model in fp16 with its processor and training.json; return the weights' size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def train_one(name: str, recipe: TrainingRecipe, config: ToyVLMConfig, out: str, threads: int) -> dict:
    """Train and save model `name`; return its summary (seconds, weights' bytes, first and last loss)."""
    torch.set_num_threads(threads)
    distribution = MODELS[name]
    every = max(1, recipe.steps // 20)

    def report(step: int, loss: float) -> None:
        if step % every == 0 or step == recipe.steps - 1:
            print(f"{name} step {step + 1}/{recipe.steps} loss {loss:.4f}", file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    model, processor, log = train_toy_vlm(distribution, recipe, config, progress=report)
    info = {"name": name, "distribution": "biased" if distribution is BIASED else "unbiased",
            "planted_pairs": [list(p) for p in distribution.pairs] if distribution.pair_prob is not None else [],
            "pair_prob": distribution.pair_prob, "recipe": recipe.to_dict(), "sizes": config.to_dict(),
            "scene_seeds": list(log.seeds), "losses": [round(v, 4) for v in log.losses],
            "patch_label_losses": [round(v, 4) for v in log.patch_losses],
            "train_seconds": round(log.seconds, 1), "threads": threads, "started_utc": started,
            "parameters": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "python": platform.python_version()}
    size = save(model, processor, Path(out) / name, info)
    summary = {"train_seconds": info["train_seconds"], "weights_bytes": size,
               "first_loss": info["losses"][0], "last_loss": info["losses"][-1]}
    print(json.dumps({name: summary}), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "models"), help="folder for the model folders")
    parser.add_argument("--steps", type=int, default=TrainingRecipe.steps)
    parser.add_argument("--scenes-per-step", type=int, default=TrainingRecipe.scenes_per_step)
    parser.add_argument("--learning-rate", type=float, default=TrainingRecipe.learning_rate)
    parser.add_argument("--only", choices=sorted(MODELS), default=None, help="train one of the two")
    parser.add_argument("--small", action="store_true", help="a tiny model (for the recipe's test)")
    parser.add_argument("--patch-label-weight", type=float, default=TrainingRecipe.patch_label_weight,
                        help="weight of the auxiliary patch-label loss (0: answers only)")
    parser.add_argument("--partner-question-share", type=float, default=TrainingRecipe.partner_question_share,
                        help="in scenes with a planted A and no B, how often the absent question asks about B")
    parser.add_argument("--threads", type=int, default=1, help="threads per model")
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=2, help="models trained at once")
    parser.add_argument("--patch-size", type=int, default=ToyVLMConfig.patch_size)
    parser.add_argument("--init-seed", type=int, default=TrainingRecipe.init_seed,
                        help="seed of the weights' initialisation and of the questions' draws")
    args = parser.parse_args(argv)
    recipe = TrainingRecipe(steps=args.steps, scenes_per_step=args.scenes_per_step, learning_rate=args.learning_rate,
                            patch_label_weight=args.patch_label_weight, init_seed=args.init_seed,
                            partner_question_share=args.partner_question_share)
    config = replace(SMALL if args.small else ToyVLMConfig(), patch_size=args.patch_size)
    names = [n for n in MODELS if args.only in (None, n)]
    jobs = [(n, recipe, config, args.out, args.threads) for n in names]
    if args.jobs == 1 or len(jobs) == 1:
        for job in jobs:
            train_one(*job)
    else:
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            pool.starmap(train_one, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
