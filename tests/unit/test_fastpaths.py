"""The CPU thin-batch output head gives the same numbers as nn.Linear, with and without bias, and keeps grads."""

import pytest
import torch
from torch import nn

from grains.fastpaths import THIN_ROWS, speed_up_output_head


class _Model(nn.Module):
    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def get_output_embeddings(self) -> nn.Linear:
        return self.head


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 3), (THIN_ROWS, 1), (2, THIN_ROWS), (4, 5)])
def test_thin_head_matches_linear(bias, shape):
    torch.manual_seed(0)
    head = nn.Linear(48, 40_000, bias=bias)
    x = torch.randn(*shape, 48)
    expected = nn.functional.linear(x, head.weight, head.bias)
    assert speed_up_output_head(_Model(head))
    got = head(x)
    assert got.shape == expected.shape == (*shape, 40_000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_rows_of_a_thin_batch_equal_each_row_alone():
    """The side-by-side pair decodes two rows at once: each must get exactly what it gets alone."""
    torch.manual_seed(1)
    head = nn.Linear(64, 50_000, bias=False)
    speed_up_output_head(_Model(head))
    x = torch.randn(2, 1, 64)
    both = head(x)
    for i in range(2):
        torch.testing.assert_close(both[i], head(x[i:i + 1])[0], rtol=1e-6, atol=1e-6)


def test_gradients_flow_to_the_input():
    head = nn.Linear(16, 40_000)
    speed_up_output_head(_Model(head))
    x = torch.randn(2, 16, requires_grad=True)
    head(x).sum().backward()
    torch.testing.assert_close(x.grad, head.weight.sum(0).expand(2, -1), rtol=1e-4, atol=1e-3)


def _graph_nodes(tensor: torch.Tensor) -> set[str]:
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in seen:
            seen.add(type(node).__name__)
            todo += [next_node for next_node, _ in node.next_functions]
    return seen


def test_a_thin_batch_that_needs_a_gradient_takes_the_plain_product():
    """The transposed product's backward multiplies by the transposed weight, the slow layout again (IG reads the
    prompt's last position with a few rows): a thin batch that needs a gradient takes nn.Linear's product."""
    head = nn.Linear(16, 40_000, bias=False).requires_grad_(False)  # as loaded: only the input needs a gradient
    speed_up_output_head(_Model(head))
    x = torch.randn(2, 16, requires_grad=True)
    assert not any(name.startswith(("Permute", "Transpose", "TBackward")) for name in _graph_nodes(head(x)))
    (grad,) = torch.autograd.grad(head(x).sum(), x)
    torch.testing.assert_close(grad, head.weight.sum(0).expand(2, -1), rtol=1e-4, atol=1e-3)
    with torch.no_grad():  # scoring and decoding keep the transposed product
        torch.testing.assert_close(head(x), nn.functional.linear(x, head.weight), rtol=1e-5, atol=1e-5)


def test_small_heads_and_non_linear_heads_are_left_alone():
    small = nn.Linear(16, 300)
    assert not speed_up_output_head(_Model(small))
    assert "forward" not in small.__dict__
    assert not speed_up_output_head(object())


def test_target_logprobs_match_log_softmax_and_its_gradient():
    from grains.attribution import ROW_BLOCK, target_logprobs

    torch.manual_seed(2)
    rows = ROW_BLOCK * 2 + 3  # several blocks and a ragged last one
    logits = torch.randn(rows, 1000, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 1000, (rows,))
    weights = torch.randn(rows, dtype=torch.float64)
    (target_logprobs(logits, targets) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    expected = torch.log_softmax(logits, dim=-1).gather(-1, targets.view(-1, 1)).squeeze(-1)
    (expected * weights).sum().backward()
    torch.testing.assert_close(target_logprobs(logits, targets), expected.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours, logits.grad, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: target_logprobs(x, targets[:4] % 50),
                                    (logits[:4, :50].detach().clone().requires_grad_(True),))
    half = logits.detach().to(torch.bfloat16)
    assert target_logprobs(half, targets).dtype == torch.float32  # low-precision logits are widened
