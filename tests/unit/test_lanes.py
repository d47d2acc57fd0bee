"""Jobs sharing one model at once: steering and recording hooks act only for the thread that installed them, and the
model's lock is one lock per lane (a short lane never waits for a long one; one lane still takes turns)."""

import threading

import pytest
import torch

from grains.ablation import record_layer_outputs
from grains.lanes import LaneLock, current_lane, in_lane
from grains.steering import Steering
from tests.factories import random_vector

TEXT = "Q: Is the sky blue?\nA:"


def logits(lm, text=TEXT):
    ids = lm.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def both_inside_the_model_at_once(lm):
    """A plain (global) hook on layer 0 that holds each forward until two are inside the model: the steered and the
    unsteered pass then overlap for certain, the steered one's hook installed before either leaves layer 0."""
    barrier = threading.Barrier(2, timeout=30)

    def hold(module, args, output):
        barrier.wait()

    return lm.adapter.layers[0].register_forward_hook(hold)


def run_pair(jobs):
    results, errors = {}, []

    def work(name, fn):
        try:
            results[name] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_a_steered_and_an_unsteered_thread_each_get_exactly_their_own_output(lm):
    steering = Steering.create(lm, random_vector(lm), layers=1, strength=2.0)
    plain_alone = logits(lm)
    with steering.apply(lm):
        steered_alone = logits(lm)
    assert (plain_alone - steered_alone).abs().max() > 1e-2  # the vector moves this model

    def steered():
        with steering.apply(lm):
            return logits(lm)

    handle = both_inside_the_model_at_once(lm)
    try:
        out = run_pair({"plain": lambda: logits(lm), "steered": steered})
    finally:
        handle.remove()
    assert torch.equal(out["plain"], plain_alone)  # not steered by the other thread's hook (a global hook would)
    assert torch.equal(out["steered"], steered_alone)


def test_recording_hooks_record_only_their_own_thread(lm):
    with torch.no_grad(), record_layer_outputs(lm) as alone:
        logits(lm)
    handle = both_inside_the_model_at_once(lm)

    def record():
        with torch.no_grad(), record_layer_outputs(lm) as outputs:
            logits(lm)
        return outputs

    try:
        out = run_pair({"recorded": record, "other": lambda: logits(lm, "Something else entirely, longer.")})
    finally:
        handle.remove()
    assert len(out["recorded"]) == lm.num_layers  # the other thread's passes were not appended
    assert all(torch.equal(a, b) for a, b in zip(out["recorded"], alone, strict=True))


def test_hooks_stay_on_for_the_installing_thread_until_the_block_ends(lm):
    steering = Steering.create(lm, random_vector(lm), layers=1, strength=2.0)
    with steering.apply(lm):
        first, second = logits(lm), logits(lm)
    assert torch.equal(first, second) and not torch.equal(first, logits(lm))


def test_lanes_hold_separate_locks_and_one_lane_takes_turns():
    lock = LaneLock()
    got: dict[str, bool] = {}
    with in_lane("long"), lock:
        assert current_lane() == "long"

        def other(lane):
            with in_lane(lane):
                got[lane] = lock.acquire(timeout=0.2)
                if got[lane]:
                    lock.release()

        for lane in ("short", "long"):
            t = threading.Thread(target=other, args=(lane,))
            t.start()
            t.join()
    assert got == {"short": True, "long": False}
    assert current_lane() == "default"


def test_lane_lock_is_reentrant_and_release_matches_acquire():
    lock = LaneLock()
    with in_lane("a"), lock, lock:
        pass
    with pytest.raises(RuntimeError):
        lock.release()


def test_layers_skipped_by_one_thread_still_run_for_another(lm):
    """grains.prefix_cache.start_at_layer replaces layer forwards for its own thread only: a job scoring from kept
    hidden states and another job's full forward on the same model, at the same time."""
    from grains.prefix_cache import start_at_layer

    other_text = "A different and clearly longer sentence for the second thread."
    plain_other = logits(lm, other_text)
    with torch.no_grad(), record_layer_outputs(lm) as kept:
        plain_alone = logits(lm)
    barrier = threading.Barrier(2, timeout=30)
    def hold(module, args):
        barrier.wait()  # returns the thread's index: a pre-hook that returned it would replace the layer's inputs

    handle = lm.adapter.layers[0].register_forward_pre_hook(hold)

    def skipping():
        with start_at_layer(lm, 1, kept[1]):
            return logits(lm)

    try:
        out = run_pair({"skipping": skipping, "other": lambda: logits(lm, other_text)})
    finally:
        handle.remove()
    assert torch.equal(out["other"], plain_other)  # a global patch handed it the other thread's kept states
    assert torch.allclose(out["skipping"], plain_alone, atol=1e-5)
    assert all("forward" not in layer.__dict__ for layer in lm.adapter.layers)
