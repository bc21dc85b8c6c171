"""Deterministic train/dev/test splits by task index.

Indices are ordered by the SHA-256 of ``"parlmt-split-v1:<index>"``; the first 60% are
``train``, the next 10% ``dev``, the rest ``test`` (BFCL: 120/20/60 of 200). The assignment
depends only on the index and the count, so it never changes with file order, and BFCL's
categories, whose entry k is the same scenario in all four (base, miss_func, miss_param,
long_context variants of one conversation), put entry k in the same split: data bootstrapping
and RL on train never see a test scenario through another category.

Benchmarks that ship their own train/test split keep it; ``carve_dev`` takes dev out of train.
"""

import functools
import hashlib
from collections.abc import Sequence

SPLITS = ("train", "dev", "test")
FRACTIONS = {"train": 0.6, "dev": 0.1, "test": 0.3}
_SALT = "parlmt-split-v1"


@functools.cache
def split_indices(count: int) -> dict[str, tuple[int, ...]]:
    """The sorted task indices of each split, for ``count`` tasks."""
    order = sorted(range(count), key=lambda i: hashlib.sha256(f"{_SALT}:{i}".encode()).hexdigest())
    n_train = round(count * FRACTIONS["train"])
    n_dev = round(count * FRACTIONS["dev"])
    bounds = {"train": (0, n_train), "dev": (n_train, n_train + n_dev), "test": (n_train + n_dev, count)}
    return {name: tuple(sorted(order[start:end])) for name, (start, end) in bounds.items()}


def split_of(index: int, count: int) -> str:
    """The split of task ``index`` among ``count`` tasks."""
    for name, indices in split_indices(count).items():
        if index in indices:
            return name
    raise IndexError(f"task index {index} is outside 0..{count - 1}")


def fixed_share(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` alone (its SHA-256): a subset chosen with it is the same on every
    run and machine, and independent of how anything performed."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def carve_dev(train: Sequence[str], salt: str) -> set[str]:
    """The ids of a fixed ``train`` set that move to ``dev`` (benchmarks with their own train/test
    split, such as tau2): ``FRACTIONS['dev'] / (train + dev)`` of them, ordered by the SHA-256 of
    ``"parlmt-split-v1:<salt>:<id>"``, so the choice depends only on the ids."""
    share = FRACTIONS["dev"] / (FRACTIONS["train"] + FRACTIONS["dev"])
    order = sorted(train, key=lambda name: hashlib.sha256(f"{_SALT}:{salt}:{name}".encode()).hexdigest())
    return set(order[: round(len(order) * share)])
