"""Method study (issue 8): unsteered vs CAA vs GrAInS variants on A/B preference pairs, one table.

Deltas for each (IG target, k, content_only) are computed once per training example, read at BOTH positions
(answer and prompt end) from the same forward, cached on disk, and aggregated every way (mean, PCA, v+ alone).
Layer and strength are chosen by k-fold cross-validation on the training rows only; the test rows are scored once
per configuration. Scoring is one forward per pair: prompt + the answers' shared prefix (" ("), margin = log P(chosen
letter) - log P(rejected letter); the closing ")" is nearly certain after either letter, so this is the CLI's margin
up to that term (checked with --check-scorer).

    python scripts/method_study.py --train 200 --test-offset 200 --test 100 --steps 8 --out /tmp/study.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grains.ablation import ExampleDeltas, record_layer_outputs, select_for_example  # noqa: E402
from grains.aggregate import aggregate, layer_norms  # noqa: E402
from grains.attribution import attribute_example, baseline_embeddings, input_embeddings  # noqa: E402
from grains.crossval import cross_validate  # noqa: E402
from grains.data import load_pairs  # noqa: E402
from grains.encoding import EncodedExample, encode_example  # noqa: E402
from grains.models import load_model  # noqa: E402
from grains.prompts import encode_response  # noqa: E402
from grains.scoring import score_pair  # noqa: E402
from grains.stats import significance_summary  # noqa: E402
from grains.steering import steer  # noqa: E402
from grains.vectors import SteeringVector  # noqa: E402

POSITIONS = ("answer", "prompt")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def forward_rows(lm: Any, example: EncodedExample, rows: list[tuple[str, torch.Tensor]]
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Hidden states [R, L, D] of each row at both read positions, and each layer's median token norm [L]."""
    lengths = [emb.shape[1] for _, emb in rows]
    width, dim = max(lengths), rows[0][1].shape[-1]
    embeds = rows[0][1].new_zeros(len(rows), width, dim)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    ids = torch.full((len(rows), width), lm.tokenizer.pad_token_id or 0, dtype=torch.long)
    for i, (which, emb) in enumerate(rows):
        embeds[i, : lengths[i]] = emb[0]
        mask[i, : lengths[i]] = 1
        ids[i, : lengths[i]] = torch.tensor(example.sequence_ids(which))
    with torch.no_grad(), record_layer_outputs(lm) as outputs:
        lm.adapter.forward_embeds(embeds, attention_mask=mask, extras=lm.adapter.expand_extras(example.extras,
                                  len(rows)), input_ids=ids, logits_to_keep=1)
    stacked = torch.stack([o.float() for o in outputs], dim=1)  # [R, L, T, D]
    rng = torch.arange(len(rows))
    picked = {"answer": stacked[rng, :, torch.tensor([n - 1 for n in lengths])],
              "prompt": stacked[rng, :, torch.tensor([example.prompt_len - 1] * len(rows))]}
    norms = stacked.norm(dim=-1)
    real = mask.bool()
    per_layer = torch.stack([norms[:, layer][real].median() for layer in range(stacked.shape[1])])
    return picked, per_layer


def example_deltas(lm: Any, enc: EncodedExample, scores: Any | None, ks: list[int], contents: list[bool]
                   ) -> dict[tuple, ExampleDeltas]:
    """{(k, content_only, position): deltas} from one batched forward; with scores None, CAA only {("caa", pos)}."""
    inputs = input_embeddings(lm, enc)
    rows: list[tuple[str, torch.Tensor]] = [("plus", inputs[0]), ("minus", inputs[1])]
    settings = list(product(ks, contents)) if scores is not None else []
    if settings:
        bases = baseline_embeddings(lm, enc, inputs, "zero")
        for k, content in settings:
            sel = select_for_example(enc, scores, k, content, False)
            for which, emb, base in zip(("plus", "minus"), inputs, bases):
                for idx in (sel[which].positive, sel[which].negative):
                    ablated = emb.clone()
                    ablated[0, idx] = base[0, idx]
                    rows.append((which, ablated))
    hidden, norms = forward_rows(lm, enc, rows)
    out: dict[tuple, ExampleDeltas] = {}
    for pos in POSITIONS:
        h = hidden[pos]
        caa = h[0] - h[1]
        out[("caa", pos)] = ExampleDeltas(None, None, caa, norms)
        for j, (k, content) in enumerate(settings):
            p_np, p_nn, m_np, m_nn = h[2 + 4 * j: 6 + 4 * j]
            d_plus = torch.stack([h[0] - p_np, h[1] - m_np])
            d_minus = torch.stack([h[0] - p_nn, h[1] - m_nn])
            out[(k, content, pos)] = ExampleDeltas(d_plus, d_minus, caa, norms)
    return out


