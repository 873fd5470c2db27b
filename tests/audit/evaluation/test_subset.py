"""Tests of the stratified attack subset (--attack-samples)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from audit.evaluation.subset import stratified_subset, subset_mask


def population(n: int = 500, seed: int = 0):
    rng = random.Random(seed)
    keys = rng.sample(range(10**12), n)
    strata = [
        (rng.choice(["dark", "light", "medium"]), rng.choice(["cam_a", "cam_b"]), rng.randrange(4)) for _ in range(n)
    ]
    strata[0] = ("rare", "cam_c", 9)  # a stratum of one sample
    return keys, strata


def test_exact_size_and_sorted():
    keys, strata = population()
    for n in (0, 1, 30, 77, 499, 500, 10_000):
        subset = stratified_subset(keys, strata, n, seed=0)
        assert len(subset) == min(n, len(keys))
        assert subset == sorted(set(subset))


def test_every_stratum_is_represented_and_allocation_is_proportional():
    keys, strata = population()
    n = 100
    subset = stratified_subset(keys, strata, n, seed=0)
    sizes, got = Counter(strata), Counter(strata[i] for i in subset)
    assert set(got) == set(sizes)
    for stratum, size in sizes.items():
        assert abs(got[stratum] - n * size / len(keys)) <= 1.5, stratum


def test_deterministic_and_seeded():
    keys, strata = population()
    a = stratified_subset(keys, strata, 50, seed=0)
    assert a == stratified_subset(keys, strata, 50, seed=0)
    assert a == stratified_subset(torch.tensor(keys, dtype=torch.int64), strata, 50, seed=0)
    assert a != stratified_subset(keys, strata, 50, seed=1)


def test_independent_of_sample_order():
    keys, strata = population()
    chosen = {keys[i] for i in stratified_subset(keys, strata, 60, seed=3)}
    perm = list(range(len(keys)))
    random.Random(1).shuffle(perm)
    shuffled = stratified_subset([keys[i] for i in perm], [strata[i] for i in perm], 60, seed=3)
    assert {keys[perm[j]] for j in shuffled} == chosen


def test_fewer_samples_than_strata_takes_the_largest():
    keys = list(range(6))
    strata = ["a", "a", "a", "b", "b", "c"]
    assert sorted({strata[i] for i in stratified_subset(keys, strata, 2, seed=0)}) == ["a", "b"]


def test_bad_input():
    with pytest.raises(ValueError, match="3 sample keys but 2 strata"):
        stratified_subset([1, 2, 3], ["a", "b"], 1, seed=0)
    with pytest.raises(ValueError, match="unique"):
        stratified_subset([1, 1], ["a", "b"], 1, seed=0)
    with pytest.raises(ValueError, match="n must be"):
        stratified_subset([1, 2], ["a", "b"], -1, seed=0)


def test_subset_mask():
    assert subset_mask(4, [0, 2]).tolist() == [True, False, True, False]
