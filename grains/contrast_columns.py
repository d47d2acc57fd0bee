"""A pair's margin from the output layer at fewer positions: what chosen and rejected read alike cancels.

The margin log P(chosen | prompt) - log P(rejected | prompt) sums each response's token log-probabilities. Packed
after one copy of their prompt (grains.packing), chosen and rejected read the same logits wherever their contexts
agree: at the prompt's end, and after a shared beginning (" The cat" and " The dog" both read " The"'s logits). At
such a context:

- the same next token on both sides contributes log p(t) - log p(t) = 0, so the position is not read at all;
- different next tokens contribute logit(c) - logit(r): the normaliser (a logsumexp over the whole vocabulary)
  cancels, so two rows of the output weights replace the vocabulary-wide product.

Only contexts read by one side go through the output layer. On TruthfulQA pairs under Gemma-3's tokenizer that is
about 16% fewer positions (32 pairs: 685 distinct contexts, 109 read by both); on pairs of one-token answers ("A" /
"B") it is all of them. The margin is the same sum, regrouped (tested to 1e-5 in fp32 against the plain path).

Only for an output layer that is a plain linear map whose logits the model does not post-process (no softcapping or
logit scaling in its config: `plain_output_layer`); elsewhere callers take the difference of whole sums.

    columns = contrast_columns(responses, spans)          # responses: per packed row, (chosen, rejected) pairs
    with only_contrast_columns(lm, columns):
        logits = lm.model(...).logits                    # [1, contexts read by one side, vocabulary]
    parts = margin_parts(logits, columns)                # chosen's part - rejected's part = the margin
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from grains.read_columns import only_read_columns, packed_column, token_logprobs

if TYPE_CHECKING:
    from grains.models import LoadedModel


@dataclass
class ContrastColumns:
    """Where a batch of packed pairs reads the output layer, and what each read adds to which response's part.

    Args:
        rows: batch row of each context that goes through the output layer [U].
        columns: its column within the kept logits [U].
        reads: for each token read there, its context [N].
        targets: the token [N].
        owners: the response (flat index over the batch) whose part it adds to [N].
        pair_rows: batch row of each context where the pair's next tokens differ [P].
        pair_columns: its column [P].
        pair_targets: (chosen's token, rejected's token) there [P, 2].
        pair_owners: the chosen response (flat index) whose part takes logit(c) - logit(r) [P].
        counts: responses per batch row.
        diffs: logit(c) - logit(r) at each pair context, set by `only_contrast_columns` during the forward.
    """

    rows: torch.Tensor
    columns: torch.Tensor
    reads: torch.Tensor
    targets: torch.Tensor
    owners: torch.Tensor
    pair_rows: torch.Tensor
    pair_columns: torch.Tensor
    pair_targets: torch.Tensor
    pair_owners: torch.Tensor
    counts: list[int]
    diffs: torch.Tensor | None = None

    @property
    def total(self) -> int:
        """How many positions go through the whole output layer."""
        return int(self.rows.numel())


def plain_output_layer(lm: LoadedModel) -> bool:
    """Whether logit(c) - logit(r) can be read from two rows of the output weights: a linear output layer and no
    setting in the config that post-processes logits (softcapping, logit scaling: any non-trivial `*logit*` entry).

    Args:
        lm: the model.

    Returns:
        True where `only_contrast_columns` gives the model's own logit differences.
    """
    if not isinstance(lm.model.get_output_embeddings(), torch.nn.Linear):
        return False
    configs = [lm.model.config, getattr(lm.model.config, "text_config", None)]
    for config in filter(None, configs):
        for name, value in config.to_dict().items():
            if "logit" in name and not isinstance(value, dict) and value not in (None, False, 1, 1.0):
                return False
    return True


def contrast_columns(responses: Sequence[Sequence[list[int]]],
                     spans: Sequence[Sequence[tuple[int, int]]]) -> ContrastColumns:
    """Which kept-logit columns a batch of packed pairs' margins need, and how.

    Args:
        responses: per packed row, its responses as (chosen, rejected, chosen, rejected, ...), all after the row's
            one prompt.
        spans: per packed row, each response's (start column, length), as `grains.packing.pack` lays them out.

    Returns:
        The ContrastColumns.
    """
    rows: list[int] = []
    columns: list[int] = []
    reads: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    pair_rows: list[int] = []
    pair_columns: list[int] = []
    pair_targets: list[tuple[int, int]] = []
    pair_owners: list[int] = []
    flat = 0
    for b, group in enumerate(responses):
        if len(group) % 2:
            raise ValueError("Packed pairs come as chosen, rejected: an odd number of responses in a row.")
        starts = [start for start, _ in spans[b]]
        distinct: dict[tuple[int, ...], int] = {}  # contexts through the output layer, once per row
        for p in range(0, len(group), 2):
            chosen, rejected = group[p], group[p + 1]
            both = min(len(chosen), len(rejected))  # contexts 0..both-1 may be read by both sides
            agree = 0
            while agree < both and chosen[agree] == rejected[agree]:
                agree += 1
            if agree < both:  # the first context where the next tokens differ: logit(c) - logit(r)
                pair_rows.append(b)
                pair_columns.append(packed_column(starts[p], agree))
                pair_targets.append((chosen[agree], rejected[agree]))
                pair_owners.append(flat + p)
            for side, response in enumerate((chosen, rejected)):
                for i in range(min(agree + 1, both), len(response)):  # contexts only this side reads
                    context = tuple(response[:i])
                    if context not in distinct:
                        distinct[context] = len(rows)
                        rows.append(b)
                        columns.append(packed_column(starts[p + side], i))
                    reads.append(distinct[context])
                    targets.append(response[i])
                    owners.append(flat + p + side)
        flat += len(group)

    def longs(values: list[Any]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long)

    return ContrastColumns(rows=longs(rows), columns=longs(columns), reads=longs(reads), targets=longs(targets),
                           owners=longs(owners), pair_rows=longs(pair_rows), pair_columns=longs(pair_columns),
                           pair_targets=longs(pair_targets).reshape(-1, 2), pair_owners=longs(pair_owners),
                           counts=[len(group) for group in responses])


def only_contrast_columns(lm: LoadedModel, columns: ContrastColumns) -> AbstractContextManager[None]:
    """Inside, this context's forwards of `lm` hand the output layer only the contexts one side reads (logits
    [1, columns.total, vocabulary]) and set `columns.diffs` from two weight rows at each pair context.

    Args:
        lm: a model whose output layer is plain (`plain_output_layer`).
        columns: the ContrastColumns of the batch about to run.

    Returns:
        A context manager; the hook comes off on every path.
    """

    def pair_logits(module: Any, hidden: torch.Tensor) -> None:
        if not columns.pair_rows.numel():
            columns.diffs = hidden.new_zeros(0, dtype=torch.float32)
            return
        at = hidden[columns.pair_rows.to(hidden.device), columns.pair_columns.to(hidden.device)]  # [P, hidden]
        targets = columns.pair_targets.to(module.weight.device)  # the head may sit on another GPU
        weights = module.weight[targets]  # [P, 2, hidden]
        logits = torch.einsum("ph,pkh->pk", at.to(weights.device, weights.dtype), weights).float()
        if module.bias is not None:
            logits = logits + module.bias[targets].float()
        columns.diffs = logits[:, 0] - logits[:, 1]

    return only_read_columns(lm, columns, before=pair_logits)


def margin_parts(logits: torch.Tensor, columns: ContrastColumns) -> list[list[float]]:
    """Each response's part of its pair's margin: chosen's part - rejected's part = log P(chosen) - log P(rejected).

    Args:
        logits: [1, columns.total, vocabulary] from a forward inside `only_contrast_columns` (overwritten when
            already float32).
        columns: the ContrastColumns it ran with (their `diffs` set).

    Returns:
        Per packed row, one part per response.
    """
    parts = torch.zeros(sum(columns.counts), dtype=torch.float64)
    if columns.total:
        parts.index_add_(0, columns.owners, token_logprobs(logits, columns.reads, columns.targets))
    if columns.pair_owners.numel():
        if columns.diffs is None:
            raise ValueError("No logit differences: run the forward inside only_contrast_columns.")
        parts.index_add_(0, columns.pair_owners, columns.diffs.double().cpu())
    out, at = [], 0
    for count in columns.counts:
        out.append(parts[at:at + count].tolist())
        at += count
    return out
