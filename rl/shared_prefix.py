"""Shared prompt prefixes in PAG-RL's update: rows that begin with the same tokens run them once.

A state's G rollouts start from the same replayed context, so their module calls repeat a prompt of
1.5-2.5k tokens (system prompt, tool docs, the transcript so far) and part ways in its last few
hundred tokens at most. The loss needs each row's completion log-probs, with gradients through the
whole prompt (LoRA adapts every layer). One forward of the rows' common prefix, whose keys and values
every row's remaining tokens then attend to, gives the same log-probs and, since autograd sums the
prefix's gradient over the rows, the same gradients: the same sums in another order, for the prefix's
compute once instead of once per row.

Rows arrive as TRL lays them out: the prompt left-padded, the completion right-padded, the last
``logits_to_keep`` columns the completion's.
"""

import torch


def real_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """Each row's tokens without its padding."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]


def common_length(first: list[int], second: list[int]) -> int:
    """How many tokens ``first`` and ``second`` begin with in common."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def shared_length(prompts: list[list[int]]) -> int:
    """Tokens every prompt begins with that one forward can serve: short of each prompt's last token,
    whose position predicts the completion's first. ``prompts`` in sorted order (the first and the last
    then share the least)."""
    return max(0, min(common_length(prompts[0], prompts[-1]), min(len(p) for p in prompts) - 1))


def plan_pieces(tokens: list[list[int]], prompts: list[list[int]], rows_per_piece: int, share: bool,
                equal_rows: bool = False) -> list[list[int]]:
    """Row indices in pieces whose forward costs at most ``rows_per_piece`` times the longest row: a piece of
    n rows costs n x its longest row, or, with ``share``, its shared prefix once plus n x its longest
    remainder. With ``share`` rows go in token order, so that rows with a common prefix meet.
    ``equal_rows``: pieces of ``rows_per_piece`` rows each instead (the processes of a distributed run
    must gather per-row figures of the same size)."""
    if not tokens:
        return []
    order = sorted(range(len(tokens)), key=lambda i: prompts[i]) if share else list(range(len(tokens)))
    if equal_rows:
        return [order[start:start + rows_per_piece] for start in range(0, len(order), rows_per_piece)]
    budget = rows_per_piece * max(len(t) for t in tokens)

    def cost(piece: list[int]) -> int:
        prefix = shared_length([prompts[i] for i in piece]) if share else 0
        return prefix + len(piece) * max(len(tokens[i]) - prefix for i in piece)

    pieces: list[list[int]] = []
    for row in order:
        if pieces and cost(pieces[-1] + [row]) <= budget:
            pieces[-1].append(row)
        else:
            pieces.append([row])
    return pieces


def contiguous(attention_mask: torch.Tensor) -> bool:
    """Whether every row's real tokens are one run (left padding, then tokens, then right padding)."""
    mask = attention_mask.bool()
    first = mask.int().argmax(1)
    last = mask.size(1) - 1 - mask.flip(1).int().argmax(1)
    return bool((mask.sum(1) == torch.where(mask.any(1), last - first + 1, 0)).all())


def prefix_log_probs(model, prefix_model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                     shared: int, compute_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The completion tokens' log-probs (and entropies) of rows that begin with the same ``shared`` real
    tokens, as TRL's ``_get_per_token_logps_and_entropies`` returns them (``(rows, logits_to_keep)``,
    zero past each completion), from one forward of the prefix and one of the rows' remainders.

    ``model`` is the policy with TRL's fused log-prob head; ``prefix_model`` the same weights without a
    distributed wrapper, so that a piece makes one wrapped forward whether or not it shares a prefix (the
    prefix's gradients reach the parameters through the remainder's backward). The caller holds the
    autocast context."""
    rows, width = input_ids.shape
    mask = attention_mask.bool()
    starts, lengths = mask.int().argmax(1), mask.sum(1)
    prompt_lengths = mask[:, :width - logits_to_keep].sum(1)
    completion_lengths = lengths - prompt_lengths
    first = int(starts[0])
    prefix = input_ids[:1, first:first + shared]
    cache = prefix_model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                         logits_to_keep=1).cache
    cache.batch_repeat_interleave(rows)

    remainders = lengths - shared
    span = int(remainders.max())
    columns = torch.arange(span, device=input_ids.device)
    used = columns[None] < remainders[:, None]
    taken = (starts + shared)[:, None] + columns[None]
    suffix = torch.where(used, input_ids.gather(1, taken.clamp(max=width - 1)), 0)
    completion = used & (shared + columns[None] >= prompt_lengths[:, None])
    labels = suffix.masked_fill(~completion, -100)
    suffix_mask = torch.cat([torch.ones(rows, shared, dtype=attention_mask.dtype, device=input_ids.device),
                             used.to(attention_mask.dtype)], dim=1)
    outputs = model(input_ids=suffix, attention_mask=suffix_mask, cache=cache, labels=labels, fused_lm_head=True)

    # Output column c scores the remainder's token c + 1; completion token j is the row's token prompt + j.
    keep = torch.arange(logits_to_keep, device=input_ids.device)
    index = ((prompt_lengths - shared - 1)[:, None] + keep[None]).clamp(0, max(span - 2, 0))
    valid = keep[None] < completion_lengths[:, None]

    def completion_columns(values: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, values.gather(1, index), values.new_zeros(()))

    entropy = completion_columns(outputs.entropy) if compute_entropy else None
    return completion_columns(outputs.log_probs), entropy
