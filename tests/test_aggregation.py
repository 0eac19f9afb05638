"""The masked-mean kernel and reply validation (common/aggregation.py), on small hand-checkable numbers."""

from __future__ import annotations

import numpy as np
import pytest

from common.aggregation import ReplyLimits, ReplyRejected, Update, carried_by, masked_mean, validate_reply


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def current_model() -> dict[str, np.ndarray]:
    # "mod.c" holds awkward bit patterns (-0.0, a subnormal, the largest float32) that survive only a bit-exact copy.
    return {
        "mod.a/w": f32(0.0, 0.0, 0.0),
        "mod.b/w": f32(10.0, 10.0),
        "mod.c/w": f32(-0.0, 1e-45, np.finfo(np.float32).max),
        "shared/h": f32(1.0, 2.0),
    }


# ---------------------------------------------------------------------------------------------------- masked mean


def test_each_key_is_the_sample_weighted_mean_over_exactly_the_clients_that_carried_it() -> None:
    cur = current_model()
    updates = [
        Update("k1", {"mod.a/w": f32(1.0, 2.0, 3.0), "shared/h": f32(2.0, 2.0)}, 1.0),
        Update("k2", {"mod.a/w": f32(4.0, 8.0, 12.0), "mod.b/w": f32(6.0, 0.0), "shared/h": f32(4.0, 6.0)}, 3.0),
        Update("k3", {"mod.b/w": f32(2.0, 4.0), "shared/h": f32(8.0, 10.0)}, 4.0),
    ]
    new = masked_mean(cur, updates)
    # mod.a: cohort {k1 (1), k2 (3)} -> (1*[1,2,3] + 3*[4,8,12]) / 4 = [13/4, 26/4, 39/4]
    np.testing.assert_array_equal(new["mod.a/w"], f32(3.25, 6.5, 9.75))
    # mod.b: cohort {k2 (3), k3 (4)} -> (3*[6,0] + 4*[2,4]) / 7 = [26/7, 16/7]  (k1's absence is NOT a zero vote)
    np.testing.assert_allclose(new["mod.b/w"], [26 / 7, 16 / 7], rtol=1e-6)
    # shared: everyone (1, 3, 4) -> ([2,2] + 3*[4,6] + 4*[8,10]) / 8 = [46/8, 60/8]
    np.testing.assert_array_equal(new["shared/h"], f32(5.75, 7.5))
    for key, value in new.items():
        assert value.dtype == np.float32 and value.shape == cur[key].shape, key
    assert carried_by(updates) == {"mod.a/w": ["k1", "k2"], "shared/h": ["k1", "k2", "k3"], "mod.b/w": ["k2", "k3"]}


def test_a_lone_cohort_member_sets_the_block_exactly() -> None:
    # A block only one client carried becomes that client's value bit for bit (its weight cancels), whatever the
    # other clients' weights are.
    cur = current_model()
    value = f32(0.1, -0.3, 7.7)
    new = masked_mean(cur, [Update("owner", {"mod.a/w": value}, 5.0), Update("other", {"shared/h": f32(3, 3)}, 100.0)])
    assert new["mod.a/w"].tobytes() == value.tobytes()
    np.testing.assert_array_equal(new["shared/h"], f32(3.0, 3.0))


def test_untouched_keys_stay_bit_identical() -> None:
    cur = current_model()
    before = {k: v.copy() for k, v in cur.items()}
    new = masked_mean(cur, [Update("k1", {"mod.a/w": f32(1, 1, 1)}, 2.0), Update("k2", {"shared/h": f32(0, 0)}, 1.0)])
    for key in ("mod.b/w", "mod.c/w"):
        assert np.array_equal(new[key], before[key])
        assert new[key].tobytes() == before[key].tobytes()  # -0.0 and the subnormal survive (array_equal misses -0.0)
        assert new[key].dtype == before[key].dtype
    # The kernel does not write into the arrays it was given.
    for key in cur:
        assert cur[key].tobytes() == before[key].tobytes()


