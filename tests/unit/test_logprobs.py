"""grains.logprobs: log_softmax(logits)[target] per row with a hand-written backward; it must equal autograd's."""

import pytest
import torch

from grains.logprobs import ROW_BLOCK, target_logprobs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_values_and_gradients_match_log_softmax(dtype):
    torch.manual_seed(0)
    rows = 2 * ROW_BLOCK + 3  # crosses block edges
    logits = (torch.randn(rows, 50) * 4).to(dtype)
    targets = torch.randint(0, 50, (rows,))
    weights = torch.randn(rows)
    ours = logits.clone().requires_grad_(True)
    ref = logits.clone().double().requires_grad_(True)
    value = target_logprobs(ours, targets)
    expected = torch.log_softmax(ref, dim=-1).gather(-1, targets.view(-1, 1)).squeeze(-1)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert value.dtype in (torch.float32, torch.float64)  # never computed in bf16
    assert torch.allclose(value.double(), expected, atol=tol)
    (value * weights.to(value.dtype)).sum().backward()
    (expected * weights.double()).sum().backward()
    assert ours.grad.dtype == dtype
    assert torch.allclose(ours.grad.double(), ref.grad, atol=tol)
    assert torch.allclose(ours.grad.double().sum(dim=-1), torch.zeros(rows, dtype=torch.float64), atol=tol * 10)
