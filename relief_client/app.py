"""RELIEF Flower ClientApp.

Messages (see docs/design.md, "On the wire"):
- QUERY  -> reply ConfigRecord ``info``: cid, tier, device profile, owned modalities, training samples.
- TRAIN  <- ArrayRecord ``arrays`` (only the groups this node needs) + ConfigRecord ``config`` (instruction and the
            resolved experiment YAML); -> ArrayRecord ``arrays`` (only the trained groups), MetricRecord ``metrics``
            (samples, FLOPs, steps, time per phase, energy, peak RSS), ConfigRecord ``info`` (cid, energy method).

Which client this node is: ``partition-id`` from the node config (set by Flower's simulation, and by the node's
``node.toml`` on a real box). A real node may also set ``data-path`` (where the data set lives on this box),
``device-profile`` (a profile name or YAML path) and ``modalities`` (comma-separated: the sensors this box has).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from common.experiment import ExperimentConfig
from common.profiles import load_profile
from common.wire import experiment_from_text
from relief_client.telemetry.phases import PhaseTimer
from relief_client.telemetry.select import best_meter
from relief_client.worker import Instruction, run_instruction

app = ClientApp()

# Read-only cache of parsed experiments and their data, keyed by the experiment text's hash. It holds no per-client
# state (that lives in context.state): simulation actors serve many virtual clients, and all of them may share it.
_DATA: dict[str, Any] = {}


def _node(context: Context) -> dict[str, Any]:
    return dict(context.node_config)


def _experiment(text: str, node: dict[str, Any]) -> tuple[ExperimentConfig, Any]:
    overrides = [f"data.path={node['data-path']}"] if node.get("data-path") else []
    key = hashlib.sha256((text + "\n".join(overrides)).encode()).hexdigest()
    if key not in _DATA:
        from common.data import load_federation

        cfg = experiment_from_text(text, overrides)
        _DATA.clear()  # one experiment at a time per process; do not hoard data sets
        _DATA[key] = (cfg, load_federation(cfg.data, cfg.clients, cfg.seed))
    return _DATA[key]


def _client(context: Context, fed: Any) -> Any:
    node = _node(context)
    if "partition-id" not in node:
        raise ValueError("node config lacks partition-id (which client of the federation this node is)")
    pid = int(node["partition-id"])
    if not 0 <= pid < len(fed.clients):
        raise ValueError(f"partition-id {pid} out of range: the federation has {len(fed.clients)} clients")
    client = fed.clients[pid]
    if node.get("modalities"):  # a real box declares the sensors it has
        mods = [m.strip() for m in str(node["modalities"]).split(",") if m.strip()]
        unknown = [m for m in mods if m not in client.x]
        if unknown:
            raise ValueError(f"node declares modalities {unknown} that its data does not hold")
        client = replace(client, modalities=mods, x={m: client.x[m] for m in mods})
    return client


def _profile_name(context: Context, client: Any) -> str:
    return str(_node(context).get("device-profile") or client.profile)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server who this node is."""
    cfg_text = str(msg.content.config_records["config"]["experiment"])
    _, fed = _experiment(cfg_text, _node(context))
    client = _client(context, fed)
    info = ConfigRecord(
        {
            "cid": str(client.cid),
            "tier": client.tier,
            "profile": _profile_name(context, client),
            "modalities": list(client.modalities),
            "samples": len(client.y),
        }
    )
    return Message(RecordDict({"info": info}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the assigned groups on the local data; reply with only those groups and what it cost."""
    timer = PhaseTimer()
    with timer.phase("load"):
        config = msg.content.config_records["config"]
        cfg, fed = _experiment(str(config["experiment"]), _node(context))
        client = _client(context, fed)
        ins = Instruction.from_config(dict(config))
        arrays = {k: v.numpy() for k, v in msg.content.array_records["arrays"].items()}
        profile = load_profile(_profile_name(context, client))
    timer.meter = best_meter(profile)
    timer.start()  # energy and peak RSS cover training and serialisation
    with timer.phase("train"):
        result = run_instruction(cfg, fed, client, arrays, ins)
    with timer.phase("serialise"):
        out = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.arrays.items()})
    timer.count(flops=result.flops, steps=result.steps)
    tel = timer.finish()
    # Per-client state lives in context.state (persisted per run and node), never in module globals.
    state = context.state.config_records.get("relief", ConfigRecord({"rounds_trained": 0}))
    state["rounds_trained"] = int(str(state["rounds_trained"])) + 1
    state["last_round"] = ins.round
    context.state["relief"] = state
    metrics = MetricRecord(
        {
            "samples": int(result.samples),
            "flops": float(result.flops),
            "steps": int(result.steps),
            "loss": float(result.loss),
            "wall_train_s": float(result.train_s),
            "wall_total_s": float(tel.wall_s),
            "energy_j": float(tel.energy.joules) if tel.energy else 0.0,
            "peak_rss_mb": tel.peak_rss_bytes / 2**20,
            **{k: float(v) for k, v in tel.phases_s.items()},
        }
    )
    info = ConfigRecord({"cid": str(client.cid), "energy_method": tel.method, "finished_at": time.time()})
    return Message(RecordDict({"arrays": out, "metrics": metrics, "info": info}), reply_to=msg)