class _Passthrough(torch.nn.Module):
    """Stands in for a decoder layer whose output is already known: returns its input hidden states."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


class FastScorer:
    """Margin of chosen over rejected from one forward of prompt + the answers' shared token prefix.

    Steering at layer L changes nothing below L, so the input of layer L is recorded once per item (unsteered)
    and a steered forward starts there, with the layers below L stood in for by pass-throughs (checked against
    the full forward by --check-scorer).
    """

    def __init__(self, lm: Any, rows: list[Any], start_layers: list[int] | None = None):
        self.lm = lm
        self.items = []
        self.start_layers = sorted(set(start_layers or []))
        self.layer_inputs: dict[tuple[int, int], torch.Tensor] = {}
        for ex in rows:
            prompt = lm.encode_prompt(ex.prompt)
            c = encode_response(lm.tokenizer, ex.chosen, lm.prompt_style).ids
            r = encode_response(lm.tokenizer, ex.rejected, lm.prompt_style).ids
            n = 0
            while n < min(len(c), len(r)) and c[n] == r[n]:
                n += 1
            if n >= min(len(c), len(r)):
                raise ValueError("one answer is a prefix of the other: the fast scorer cannot separate them")
            self.items.append((prompt.ids + c[:n], c[n], r[n]))

    def _margin(self, i: int, start: int | None = None) -> float:
        ids, good, bad = self.items[i]
        t = torch.tensor([ids])
        layers = self.lm.adapter.layers
        if start:
            embeds, originals = self.layer_inputs[(i, start)], [layers[j] for j in range(start)]
            for j in range(start):
                layers[j] = _Passthrough()
        else:
            embeds, originals = self.lm.adapter.embed_ids(t, {}), []
        try:
            logits = self.lm.adapter.forward_embeds(embeds, attention_mask=torch.ones_like(t), extras={},
                                                    input_ids=t, logits_to_keep=1).logits[0, -1]
        finally:
            for j, layer in enumerate(originals):
                layers[j] = layer
        lp = torch.log_softmax(logits.float(), dim=-1)
        return float(lp[good] - lp[bad])

    def margins(self, idx: list[int]) -> list[float]:
        """Unsteered margins; records each item's input to every start layer on the way."""
        out = []
        with torch.no_grad():
            for i in idx:
                handles = []
                for layer in self.start_layers:
                    def grab(module: Any, args: Any, kwargs: Any, layer: int = layer, i: int = i) -> None:
                        hidden = args[0] if args else kwargs["hidden_states"]
                        self.layer_inputs[(i, layer)] = hidden.detach().clone()
                    handles.append(self.lm.adapter.layers[layer].register_forward_pre_hook(grab, with_kwargs=True))
                try:
                    out.append(self._margin(i))
                finally:
                    for h in handles:
                        h.remove()
        return out

    def steered(self, vec: SteeringVector | None, layer: int | None, strength: float, idx: list[int]) -> list[float]:
        if vec is None or strength == 0:
            return self.margins(idx)
        with steer(self.lm, vec, layer, strength), torch.no_grad():
            return [self._margin(i, layer if (i, layer) in self.layer_inputs else None) for i in idx]

    def check_start(self, vec: SteeringVector, layer: int, strength: float, idx: list[int]) -> float:
        """Largest |margin| difference between starting at `layer` and the full steered forward."""
        self.margins(idx)
        with steer(self.lm, vec, layer, strength), torch.no_grad():
            fast = [self._margin(i, layer) for i in idx]
            full = [self._margin(i) for i in idx]
        return max(abs(a - b) for a, b in zip(fast, full))


def make_vector(lm: Any, deltas: list[ExampleDeltas], method: str, name: str) -> SteeringVector:
    return SteeringVector(directions=aggregate(deltas, method), layer_norms=layer_norms(deltas), model_id=lm.model_id,
                          hidden_size=lm.hidden_size, num_layers=lm.num_layers, method=method, n_examples=len(deltas),
                          meta={"config": name})


