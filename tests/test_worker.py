"""The TRAIN instruction as it travels (ConfigRecord values) and what a client returns for it."""

from __future__ import annotations

import numpy as np
import pytest

from common.data import load_federation
from common.experiment import load_experiment
from common.groups import GroupRegistry
from relief_client.worker import Instruction, model_for, run_instruction, work_seed


def test_instruction_round_trips_and_rejects_bad_fields() -> None:
    ins = Instruction(3, ("mod.hand", "shared"), ("hand",), 64, 11)
    assert Instruction.from_config(ins.to_config()) == ins
    assert "reply" not in ins.to_config()  # the normal, sparse case: the trained groups go back
    ablated = Instruction(3, ("shared",), ("hand",), 64, 11, ("mod.hand", "shared"))
    assert Instruction.from_config(ablated.to_config()) == ablated
    for bad in ({"samples": "64"}, {"train": "shared"}, {"seed": True}, {"present": [1]}):
        with pytest.raises(ValueError):
            Instruction.from_config({**ins.to_config(), **bad})
    assert work_seed(0, 1, "3") == work_seed(0, 1, "3") != work_seed(0, 2, "3")


def test_client_returns_exactly_the_asked_groups(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_CACHE_DIR", str(tmp_path))
    cfg = load_experiment("configs/default.yaml", ["data.synthetic_seconds=10", "train.batch_size=8"])
    fed = load_federation(cfg.data, cfg.clients, cfg.seed)
    client = next(c for c in fed.clients if 2 <= len(c.modalities) < len(fed.modalities))
    reg = GroupRegistry(model_for(cfg, fed))
    sent = reg.read(reg.names)
    first = client.modalities[0]
    ins = Instruction(1, (f"mod.{first}", "shared"), (first,), 8, 5)
    result = run_instruction(cfg, fed, client, sent, ins)
    assert {k.split("/")[0] for k in result.arrays} == {f"mod.{first}", "shared"}
    assert result.samples == 8 and result.steps == 1 and result.flops > 0
    assert any(not np.array_equal(result.arrays[k], sent[k]) for k in result.arrays)  # it trained
    second = f"mod.{client.modalities[1]}"
    ablated = Instruction(1, ins.train, ins.present, 8, 5, (*ins.train, second))
    extra = run_instruction(cfg, fed, client, sent, ablated)
    for k in reg.keys(second):  # an untrained group comes back unchanged (its stale copy)
        assert extra.arrays[k].tobytes() == sent[k].tobytes()
    with pytest.raises(ValueError, match="does not own"):
        missing = next(m.name for m in fed.modalities if m.name not in client.modalities)
        run_instruction(cfg, fed, client, sent, Instruction(1, ("shared",), (missing,), 8, 5))


def test_server_adopts_what_nodes_declare(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real box may declare fewer sensors or a calibrated profile in its node config; clients without a node
    drop out of the round bookkeeping (no idle energy for devices that do not exist)."""
    from relief_server.session import Session

    monkeypatch.setenv("RELIEF_CACHE_DIR", str(tmp_path))
    cfg = load_experiment("configs/default.yaml", ["data.synthetic_seconds=10"])
    session = Session(cfg, None)
    full = next(c for c in session.clients.values() if len(c.modalities) == 4)
    other = next(c for c in session.clients.values() if c.cid != full.cid)
    session.adopt(
        {
            full.cid: {
                "cid": full.cid,
                "modalities": [full.modalities[0]],
                "samples": full.samples,
                "profile": "x86-host",
            },
            other.cid: {"cid": other.cid, "profile": "/only/on/the/node.yaml"},
        }
    )
    assert set(session.clients) == {full.cid, other.cid}
    assert session.clients[full.cid].modalities == (full.modalities[0],)
    assert session.clients[full.cid].profile.name == "x86-host"
    assert session.clients[other.cid].profile == other.profile  # not loadable here: the federation's profile
    plans = session.core.plan(1, list(session.clients.values()))
    assert all(g in ("mod." + full.modalities[0], "shared") for g in plans[full.cid].train)