def test_no_updates_or_zero_weights_change_nothing() -> None:
    cur = current_model()
    for updates in ([], [Update("k", {"mod.a/w": f32(9, 9, 9)}, 0.0)], [Update("k", {"mod.a/w": f32(9, 9, 9)}, -1.0)]):
        new = masked_mean(cur, updates)
        assert set(new) == set(cur)
        for key in cur:
            assert new[key].tobytes() == cur[key].tobytes()


def test_zero_weight_update_is_not_part_of_the_cohort_mean() -> None:
    cur = current_model()
    new = masked_mean(cur, [Update("k1", {"mod.a/w": f32(2, 4, 6)}, 2.0), Update("k0", {"mod.a/w": f32(100, 0, 0)}, 0)])
    np.testing.assert_array_equal(new["mod.a/w"], f32(2, 4, 6))


def test_unknown_key_raises() -> None:
    with pytest.raises(KeyError, match=r"mod\.z/w"):
        masked_mean(current_model(), [Update("k1", {"mod.z/w": f32(1.0)}, 1.0)])


# ---------------------------------------------------------------------------------------------------- validation


def limits(max_norm: float | None = None, require_all: bool = True) -> ReplyLimits:
    cur = current_model()
    allowed = {"mod.a/w", "shared/h"}
    return ReplyLimits(allowed, {k: cur[k].shape for k in allowed}, require_all, max_norm, {k: cur[k] for k in allowed})


def good_arrays() -> dict[str, np.ndarray]:
    return {"mod.a/w": f32(0.5, 0.0, 0.0), "shared/h": f32(1.0, 2.5)}


def test_a_well_formed_reply_passes() -> None:
    validate_reply(good_arrays(), limits())
    validate_reply(good_arrays(), limits(max_norm=0.5))  # update norm exactly at the bound is allowed
    validate_reply({"shared/h": f32(1, 2)}, limits(require_all=False))  # a subset, when the caller allows it


def _bad(mutate) -> dict[str, np.ndarray]:
    arrays = good_arrays()
    mutate(arrays)
    return arrays


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        (_bad(lambda a: a.update({"mod.b/w": f32(10, 10)})), "not assigned"),  # extra (non-owned) key
        (_bad(lambda a: a.pop("shared/h")), "missing"),
        (_bad(lambda a: a.update({"mod.a/w": f32(0, 0)})), "shape"),
        (_bad(lambda a: a.update({"mod.a/w": np.zeros((3, 1), np.float32)})), "shape"),
        (_bad(lambda a: a.update({"mod.a/w": np.zeros(3, np.float64)})), "dtype"),
        (_bad(lambda a: a.update({"mod.a/w": np.zeros(3, np.float16)})), "dtype"),
        (_bad(lambda a: a.update({"mod.a/w": [0.0, 0.0, 0.0]})), "not an array"),
        (_bad(lambda a: a.update({"mod.a/w": f32(0, np.nan, 0)})), "non-finite"),
        (_bad(lambda a: a.update({"shared/h": f32(np.inf, 0)})), "non-finite"),
        (_bad(lambda a: a.update({"shared/h": f32(-np.inf, 0)})), "non-finite"),
    ],
)
def test_malformed_replies_are_rejected(arrays: dict[str, np.ndarray], reason: str) -> None:
    with pytest.raises(ReplyRejected, match=reason):
        validate_reply(arrays, limits())


def test_update_norm_above_the_bound_is_rejected() -> None:
    arrays = good_arrays()
    arrays["mod.a/w"] = f32(3.0, 4.0, 0.0)  # ||value - current|| = 5
    validate_reply(arrays, limits(max_norm=5.0))
    with pytest.raises(ReplyRejected, match="norm"):
        validate_reply(arrays, limits(max_norm=4.99))
    validate_reply(arrays, limits(max_norm=None))  # unbounded by default
