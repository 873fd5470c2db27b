"""A seeded, stratified subset of the samples for quick adversarial runs (``--attack-samples N``).

Attacks are expensive, so a CI run may attack only N samples. The subset is
stratified by subgroup and class so every (group values..., class) stratum is
represented, and it is a pure function of the sample keys, their strata, N and
the seed: it does not depend on the order of the samples, the batch size or
the shard.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from audit.contract.seeds import derive_seed


def _rank(seed: int, key: int) -> int:
    """A seeded pseudo-random sort key for one sample (independent of its position)."""
    return derive_seed(seed, "attack-subset", int(key))


def _allocate(sizes: list[int], n: int) -> list[int]:
    """How many samples each stratum gets: proportional quotas ``n * size / total``
    rounded by largest remainder (Hamilton), with at least one per stratum when
    ``n`` allows (taken back from the most over-allocated strata).

    >>> _allocate([6, 3, 1], 5)
    [3, 1, 1]
    """
    total, count = sum(sizes), len(sizes)
    if n >= total:
        return list(sizes)
    if n < count:  # not every stratum can get one: favour the largest (ties: first)
        keep = set(sorted(range(count), key=lambda s: -sizes[s])[:n])
        return [1 if s in keep else 0 for s in range(count)]
    quotas = [n * size / total for size in sizes]
    alloc = [max(1, int(q)) for q in quotas]
    while sum(alloc) < n:  # the largest remainder among strata with room
        s = max((s for s in range(count) if alloc[s] < sizes[s]), key=lambda s: (quotas[s] - alloc[s], -s))
        alloc[s] += 1
    while sum(alloc) > n:  # the most over-allocated stratum that keeps one
        s = max((s for s in range(count) if alloc[s] > 1), key=lambda s: (alloc[s] - quotas[s], -s))
        alloc[s] -= 1
    return alloc


def stratified_subset(
    sample_keys: Sequence[int] | Tensor,
    strata: Sequence[Hashable],
    n: int,
    *,
    seed: int,
) -> list[int]:
    """Pick ``n`` samples, stratified by ``strata``, reproducibly.

    Allocation is proportional to stratum size with at least one sample per
    stratum when ``n`` is at least the number of strata (otherwise the largest
    strata get one each). Within a stratum the samples with the smallest
    ``derive_seed(seed, "attack-subset", key)`` are taken.

    Args:
        sample_keys: one int key per sample (e.g. :func:`stressors.base.sample_keys`);
            a list or a 1-D integer tensor.
        strata: one hashable per sample, e.g. ``(skin_tone, camera, label)``.
        n: the subset size; ``n >= len(sample_keys)`` returns every index.
        seed: the audit seed.

    Returns:
        Sorted positions (into ``sample_keys``) of the chosen samples; exactly
        ``min(n, len(sample_keys))`` of them.

    Raises:
        ValueError: lengths differ, duplicate keys, or ``n`` < 0.

    Example:
        >>> stratified_subset([10, 11, 12, 13], [("a", 0), ("a", 0), ("b", 1), ("b", 1)], 2, seed=0)
        [0, 3]
    """
    keys = sample_keys.tolist() if isinstance(sample_keys, Tensor) else [int(k) for k in sample_keys]
    if len(keys) != len(strata):
        raise ValueError(f"stratified_subset: {len(keys)} sample keys but {len(strata)} strata")
    if len(set(keys)) != len(keys):
        raise ValueError("stratified_subset: sample keys must be unique")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"stratified_subset: n must be an integer >= 0, got {n!r}")
    members: dict[Hashable, list[int]] = {}
    for index, stratum in enumerate(strata):
        members.setdefault(stratum, []).append(index)
    # A canonical stratum order (not first appearance) keeps the result order-free.
    order = sorted(members, key=repr)
    alloc = _allocate([len(members[s]) for s in order], n)
    chosen: list[int] = []
    for stratum, take in zip(order, alloc):
        ranked = sorted(members[stratum], key=lambda i: _rank(seed, keys[i]))
        chosen.extend(ranked[:take])
    return sorted(chosen)


def subset_mask(num_samples: int, indices: Sequence[int]) -> Tensor:
    """A (num_samples,) bool mask that is True at ``indices``."""
    mask = torch.zeros(num_samples, dtype=torch.bool)
    mask[list(indices)] = True
    return mask