def letter(ex: Any, correct: bool) -> str:
    return (ex.chosen if correct else ex.rejected).strip()


def share(answers: list[str]) -> dict[str, float]:
    return {a: answers.count(a) / len(answers) for a in sorted(set(answers))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--data", default="assets/data/hallucination_pairs.jsonl")
    ap.add_argument("--train", type=int, default=200, help="first N rows build the vectors")
    ap.add_argument("--balance", action="store_true",
                    help="take the --train rows from the first --test-offset rows with the chosen answers balanced "
                         "(a small A/B subset that is not balanced teaches the letter)")
    ap.add_argument("--cv", type=int, default=None, help="score CV on the first N training rows (default: all)")
    ap.add_argument("--test-offset", type=int, default=200)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--targets", default="sequence,last")
    ap.add_argument("--ks", default="3,5,10")
    ap.add_argument("--contents", default="1,0", help="content_only settings, 1 = content tokens only")
    ap.add_argument("--methods", default="mean,pca,plus,pca_plus")
    ap.add_argument("--positions", default="answer,prompt")
    ap.add_argument("--layers", default="8,10,12,14,16")
    ap.add_argument("--strengths", default="0.25,0.5,1.0")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--configs", default=None, help="only these config names (comma list), e.g. caa/answer")
    ap.add_argument("--cache", default="/tmp/method_study_cache")
    ap.add_argument("--out", default="/tmp/method_study.json")
    ap.add_argument("--check-scorer", type=int, default=0, help="compare the fast margin with score_pair on N rows")
    ap.add_argument("--deltas-only", action="store_true", help="compute and cache the training deltas, then stop")
    ap.add_argument("--shard", default="0/1", help="with --deltas-only: compute examples i with i %% n == s (s/n)")
    ap.add_argument("--search", choices=["coarse", "grid"], default="coarse", help="layer/strength search in CV")
    ap.add_argument("--save-vectors", default=None, help="save each configuration's final vector in this folder")
    args = ap.parse_args()

    lm = load_model(args.model)
    train = load_pairs(args.data, limit=args.test_offset if args.balance else args.train)
    if args.balance:
        groups: dict[str, list[Any]] = {}
        for ex in train:
            groups.setdefault(ex.chosen.strip(), []).append(ex)
        per = max(1, args.train // len(groups))
        picked = [g[:per] for g in groups.values()]
        train = [ex for batch in zip(*picked) for ex in batch][: args.train]  # interleaved, so CV folds mix answers
    test = load_pairs(args.data, limit=args.test, offset=args.test_offset)
    targets = args.targets.split(",")
    ks = [int(k) for k in args.ks.split(",")]
    contents = [bool(int(c)) for c in args.contents.split(",")]
    layers = [int(x) for x in args.layers.split(",")]
    strengths = [float(x) for x in args.strengths.split(",")]
    positions = args.positions.split(",")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    # 1. Deltas, once per example and IG target, cached.
    per_config: dict[str, list[ExampleDeltas]] = {}
    t0 = time.perf_counter()
    shard, shards = (int(x) for x in args.shard.split("/"))
    for i, ex in enumerate(train):
        if args.deltas_only and i % shards != shard:
            continue
        enc = encode_example(lm, ex.prompt, ex.chosen, ex.rejected)
        for target in targets:
            path = cache / f"{i}_{target}_s{args.steps}.pt"
            if path.exists():
                got = torch.load(path, weights_only=False)
            else:
                scores = attribute_example(lm, enc, steps=args.steps, target=target)
                got = example_deltas(lm, enc, scores, ks, contents)
                torch.save(got, path)
            for key, d in got.items():
                if key[0] == "caa":
                    if target == targets[0]:
                        per_config.setdefault(f"caa/{key[1]}", []).append(d)
                    continue
                k, content, pos = key
                for method in args.methods.split(","):
                    name = f"grains:{method}/{target}/k{k}/{'content' if content else 'all'}/{pos}"
                    per_config.setdefault(name, []).append(d)
        log(f"deltas {i + 1}/{len(train)} ({time.perf_counter() - t0:.0f} s)")
    if args.deltas_only:
        return 0
    per_config = {n: d for n, d in per_config.items() if n.rsplit("/", 1)[1] in positions}
    if args.configs:
        per_config = {n: per_config[n] for n in args.configs.split(",") if n in per_config}

    # 2. Scoring: unsteered once, then CV on training rows and one test pass per configuration.
    train_scorer, test_scorer = FastScorer(lm, train, layers), FastScorer(lm, test, layers)
    if args.check_scorer:
        fast = test_scorer.margins(list(range(args.check_scorer)))
        full = [score_pair(lm, ex.prompt, ex.chosen, ex.rejected).margin() for ex in test[: args.check_scorer]]
        log(f"fast vs full margin: max |diff| {max(abs(a - b) for a, b in zip(fast, full)):.4f}")
        probe = make_vector(lm, next(iter(per_config.values())), "caa", "check")
        for layer in layers:
            diff = test_scorer.check_start(probe, layer, 1.0, list(range(args.check_scorer)))
            log(f"start at layer {layer} vs full steered forward: max |diff| {diff:.2e}")
    n_cv = min(args.cv or len(train), len(train))
    cv_base = train_scorer.margins(list(range(n_cv)))
    base_margins = test_scorer.margins(list(range(len(test))))
    base_correct = [m > 0 for m in base_margins]
    results = []
    for name, deltas in per_config.items():
        method = "caa" if name.startswith("caa") else name.split("/")[0].split(":")[1]
        t1 = time.perf_counter()
        sub = deltas[:n_cv]

        def score(vec: Any, layer: Any, strength: float, idx: list[int]) -> list[float]:
            return [cv_base[i] for i in idx] if vec is None or strength == 0 else train_scorer.steered(
                vec, layer, strength, idx)

        def build(idx: list[int], sub: list[ExampleDeltas] = sub, method: str = method, name: str = name) -> Any:
            return make_vector(lm, [sub[i] for i in idx], method, name)

        sel = cross_validate(n_cv, layers, strengths, build, score, folds=args.folds,
                             fallback_layer=layers[len(layers) // 2], search=args.search)
        vector = make_vector(lm, deltas, method, name)
        vector.default_layer, vector.default_strength = sel.layer, sel.strength
        vector.meta = {"config": name, "selection": sel.to_dict(), "steps": args.steps, "n_cv": n_cv}
        norm_ratio = float(vector.directions[sel.layer].norm() / vector.layer_norms[sel.layer])
        row: dict[str, Any] = {"config": name, "n_train": len(deltas), "layer": sel.layer, "strength": sel.strength,
                               "cv_margin_gain": sel.margin_gain, "cv_accuracy": sel.accuracy,
                               "cv_accuracy_unsteered": sel.accuracy_unsteered, "vector_norm_ratio": norm_ratio,
                               "accuracy_unsteered": sum(base_correct) / len(test),
                               "answers_unsteered": share([letter(ex, c) for ex, c in zip(test, base_correct)])}
        margins = test_scorer.steered(vector, sel.layer, sel.strength, list(range(len(test))))
        correct = [m > 0 for m in margins]
        stats = significance_summary(base_correct, correct)
        row.update({"accuracy": stats["accuracy"], "p_value": stats["p_value"], "gain_ci": stats["gain_ci"],
                    "margin_gain": statistics.fmean(margins) - statistics.fmean(base_margins),
                    "answers": share([letter(ex, c) for ex, c in zip(test, correct)]),
                    "seconds": time.perf_counter() - t1})
        if args.save_vectors:
            saved = vector.save(Path(args.save_vectors) / (name.replace("/", "_").replace(":", "-") + ".safetensors"))
            row["vector_file"] = str(saved)
        results.append(row)
        log(json.dumps(row))
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print_table(results)
    return 0


def print_table(results: list[dict[str, Any]]) -> None:
    head = f"{'config':48} {'layer':>5} {'str':>5} {'acc':>6} {'unst':>6} {'p':>8} {'gain CI':>15} {'(B) st/un':>11}"
    print(head)
    for r in results:
        b, bu = r["answers"].get("(B)", 0.0), r["answers_unsteered"].get("(B)", 0.0)
        lo, hi = r["gain_ci"]
        print(f"{r['config']:48} {r['layer']:>5} {r['strength']:>5g} {r['accuracy']:6.2f} "
              f"{r['accuracy_unsteered']:6.2f} {r['p_value']:8.4f} {f'[{lo:+.2f},{hi:+.2f}]':>15} {b:5.2f}/{bu:4.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
