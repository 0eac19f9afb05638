"""RELIEF Flower ServerApp.

Run config keys (``[tool.flwr.app.config]`` in pyproject.toml; ``flwr run . --run-config "k=v ..."``):
``config`` (experiment YAML), ``overrides`` (space-separated key=value), ``strategy`` (relief | fedavg |
fedavg-deadline; empty = the YAML's), ``run-dir`` (absolute output folder; empty = runs/<name> in the working dir).
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from common.experiment import ExperimentConfig, load_experiment
from common.wire import experiment_to_text
from relief_server.session import Session
from relief_server.strategy import RoundStrategy

app = ServerApp()
log = logging.getLogger("relief")


def experiment_from_run_config(run_config: dict) -> tuple[ExperimentConfig, Path]:
    overrides = shlex.split(str(run_config.get("overrides", "")))
    if run_config.get("strategy"):
        overrides.append(f"strategy.name={run_config['strategy']}")
    path = Path(str(run_config.get("config") or "configs/default.yaml"))
    if not path.is_absolute() and not path.exists():
        # The app runs from its installed bundle (FAB), which carries configs/: fall back to that copy.
        bundled = Path(__file__).resolve().parents[1] / path
        path = bundled if bundled.exists() else path
    cfg = load_experiment(path, overrides)
    run_dir = Path(str(run_config.get("run-dir") or "") or Path("runs") / cfg.name)
    return cfg, run_dir.resolve()


def discover(grid: Grid, experiment_text: str, wanted: int, timeout_s: float) -> dict[int, dict[str, Any]]:
    """Wait for ``wanted`` nodes (or the timeout), then QUERY each for its identity: node id -> what the node says
    about itself (cid, tier, device profile, modalities, samples)."""
    deadline = time.monotonic() + timeout_s
    while len(nodes := list(grid.get_node_ids())) < wanted and time.monotonic() < deadline:
        log.info("waiting for nodes: %d of %d connected", len(nodes), wanted)
        time.sleep(1.0)
    record = RecordDict({"config": ConfigRecord({"experiment": experiment_text})})
    queries = [Message(content=record, message_type=MessageType.QUERY, dst_node_id=n) for n in nodes]
    mapping: dict[int, dict[str, Any]] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout_s):
        if reply.has_error():
            log.warning("node %s did not identify itself: %s", reply.metadata.src_node_id, reply.error.reason)
            continue
        mapping[reply.metadata.src_node_id] = dict(reply.content.config_records["info"])
    dupes = len(mapping) - len({str(info["cid"]) for info in mapping.values()})
    if dupes:
        raise RuntimeError(f"{dupes} nodes claim the same partition-id; give each node its own")
    return mapping


@app.main()
def main(grid: Grid, context: Context) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg, run_dir = experiment_from_run_config(dict(context.run_config))
    text = experiment_to_text(cfg)
    session = Session(cfg, run_dir, progress=True)
    expected = len(session.clients)
    identities = discover(grid, text, expected, cfg.strategy.connect_timeout_s)
    node_to_cid = {node: str(info["cid"]) for node, info in identities.items()}
    if len(node_to_cid) < expected:
        log.warning(
            "only %d of the federation's %d clients have a node; the others sit out (simulation: pass "
            '--federation-config "num-supernodes=%d")',
            len(node_to_cid),
            expected,
            expected,
        )
    unknown = set(node_to_cid.values()) - set(session.clients)
    if unknown:
        raise RuntimeError(f"nodes identify as clients {sorted(unknown)} that the federation does not have")
    session.adopt({str(info["cid"]): info for info in identities.values()})
    if len(node_to_cid) < cfg.strategy.min_nodes:
        raise RuntimeError(f"only {len(node_to_cid)} nodes answered; strategy.min_nodes={cfg.strategy.min_nodes}")
    print(f"RELIEF [{cfg.strategy.name}] {len(node_to_cid)} nodes, {cfg.train.rounds} rounds -> {run_dir}", flush=True)
    session.initial_row()
    strategy = RoundStrategy(session, text, node_to_cid)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(),
        num_rounds=cfg.train.rounds,
        timeout=cfg.strategy.round_timeout_s,
    )
    summary = session.summarise()
    print(f"RELIEF run finished: {summary['run_dir']}", flush=True)
