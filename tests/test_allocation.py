"""Divergence scores and the elastic allocator (common/allocation.py): hand-computed values, budgets, exploration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.allocation import AllocationConfig, Assignment, DivergenceTracker, allocate, cohort_divergence
from common.clock import compute_budget_flops
from common.groups import SHARED, GroupRegistry
from common.model import ModelConfig, build_model
from common.profiles import load_profile

MODS = {"a": 3, "b": 3, "c": 1}
PROFILES = ["rpi4", "orin-nano", "orin-15w", "orin-30w", "orin-maxn", "x86-host"]
OWNED_SETS = [("a",), ("c",), ("a", "b"), ("b", "c"), ("a", "b", "c")]
BATCH = 8

_REGISTRIES: dict[str, GroupRegistry] = {}


def registry(regime: str) -> GroupRegistry:
    if regime not in _REGISTRIES:
        _REGISTRIES[regime] = GroupRegistry(build_model(ModelConfig(regime=regime), MODS, num_classes=4, window=16))
    return _REGISTRIES[regime]


def pricer(reg: GroupRegistry):
    return lambda present, trained: reg.step_flops(present, trained).total


def run_allocate(
    reg: GroupRegistry,
    owned: tuple[str, ...],
    full: int,
    budget: float | None,
    scores: dict[str, float] | None = None,
    cfg: AllocationConfig | None = None,
    batch: int = BATCH,
) -> Assignment:
    groups = reg.groups_for(owned)
    return allocate(
        owned, groups, reg.shared_groups, full, budget, scores or {}, pricer(reg), cfg or AllocationConfig(), batch
    )


def full_cost(reg: GroupRegistry, owned: tuple[str, ...], full: int) -> float:
    return reg.step_flops(owned, reg.groups_for(owned)).total * full


# ---------------------------------------------------------------------------------------------------- divergence


def test_cohort_divergence_hand_computed() -> None:
    # d1 = [1, 0] (weight 1), d2 = [3, 0] (weight 3): w = [1/4, 3/4], mean = [2.5, 0]
    # spread = 1/4 * 1.5^2 + 3/4 * 0.5^2 = 0.75; energy = 1/4 * 1 + 3/4 * 9 = 7
    deltas = [np.array([1.0, 0.0]), np.array([3.0, 0.0])]
    assert cohort_divergence(deltas, [1, 3], "raw") == pytest.approx(0.75)
    assert cohort_divergence(deltas, [1, 3], "relative") == pytest.approx(0.75 / 7)
    assert cohort_divergence(deltas, [1, 3], "stderr") == pytest.approx(0.75 / 7 / 2)
    # Weights are relative: scaling them changes nothing; unequal weights matter (equal: spread 1, energy 5).
    assert cohort_divergence(deltas, [10, 30], "raw") == pytest.approx(0.75)
    assert cohort_divergence(deltas, [1, 1], "relative") == pytest.approx(1 / 5)
    # Three members, 2-D: d = [1,1], [-1,1], [0,4] equal weights: mean [0,2]; spread = (1+1 + 1+1 + 0+4)/3 = 8/3;
    # energy = (2 + 2 + 16)/3 = 20/3 -> relative 0.4, stderr 0.4/3
    three = [np.array([1.0, 1.0]), np.array([-1.0, 1.0]), np.array([0.0, 4.0])]
    assert cohort_divergence(three, [1, 1, 1], "raw") == pytest.approx(8 / 3)
    assert cohort_divergence(three, [1, 1, 1], "relative") == pytest.approx(0.4)
    assert cohort_divergence(three, [1, 1, 1], "stderr") == pytest.approx(0.4 / 3)


def test_relative_divergence_is_scale_free_and_raw_is_not() -> None:
    deltas = [np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 2.0])]
    small = [0.001 * d for d in deltas]
    assert cohort_divergence(small, [2, 5], "relative") == pytest.approx(cohort_divergence(deltas, [2, 5], "relative"))
    assert cohort_divergence(small, [2, 5], "raw") == pytest.approx(1e-6 * cohort_divergence(deltas, [2, 5], "raw"))


@pytest.mark.parametrize("norm", ["raw", "relative", "stderr"])
def test_cohort_of_one_and_identical_updates(norm: str) -> None:
    one = cohort_divergence([np.array([0.3, -4.0])], [7], norm)
    assert one == (0.0 if norm == "raw" else 1.0)  # no spread; relative/stderr: maximal uncertainty
    same = [np.array([0.3, -4.0, 2.0])] * 4
    assert cohort_divergence(same, [1, 2, 3, 4], norm) == pytest.approx(0.0, abs=1e-15)
    assert cohort_divergence([np.zeros(3), np.zeros(3)], [1, 1], norm) == 0.0  # zero energy is not a division error


def test_tracker_smooths_counts_and_scores() -> None:
    cfg = AllocationConfig(divergence_norm="raw", smoothing=0.25, exploration=0.3)
    tr = DivergenceTracker(["mod.a", "mod.b"], cfg)
    spread_075 = ([np.array([1.0, 0.0]), np.array([3.0, 0.0])], [1, 3])  # raw 0.75
    spread_0 = ([np.array([1.0]), np.array([1.0])], [1, 1])  # raw 0
    tr.observe({"mod.a": spread_075, "mod.b": ([], [])})  # an empty cohort is not an observation
    assert tr.divergence == {"mod.a": pytest.approx(0.75)} and tr.observations == {"mod.a": 1}
    tr.observe({"mod.a": spread_0, "mod.b": spread_075})
    assert tr.divergence["mod.a"] == pytest.approx(0.75 * 0.75 + 0.25 * 0.0)  # EMA: (1 - beta) old + beta new
    assert tr.divergence["mod.b"] == pytest.approx(0.75)  # first observation taken as is
    assert tr.observations == {"mod.a": 2, "mod.b": 1}
    s = tr.scores(4)
    # normalised by the top divergence (0.75): a -> 0.5625/0.75 = 0.75, b -> 1; bonus 0.3*sqrt(ln 5/(n+1))
    assert s["mod.a"] == pytest.approx(0.75 + 0.3 * math.sqrt(math.log(5) / 3))
    assert s["mod.b"] == pytest.approx(1.0 + 0.3 * math.sqrt(math.log(5) / 2))
    assert tr.state()["observations"] == {"mod.a": 2.0, "mod.b": 1.0}


def test_a_never_observed_group_scores_as_the_most_divergent_one() -> None:
    # Unknown spread is not zero spread: b (never trained) is scored like the top observed group, plus its larger
    # bonus (n = 0), so it outranks a group observed with the highest divergence.
    tr = DivergenceTracker(["mod.a", "mod.b"], AllocationConfig(divergence_norm="raw", exploration=0.3))
    tr.observe({"mod.a": ([np.array([1.0]), np.array([3.0])], [1, 1])})
    s = tr.scores(2)
    assert s["mod.a"] == pytest.approx(1.0 + 0.3 * math.sqrt(math.log(3) / 2))
    assert s["mod.b"] == pytest.approx(1.0 + 0.3 * math.sqrt(math.log(3)))
    assert s["mod.b"] > s["mod.a"]


def test_scores_without_observations_are_the_exploration_bonus_alone() -> None:
    tr = DivergenceTracker(["mod.a", "mod.b"], AllocationConfig(exploration=0.3))
    s = tr.scores(1)
    assert s["mod.a"] == s["mod.b"] == pytest.approx(0.3 * math.sqrt(math.log(2)))
    assert DivergenceTracker(["mod.a"], AllocationConfig(exploration=0.0)).scores(5) == {"mod.a": 0.0}


# ---------------------------------------------------------------------------------------------------- allocation


def check_assignment(
    reg: GroupRegistry, a: Assignment, owned: tuple[str, ...], full: int, budget: float | None
) -> None:
    """The invariants every assignment satisfies (skip mode, registry prices)."""
    groups = reg.groups_for(owned)
    mod_groups = [g for g in a.train if g != SHARED]
    assert SHARED in a.train, "shared groups are always assigned"
    assert set(a.train) <= set(groups), "never a group of a modality the device does not own"
    assert list(a.train) == [g for g in groups if g in a.train], "registry order"
    assert mod_groups, "at least one modality group"
    assert a.present == tuple(m for m in owned if f"mod.{m}" in a.train)  # unassigned modalities are not run
    assert a.send == a.train
    assert a.full_samples == full and 0 < a.samples <= full
    assert a.samples % BATCH == 0 or a.samples == full, "elastic work comes in whole batches"
    assert a.flops == pytest.approx(reg.step_flops(a.present, a.train).total * a.samples, rel=1e-12)
    if budget is None or budget >= full_cost(reg, owned, full):
        assert a.train == tuple(groups) and a.samples == full, "a device fast enough trains everything it owns"
    elif a.flops > budget:
        # The one documented exception, and it is minimal: one batch of one modality group (+ shared), and only
        # when even that much does not fit.
        assert len(mod_groups) == 1 and a.samples == min(BATCH, full)
        assert reg.step_flops(a.present, a.train).total * min(BATCH, full) > budget


@pytest.mark.parametrize("regime", ["lora", "cnn"])
@pytest.mark.parametrize("profile", PROFILES)
def test_budgets_from_device_profiles_are_respected(regime: str, profile: str) -> None:
    reg = registry(regime)
    prof = load_profile(profile)
    rng = np.random.default_rng(PROFILES.index(profile))
    for owned in OWNED_SETS:
        nbytes = reg.nbytes(reg.groups_for(owned))
        for full in (5, 64, 600, 5000):
            for deadline in (0.02, 0.05, 0.1, 0.3, 1.0, 5.0):
                budget = compute_budget_flops(prof, deadline, nbytes, nbytes, steps=-(-full // BATCH))
                scores = {f"mod.{m}": float(s) for m, s in zip(MODS, rng.random(3), strict=True)}
                a = run_allocate(reg, owned, full, budget, scores)
                check_assignment(reg, a, owned, full, budget)


@pytest.mark.parametrize("regime", ["lora", "cnn"])
@pytest.mark.parametrize("owned", OWNED_SETS)
def test_budget_sweep_respects_the_budget(regime: str, owned: tuple[str, ...]) -> None:
    reg = registry(regime)
    full = 200
    total = full_cost(reg, owned, full)
    seen_partial = False
    for fraction in [0.0, 1e-4, 0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.999, 1.0, 1.5]:
        budget = fraction * total
        a = run_allocate(reg, owned, full, budget, {"mod.a": 0.9, "mod.b": 0.5, "mod.c": 0.7})
        check_assignment(reg, a, owned, full, budget)
        seen_partial |= a.samples < full
    assert seen_partial


@pytest.mark.parametrize("regime", ["lora", "cnn"])
def test_fast_device_trains_all_it_owns_with_full_samples(regime: str) -> None:
    reg = registry(regime)
    owned = ("a", "c")
    full = 97  # not a whole number of batches: full work is still full work
    total = full_cost(reg, owned, full)
    for budget in (None, total, 2 * total, 1e30):
        a = run_allocate(reg, owned, full, budget, {"mod.a": 0.0, "mod.c": 0.0})
        assert a.train == ("mod.a", "mod.c", SHARED) and a.present == owned
        assert a.samples == a.full_samples == full and a.work_fraction == 1.0
        assert a.flops == pytest.approx(total)
    # Just below the full cost it no longer trains everything at full work.
    a = run_allocate(reg, owned, full, total * (1 - 1e-9), {"mod.a": 0.0, "mod.c": 0.0})
    assert a.flops <= total * (1 - 1e-9) and (a.samples < full or len(a.train) < 3)


@pytest.mark.parametrize("regime", ["lora", "cnn"])
@pytest.mark.parametrize("min_work_fraction", [0.0, 0.25, 1.0])
def test_exception_one_batch_of_the_best_group_and_no_more(regime: str, min_work_fraction: float) -> None:
    reg = registry(regime)
    cfg = AllocationConfig(min_work_fraction=min_work_fraction)
    owned = ("a", "b", "c")
    scores = {"mod.a": 0.1, "mod.b": 1.0, "mod.c": 0.1}  # b is best per unit cost
    one_batch_b = reg.step_flops(["b"], ["mod.b", SHARED]).total * BATCH
    for budget in (0.0, 1.0, 0.5 * one_batch_b, one_batch_b * (1 - 1e-9)):
        a = run_allocate(reg, owned, 1000, budget, scores, cfg)
        assert a.train == ("mod.b", SHARED), (budget, a)
        assert a.present == ("b",) and a.samples == BATCH
        assert a.flops == pytest.approx(one_batch_b) and a.flops > budget  # the exception: over budget, minimally
    # Exactly one batch fits: the same work, now within budget.
    a = run_allocate(reg, owned, 1000, one_batch_b, scores, cfg)
    assert a.train == ("mod.b", SHARED) and a.samples == BATCH and a.flops <= one_batch_b
    # Full work smaller than a batch: the exception is the full work, not a whole batch.
    a = run_allocate(reg, owned, 3, 0.0, scores, cfg)
    assert a.train == ("mod.b", SHARED) and a.samples == 3


def test_greedy_choice_follows_score_per_cost() -> None:
    reg = registry("lora")
    owned = ("a", "b")
    full = 400
    # Budget for one modality group at ~40% of full work, not for two at >= 25%.
    budget = 0.2 * full_cost(reg, owned, full)
    for best in ("a", "b"):
        scores = {"mod.a": 0.1, "mod.b": 0.1, f"mod.{best}": 1.0}
        a = run_allocate(reg, owned, full, budget, scores)
        assert a.train == (f"mod.{best}", SHARED) and a.flops <= budget
    # With a budget for both at >= min_work_fraction, both are trained (on partial work).
    budget = 0.5 * full_cost(reg, owned, full)
    a = run_allocate(reg, owned, full, budget, {"mod.a": 1.0, "mod.b": 0.1})
    assert a.train == ("mod.a", "mod.b", SHARED) and a.samples < full and a.flops <= budget


@pytest.mark.parametrize("regime", ["lora", "cnn"])
def test_elastic_samples_scale_with_budget_in_whole_batches(regime: str) -> None:
    reg = registry(regime)
    owned = ("a",)
    full = 1000
    per_sample = reg.step_flops(owned, reg.groups_for(owned)).total
    previous = full + 1
    for fraction in [1.0, 0.999, 0.9, 0.7, 0.5, 0.33, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005]:
        budget = fraction * per_sample * full
        a = run_allocate(reg, owned, full, budget)
        expected = full if fraction == 1.0 else max(BATCH, int(budget // per_sample) // BATCH * BATCH)
        assert a.samples == expected, (fraction, a.samples, expected)
        assert a.samples % BATCH == 0 or a.samples == full
        assert a.samples <= previous  # less budget, never more work
        # ... and as much as fits: one more batch would break the budget.
        assert a.samples == full or a.samples == BATCH or (a.samples + BATCH) * per_sample > budget
        previous = a.samples
    assert previous == BATCH  # the sweep reached the floor of one batch


# ---------------------------------------------------------------------------------------------------- exploration

EXPLORATION_ROUNDS = 30


def test_exploration_reaches_every_owned_group_within_a_bounded_number_of_rounds() -> None:
    """Every device owns a and b but can afford only one of them per round, and a's cohort always disagrees much more
    than b's. Exploration must still assign b within EXPLORATION_ROUNDS rounds.

    Bound: an owned group that was never observed is scored as the most divergent observed group plus the full
    bonus c*sqrt(ln(t+1)), which beats every observed group's 1 + c*sqrt(ln(t+1)/(n+1)) from round 2 on (equal
    costs here), so b is reached by round 2; 30 is a generous documented bound. (Scoring an unobserved group as
    zero divergence would need ln(t+1) > (1/c)^2, i.e. ~66,000 rounds at c = 0.3.)
    """
    reg = GroupRegistry(build_model(ModelConfig(regime="lora"), {"a": 3, "b": 3}, num_classes=4, window=16))
    cfg = AllocationConfig()
    owned = ("a", "b")
    full = 64
    budget = 0.2 * full_cost(reg, owned, full)
    one_group = run_allocate(reg, owned, full, budget, {"mod.a": 1.0, "mod.b": 0.0})
    assert one_group.train == ("mod.a", SHARED)  # the budget really fits only one modality group
    tracker = DivergenceTracker(["mod.a", "mod.b"], cfg)
    rng = np.random.default_rng(0)
    first_round: dict[str, int] = {}
    spread = {"mod.a": 1.0, "mod.b": 0.001}
    for t in range(1, EXPLORATION_ROUNDS + 1):
        scores = tracker.scores(t)
        cohort: dict[str, tuple[list[np.ndarray], list[float]]] = {}
        for _device in range(4):
            a = run_allocate(reg, owned, full, budget, scores, cfg)
            assert a.flops <= budget
            for g in a.train:
                if g == SHARED:
                    continue
                first_round.setdefault(g, t)
                cohort.setdefault(g, ([], []))
                cohort[g][0].append(np.ones(16) + spread[g] * rng.standard_normal(16))
                cohort[g][1].append(float(a.samples))
        tracker.observe(cohort)
    assert set(first_round) == {"mod.a", "mod.b"}, f"never assigned: {sorted({'mod.a', 'mod.b'} - set(first_round))}"
    assert max(first_round.values()) <= EXPLORATION_ROUNDS
    # The observed divergences are as set up: a's cohort disagrees far more than b's.
    assert tracker.divergence["mod.a"] > 100 * tracker.divergence["mod.b"]
