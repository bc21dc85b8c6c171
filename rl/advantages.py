"""Group-relative advantages for module-call samples of several rollouts of the same state.

A rollout of the program makes many module calls (Summarize, Plan, Act, ...), and the G rollouts
of one state make different numbers of them. A sample's group is every sample with the same key
``(task, start turn, turn, module, call index)`` across the G rollouts: the k-th Act call of turn
t is compared only with the other rollouts' k-th Act call of turn t. Its baseline is the mean
reward of the *other* rollouts in the group (leave-one-out, so a sample's own reward never lowers
its advantage). A call that only one rollout made (a 5th Act step) has no peers; it falls back to
the coarser key ``key[:fallback]`` (default: the same turn of the same state), and gets 0 when no
other rollout reached that turn either.
"""

from collections import defaultdict
from collections.abc import Hashable, Sequence
from statistics import mean, pstdev

FALLBACK_KEY_LENGTH = 3  # (task, start turn, turn)


def group_advantages(
    keys: Sequence[tuple],
    rollouts: Sequence[Hashable],
    rewards: Sequence[float],
    fallback: int = FALLBACK_KEY_LENGTH,
    scale: bool = False,
) -> list[float]:
    """One advantage per sample: its reward minus the leave-one-out mean of its group.

    Args:
        keys: each sample's group key; ``key[:fallback]`` is the coarser key tried for singletons.
        rollouts: which rollout each sample came from (samples of one rollout never baseline each other).
        rewards: each sample's reward.
        fallback: length of the coarser key; 0 disables the fallback (singletons get 0).
        scale: divide by the group's reward standard deviation (GRPO); off by default, as in
            Dr. GRPO, because it over-weights groups whose rewards barely differ.
    """
    if not len(keys) == len(rollouts) == len(rewards):
        raise ValueError(f"got {len(keys)} keys, {len(rollouts)} rollouts and {len(rewards)} rewards")
    fine = _per_rollout(keys, rollouts, rewards)
    coarse = _per_rollout([key[:fallback] for key in keys], rollouts, rewards) if fallback else {}
    advantages = []
    for key, rollout, reward in zip(keys, rollouts, rewards, strict=True):
        group = fine[key]
        if len(group) < 2 and fallback:
            group = coarse[key[:fallback]]
        others = [value for other, value in group.items() if other != rollout]
        if not others:
            advantages.append(0.0)
            continue
        advantage = reward - mean(others)
        if scale:
            spread = pstdev(group.values())
            advantage = advantage / (spread + 1e-4)
        advantages.append(advantage)
    return advantages


def zero_spread_share(keys: Sequence[tuple], rollouts: Sequence[Hashable], rewards: Sequence[float]) -> float:
    """Share of groups with at least two rollouts whose rewards are all equal (no learning signal)."""
    groups = [g for g in _per_rollout(keys, rollouts, rewards).values() if len(g) > 1]
    if not groups:
        return 1.0
    return sum(max(g.values()) - min(g.values()) < 1e-9 for g in groups) / len(groups)


def _per_rollout(keys: Sequence[tuple], rollouts: Sequence[Hashable], rewards: Sequence[float]) -> dict:
    """``{key: {rollout: mean reward of that rollout's samples under key}}``."""
    collected: dict[tuple, dict[Hashable, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key, rollout, reward in zip(keys, rollouts, rewards, strict=True):
        collected[key][rollout].append(reward)
    return {key: {r: mean(values) for r, values in by_rollout.items()} for key, by_rollout in collected.items()}
