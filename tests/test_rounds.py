"""The server's round core without Flower (common/rounds.py): plan, validate, deadline, cohort-wise aggregation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from common.allocation import AllocationConfig, Assignment
from common.clock import ClockConfig, client_cost
from common.groups import SHARED
from common.model import ModelConfig, build_model
from common.profiles import load_profile
from common.rounds import ClientInfo, Reply, ServerCore

MODS = {"a": 3, "b": 3, "c": 1}
BATCH = 8


def make_core(
    strategy: str = "relief", regime: str = "lora", max_update_norm: float | None = None, factor: float = 2.0
) -> ServerCore:
    torch.manual_seed(0)
    model = build_model(ModelConfig(regime=regime), MODS, num_classes=4, window=16)
    with torch.no_grad():  # non-zero B and head, so no group is trivially all-zero
        model.lora_b.normal_()
    return ServerCore(
        strategy,
        model,
        allocation=AllocationConfig(),
        clock=ClockConfig(deadline_mode="fastest", deadline_factor=factor),
        local_epochs=1.0,
        batch_size=BATCH,
        max_update_norm=max_update_norm,
    )


def client(cid: str, mods: tuple[str, ...], profile: str = "orin-maxn", samples: int = 40) -> ClientInfo:
    return ClientInfo(cid, mods, samples, load_profile(profile), profile)


# Three tiers; only k_abc owns c, only k_abc and k_ab own b.
def three_clients(samples: int = 40) -> list[ClientInfo]:
    return [
        client("k_abc", ("a", "b", "c"), "orin-maxn", samples),
        client("k_ab", ("a", "b"), "orin-nano", samples),
        client("k_a", ("a",), "rpi4", samples),
    ]


def snapshot(core: ServerCore) -> dict[str, bytes]:
    """Every parameter of the model (frozen backbone included), as raw bytes."""
    return {n: p.detach().cpu().numpy().tobytes() for n, p in core.model.named_parameters()}


def trained_arrays(core: ServerCore, plan: Assignment, seed: int, scale: float = 0.1) -> dict[str, np.ndarray]:
    """What an honest client returns: current value + a random update, for exactly its assigned groups."""
    rng = np.random.default_rng(seed)
    current = core.registry.read(plan.train)
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(np.float32) for k, v in current.items()}


def reply(core: ServerCore, cid: str, arrays: dict[str, np.ndarray] | None = None, seed: int = 0, **kw) -> Reply:
    plan = core.plans[cid]
    fields = {"samples": plan.samples, "flops": plan.flops, "steps": -(-plan.samples // BATCH)}
    fields.update(kw)
    return Reply(cid, trained_arrays(core, plan, seed) if arrays is None else arrays, **fields)


def group_of(key: str) -> str:
    return key.split("/", 1)[0]


# ---------------------------------------------------------------------------------------------------- cohort mean


@pytest.mark.parametrize("regime", ["lora", "cnn"])
def test_each_block_is_averaged_over_exactly_its_cohort(regime: str) -> None:
    core = make_core("relief", regime)
    clients = [
        client("k_abc", ("a", "b", "c"), "orin-maxn", 40),
        client("k_ab", ("a", "b"), "orin-30w", 24),
        client("k_a", ("a",), "orin-15w", 16),
    ]
    plan = core.plan(1, clients)
    for c in clients:  # small work: everyone trains everything it owns, full samples
        assert plan[c.cid].train == tuple(core.registry.groups_for(c.modalities))
        assert plan[c.cid].samples == c.samples
    before = core.registry.read()
    replies = [reply(core, c.cid, seed=i) for i, c in enumerate(clients)]
    outcome = core.aggregate(1, clients, replies)
    assert outcome.rejected == {} and outcome.late == [] and outcome.accepted == ["k_a", "k_ab", "k_abc"]
    arr = {r.cid: r.arrays for r in replies}
    weight = {"k_abc": 40.0, "k_ab": 24.0, "k_a": 16.0}
    cohort_of = {
        "mod.a": ["k_abc", "k_ab", "k_a"],
        "mod.b": ["k_abc", "k_ab"],
        "mod.c": ["k_abc"],
        SHARED: ["k_abc", "k_ab", "k_a"],
    }
    after = core.registry.read()
    for key in after:
        cohort = cohort_of[group_of(key)]
        expected = sum(weight[k] * arr[k][key].astype(np.float64) for k in cohort) / sum(weight[k] for k in cohort)
        np.testing.assert_allclose(after[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)
        assert not np.array_equal(after[key], before[key]), key
    # A block with a cohort of one is the owner's value, bit for bit: no stale copy pulled it anywhere.
    for key in core.registry.keys("mod.c"):
        assert after[key].tobytes() == arr["k_abc"][key].tobytes()
    assert outcome.cohorts == {g: sorted(c) for g, c in cohort_of.items()}
    assert core.tracker.observations == {"mod.a": 1, "mod.b": 1, "mod.c": 1}


@pytest.mark.parametrize("regime", ["lora", "cnn"])
def test_untouched_groups_and_frozen_backbone_stay_bit_identical(regime: str) -> None:
    core = make_core("relief", regime)
    clients = [client("k_ab", ("a", "b")), client("k_a", ("a",), "rpi4")]  # nobody owns c
    core.plan(1, clients)
    before = snapshot(core)
    outcome = core.aggregate(1, clients, [reply(core, "k_ab", seed=1), reply(core, "k_a", seed=2)])
    assert outcome.accepted == ["k_a", "k_ab"]
    after = snapshot(core)
    changed = {n for n in before if before[n] != after[n]}
    touched = {n for g in ("mod.a", "mod.b", SHARED) for n in core.registry.param_names(g)}
    assert changed == touched  # exactly the returned groups changed
    for name in core.registry.param_names("mod.c"):
        assert after[name] == before[name]
    if regime == "lora":  # the frozen backbone is never written
        for name in core.model.backbone_names():
            assert after[name] == before[name]
    assert outcome.cohorts["mod.c"] == []


# ---------------------------------------------------------------------------------------------------- non-owners


def test_relief_never_assigns_or_sends_a_group_to_a_non_owner() -> None:
    clients = [*three_clients(samples=3000), client("k_c", ("c",), "orin-nano", 3000)]
    for factor in (0.3, 1.0, 2.0, 10.0):
        core = make_core("relief", factor=factor)
        for rnd in range(1, 5):
            plans = core.plan(rnd, clients)
            assert set(plans) | set(core.sat_out) == {c.cid for c in clients}
            for c in clients:
                if c.cid in core.sat_out:  # cannot deliver one batch before the deadline: no work, nothing sent
                    continue
                owned = set(core.registry.groups_for(c.modalities))
                assert set(plans[c.cid].train) <= owned and set(plans[c.cid].send) <= owned
                assert {group_of(k) for k in core.payload(plans[c.cid])} <= owned
                assert SHARED in plans[c.cid].train
            core.aggregate(rnd, clients, [reply(core, c.cid, seed=rnd) for c in clients if c.cid in plans])


def test_a_non_owner_sending_a_block_is_rejected_and_changes_nothing() -> None:
    core = make_core("relief")
    clients = three_clients()
    core.plan(1, clients)
    assert "mod.b" not in core.plans["k_a"].train
    before = snapshot(core)
    forged = trained_arrays(core, core.plans["k_a"], seed=5)
    forged.update({k: v + np.float32(1.0) for k, v in core.registry.read(["mod.b"]).items()})
    outcome = core.aggregate(1, clients, [reply(core, "k_a", forged)])
    assert "not assigned" in outcome.rejected["k_a"] and "mod.b/" in outcome.rejected["k_a"]
    assert outcome.accepted == [] and outcome.cohorts["mod.b"] == []
    assert snapshot(core) == before  # a fully rejected reply: the whole model bit-identical


def test_a_non_owners_block_never_enters_next_to_the_owners() -> None:
    core = make_core("relief")
    clients = three_clients()
    core.plan(1, clients)
    good = reply(core, "k_abc", seed=1)
    forged = trained_arrays(core, core.plans["k_a"], seed=2)
    forged.update({k: np.full_like(v, 100.0) for k, v in core.registry.read(["mod.b"]).items()})
    outcome = core.aggregate(1, clients, [good, reply(core, "k_a", forged)])
    assert set(outcome.rejected) == {"k_a", "k_ab"} and outcome.rejected["k_ab"] == "no reply"
    assert outcome.accepted == ["k_abc"]
    after = core.registry.read()
    for key in core.registry.all_keys():  # only the owner's reply entered: every key is its value, bit for bit
        assert after[key].tobytes() == good.arrays[key].tobytes(), key


# ---------------------------------------------------------------------------------------------------- validation


def _shape(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    k = next(iter(a))
    a[k] = np.zeros((*a[k].shape, 2), np.float32)
    return a, {}


def _dtype(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    k = next(iter(a))
    a[k] = a[k].astype(np.float64)
    return a, {}


def _nan(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    a[f"{SHARED}/head.bias"][0] = np.nan
    return a, {}


def _inf(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    a["mod.a/lora_a.a"][0, 0] = np.inf
    return a, {}


def _extra_unknown(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    a["mod.z/lora_a.z"] = np.zeros((8, 32), np.float32)
    return a, {}


def _missing(core, cid):
    a = trained_arrays(core, core.plans[cid], 1)
    del a[f"{SHARED}/lora_b"]
    return a, {}


def _too_many_samples(core, cid):
    return trained_arrays(core, core.plans[cid], 1), {"samples": core.plans[cid].samples + 1}


def _zero_samples(core, cid):
    return trained_arrays(core, core.plans[cid], 1), {"samples": 0}


def _negative_flops(core, cid):
    return trained_arrays(core, core.plans[cid], 1), {"flops": -1.0}


def _huge_update(core, cid):
    a = trained_arrays(core, core.plans[cid], 1, scale=0.0)
    a["mod.a/lora_a.a"] = a["mod.a/lora_a.a"] + np.float32(1.0)  # norm sqrt(8*32) = 16 > 10
    return a, {}


MALFORMED = {
    "wrong shape": (_shape, "shape"),
    "float64": (_dtype, "dtype float64"),
    "nan": (_nan, "non-finite"),
    "inf": (_inf, "non-finite"),
    "extra unknown key": (_extra_unknown, "not assigned"),
    "missing assigned key": (_missing, "missing"),
    "samples above plan": (_too_many_samples, "implausible counts"),
    "zero samples": (_zero_samples, "implausible counts"),
    "negative flops": (_negative_flops, "implausible counts"),
    "update norm": (_huge_update, "update norm"),
}


@pytest.mark.parametrize("strategy", ["relief", "fedavg"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_only_reply_is_rejected_and_the_model_unchanged(strategy: str, case: str) -> None:
    core = make_core(strategy, max_update_norm=10.0)
    clients = three_clients()
    core.plan(1, clients)
    make, reason = MALFORMED[case]
    arrays, counts = make(core, "k_ab")
    before = snapshot(core)
    outcome = core.aggregate(1, clients, [reply(core, "k_ab", arrays, **counts)])
    assert reason in outcome.rejected["k_ab"], outcome.rejected["k_ab"]
    assert outcome.accepted == [] and outcome.late == []
    assert all(c == [] for c in outcome.cohorts.values())
    assert outcome.rejected["k_abc"] == outcome.rejected["k_a"] == "no reply"
    assert snapshot(core) == before
    assert core.tracker.observations == {}  # a rejected update is not evidence of divergence either


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_good_reply_next_to_a_bad_one_is_still_applied(case: str) -> None:
    core = make_core("relief", max_update_norm=10.0)
    clients = three_clients()
    core.plan(1, clients)
    make, reason = MALFORMED[case]
    arrays, counts = make(core, "k_ab")
    good = reply(core, "k_abc", seed=3)
    before = core.registry.read()
    outcome = core.aggregate(1, clients, [reply(core, "k_ab", arrays, **counts), good])
    assert reason in outcome.rejected["k_ab"] and outcome.accepted == ["k_abc"]
    after = core.registry.read()
    for key in after:  # k_abc is the only survivor: it sets every key it carried
        assert after[key].tobytes() == good.arrays[key].tobytes(), key
        assert not np.array_equal(after[key], before[key])


def test_a_reply_from_an_unplanned_client_is_rejected() -> None:
    core = make_core("relief")
    clients = three_clients()
    core.plan(1, clients)
    before = snapshot(core)
    ghost_arrays = trained_arrays(core, core.plans["k_abc"], seed=9)  # well-formed, but nobody asked
    outcome = core.aggregate(1, clients, [Reply("ghost", ghost_arrays, 40, 1.0, 5)])
    assert "not sent work" in outcome.rejected["ghost"]
    assert outcome.accepted == [] and snapshot(core) == before


def test_duplicate_replies_from_one_client_do_not_count_twice() -> None:
    core = make_core("relief")
    clients = three_clients()
    core.plan(1, clients)
    k_a1, k_a2, k_ab = reply(core, "k_a", seed=1), reply(core, "k_a", seed=2), reply(core, "k_ab", seed=3)
    outcome = core.aggregate(1, clients, [k_a1, k_a2, k_ab])
    assert outcome.accepted.count("k_a") <= 1
    after = core.registry.read()
    key = "mod.a/lora_a.a"
    if "k_a" in outcome.accepted:  # if one of them is taken, it has its one plain weight
        w_a, w_ab = float(core.plans["k_a"].samples), float(core.plans["k_ab"].samples)
        candidates = [
            (w_a * r.arrays[key].astype(np.float64) + w_ab * k_ab.arrays[key]) / (w_a + w_ab) for r in (k_a1, k_a2)
        ]
        assert any(np.allclose(after[key], c, rtol=1e-6, atol=1e-7) for c in candidates)
    else:
        assert "k_a" in outcome.rejected
        assert after[key].tobytes() == k_ab.arrays[key].tobytes()


# ---------------------------------------------------------------------------------------------------- deadline


def deadline_clients() -> list[ClientInfo]:
    # Compute dominates: the rpi4 needs far more than 2x the fastest device's full-work time.
    return [client("fast", ("a", "b", "c"), "orin-maxn", 20000), client("slow", ("a",), "rpi4", 20000)]


def test_fedavg_deadline_drops_the_late_client() -> None:
    core = make_core("fedavg-deadline")
    clients = deadline_clients()
    plans = core.plan(1, clients)
    assert core.deadline_s is not None
    for c in clients:  # FedAvg: everyone gets the whole model and full work
        assert plans[c.cid].train == tuple(core.registry.names) and plans[c.cid].samples == c.samples
    fast, slow = reply(core, "fast", seed=1), reply(core, "slow", seed=2)
    outcome = core.aggregate(1, clients, [slow, fast])
    assert outcome.late == ["slow"] and "slow" not in outcome.rejected
    assert outcome.accepted == ["fast"]
    timing = outcome.timing
    assert timing.clients["slow"].finish_s > core.deadline_s >= timing.clients["fast"].finish_s
    assert timing.duration_s == pytest.approx(core.deadline_s)
    after = core.registry.read()
    for key in after:  # the late update did not enter anywhere, even on the keys both carried
        assert after[key].tobytes() == fast.arrays[key].tobytes(), key
    assert outcome.cohorts["mod.a"] == outcome.cohorts[SHARED] == ["fast"]


def test_relief_fits_the_same_deadline_with_partial_work() -> None:
    core = make_core("relief")
    clients = deadline_clients()
    plans = core.plan(1, clients)
    slow = plans["slow"]
    assert 0 < slow.samples < slow.full_samples and slow.samples % BATCH == 0  # elastic: part of an epoch
    for c in clients:  # predicted finish time within the deadline
        p = plans[c.cid]
        cost = client_cost(
            c.profile,
            p.flops,
            core.registry.nbytes(p.train),
            core.registry.nbytes(p.send),
            steps=-(-p.samples // BATCH),
        )
        assert cost.total_s <= core.deadline_s * (1 + 1e-9), c.cid
    outcome = core.aggregate(1, clients, [reply(core, c.cid, seed=i) for i, c in enumerate(clients)])
    assert outcome.late == [] and outcome.accepted == ["fast", "slow"]


def test_fedavg_waits_for_everyone_and_dilutes_a_rare_block_relief_does_not() -> None:
    clients = three_clients()  # only k_abc owns c
    delta_seed = 7

    def run(strategy: str) -> tuple[ServerCore, dict[str, np.ndarray], dict[str, np.ndarray], object]:
        core = make_core(strategy)
        plans = core.plan(1, clients)
        before = core.registry.read()
        replies = []
        for i, c in enumerate(clients):
            arrays = trained_arrays(core, plans[c.cid], seed=delta_seed + i)
            for key in core.registry.keys("mod.c"):
                if "c" in c.modalities:  # the owner's trained block: the same in both runs
                    arrays[key] = trained_arrays(core, plans["k_abc"], seed=delta_seed)[key]
                elif key in arrays:  # a non-owner's untouched (stale) copy: its gradient is zero
                    arrays[key] = before[key].copy()
            replies.append(reply(core, c.cid, arrays))
        outcome = core.aggregate(1, clients, replies)
        owner = next(r.arrays for r in replies if r.cid == "k_abc")
        return core, before, owner, outcome

    core, before, owner, outcome = run("fedavg")
    assert core.deadline_s is None and outcome.late == [] and outcome.accepted == ["k_a", "k_ab", "k_abc"]
    assert outcome.cohorts["mod.c"] == ["k_a", "k_ab", "k_abc"]  # non-owners' stale copies entered the mean
    key = "mod.c/lora_a.c"
    w = {c.cid: float(c.samples) for c in clients}
    diluted = before[key] + (w["k_abc"] / sum(w.values())) * (owner[key].astype(np.float64) - before[key])
    fedavg_value = core.registry.read()[key]
    np.testing.assert_allclose(fedavg_value, diluted, rtol=1e-5, atol=1e-7)
    owner_step = np.abs(owner[key] - before[key]).sum()
    assert np.abs(fedavg_value - before[key]).sum() == pytest.approx(owner_step / 3, rel=1e-3)  # 1/3 of the step

    core, before, owner, outcome = run("relief")
    assert outcome.cohorts["mod.c"] == ["k_abc"]
    relief_value = core.registry.read()[key]
    assert relief_value.tobytes() == owner[key].tobytes()  # the full step of the only owner
    assert not np.allclose(relief_value, fedavg_value)


def test_no_reply_is_reported_and_changes_nothing() -> None:
    core = make_core("relief")
    clients = three_clients()
    core.plan(1, clients)
    before = snapshot(core)
    outcome = core.aggregate(1, clients, [], rejected={"k_a": "error 1: crashed"})
    assert outcome.rejected == {"k_a": "error 1: crashed", "k_ab": "no reply", "k_abc": "no reply"}
    assert outcome.accepted == [] and snapshot(core) == before


def test_a_device_that_cannot_deliver_before_the_deadline_sits_out() -> None:
    """If even one batch plus its transfers cannot arrive before the deadline, RELIEF sends that device nothing
    (its update would be dropped anyway); it draws idle power for the round and the others proceed."""
    core = make_core("relief", factor=1.0)
    fast = client("fast", ("a", "b", "c"), "orin-maxn", 40)
    # a link so slow that the transfers alone take longer than any deadline the fast device sets
    remote = ClientInfo("remote", ("a",), 40, dataclasses.replace(load_profile("rpi4"), up_bps=1e3), "slow")
    plans = core.plan(1, [fast, remote])
    assert core.sat_out == ["remote"] and set(plans) == {"fast"}
    before = snapshot(core)
    outcome = core.aggregate(1, [fast, remote], [reply(core, "fast", seed=1)])
    assert outcome.accepted == ["fast"] and "remote" not in outcome.rejected and outcome.late == []
    assert outcome.timing.idle_energy_j == pytest.approx(remote.profile.idle_w * outcome.timing.duration_s)
    assert snapshot(core) != before


# ---------------------------------------------------------------------------------------------------- ablations


def ablated_core(**switches: object) -> ServerCore:
    core = make_core("relief")
    core.alloc_cfg = dataclasses.replace(core.alloc_cfg, **switches)
    return core


def test_cohort_aggregation_off_returns_and_averages_every_group() -> None:
    core = ablated_core(cohort_aggregation=False)
    clients = three_clients()
    plans = core.plan(1, clients)
    everything = tuple(core.registry.names)
    for c in clients:
        assert plans[c.cid].send == everything and plans[c.cid].returns == everything
        assert set(plans[c.cid].train) <= set(core.registry.groups_for(c.modalities))  # still trains what it owns
    before = core.registry.read()
    sparse_reply = reply(core, "k_abc", trained_arrays(core, plans["k_abc"], seed=1))  # only the trained groups
    with pytest.raises(Exception, match="missing"):
        core.check(Reply("k_abc", {k: v for k, v in sparse_reply.arrays.items() if k.startswith("mod.a")}, 8, 1, 1))
    replies = []
    for i, c in enumerate(clients):
        arrays = {k: v.copy() for k, v in before.items()}  # stale copies of everything ...
        arrays.update(trained_arrays(core, dataclasses.replace(plans[c.cid], reply=()), seed=i))  # ... + trained
        replies.append(reply(core, c.cid, arrays))
    outcome = core.aggregate(1, clients, replies)
    assert outcome.cohorts["mod.c"] == ["k_a", "k_ab", "k_abc"]  # non-owners' stale copies entered the mean


def test_elastic_off_runs_full_work_and_is_dropped_when_late() -> None:
    clients = deadline_clients()
    elastic = make_core("relief").plan(1, clients)
    core = ablated_core(elastic=False)
    plans = core.plan(1, clients)
    assert all(p.samples == p.full_samples for p in plans.values())
    assert any(elastic[c].samples < plans[c].samples for c in plans)  # the elastic plan had cut someone's work
    outcome = core.aggregate(1, clients, [reply(core, c.cid) for c in clients])
    assert outcome.late  # that device now misses the deadline and its update is dropped
    assert all(cid not in outcome.accepted for cid in outcome.late)


def test_sparse_off_prices_the_whole_model_each_way() -> None:
    clients = three_clients()
    dense = ablated_core(sparse=False)
    sparse = make_core("relief")
    for core in (dense, sparse):
        core.plan(1, clients)
    full = dense.registry.nbytes(dense.registry.names)
    out_dense = dense.aggregate(1, clients, [reply(dense, c.cid) for c in clients])
    out_sparse = sparse.aggregate(1, clients, [reply(sparse, c.cid) for c in clients])
    assert set(out_dense.bytes_down.values()) == {full} and set(out_dense.bytes_up.values()) == {full}
    assert out_sparse.bytes_up["k_a"] < full  # the one-sensor device moves only its groups under RELIEF


def test_random_scores_are_reproducible_by_seed() -> None:
    clients = [client("k", ("a", "b", "c"), "rpi4", 3000)]  # a budget that forces a choice
    picks = []
    for _ in range(2):
        core = ablated_core(scores="random")
        picks.append([core.plan(r, clients)["k"].train for r in range(1, 6)])
    assert picks[0] == picks[1]


def test_the_clock_prices_verified_work_not_reported_flops() -> None:
    """A client that under-reports its FLOPs is still priced by its plan x the samples it processed, so it cannot
    dodge the deadline; an honest reply is priced exactly as the plan predicted."""
    clients = deadline_clients()
    honest = make_core("fedavg-deadline")
    honest.plan(1, clients)
    late_honest = honest.aggregate(1, clients, [reply(honest, c.cid) for c in clients]).late
    cheat = make_core("fedavg-deadline")
    cheat.plan(1, clients)
    outcome = cheat.aggregate(1, clients, [reply(cheat, c.cid, flops=0.0) for c in clients])
    assert late_honest and outcome.late == late_honest
