"""A real deployment on loopback, with a SuperNode killed mid-run.

Starts one `flower-superlink` (insecure, subprocess isolation, its own database and port), four `flower-supernode`
processes (one per client, identified by `partition-id`), and submits the app with `flwr run <repo> <connection>`.
After round 1 is on disk, one SuperNode is killed with SIGKILL. The run must still finish: the later rounds record
the lost client (an error reply from the SuperLink, or no reply before the round timeout), the other clients keep
training the global model, and nothing the test started is left running.

Flower 1.42 serves the Fleet, Control and Runtime APIs on one HTTP port (`--host/--port`); `--fleet-api-address`
and `--control-api-address` are deprecated and only matter for the legacy gRPC servers, which stay off.
"""

from __future__ import annotations

import json
import signal
import time
from itertools import pairwise
from pathlib import Path

import flower_support
import psutil
import pytest
import yaml
from flower_support import (
    BIN,
    ROOT,
    Processes,
    alive,
    finish_run,
    flower_env,
    free_port,
    log_tail,
    rows,
    superlink_healthy,
    toml_str,
    wait_for_file,
    wait_healthy,
    wind_down,
    write_connection,
)

pytestmark = pytest.mark.integration

NODES = 4
VICTIM = 2  # partition-id (= client id) of the SuperNode that is killed after round 1
# a killed node's message comes back as an error after ~64 s (30 s heartbeat, patience 2): wait longer than that
SMALL = {**flower_support.SMALL, "name": "faults", "strategy": {"round_timeout_s": 90.0}}
RUN_TIMEOUT_S = 420.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("deploy")
    config = tmp / "faults.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run_dir = tmp / "run"
    link_port = free_port()
    node_ports = [free_port() for _ in range(NODES)]
    cli_env = flower_env(tmp, "cli")  # every process its own FLWR_HOME (app installs never race)
    write_connection(Path(cli_env["FLWR_HOME"]), "loopback", f"127.0.0.1:{link_port}", insecure=True)
    procs = Processes()
    result: dict = {"tmp": tmp, "run_dir": run_dir, "markers": [str(tmp)]}
    result["markers"] += [f"127.0.0.1:{p}" for p in (link_port, *node_ports)]
    started = time.monotonic()
    try:
        superlink = procs.start(
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--isolation",
                "subprocess",
                "--database",
                str(tmp / "state.db"),
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(link_port),
            ],
            tmp / "superlink.log",
            flower_env(tmp, "superlink"),
            tmp,
        )
        wait_healthy(lambda: superlink_healthy(link_port), superlink, tmp / "superlink.log", since=started)
        nodes = [
            procs.start(
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link_port}",
                    "--node-config",
                    f"partition-id={k} num-partitions={NODES}",
                    "--port",
                    str(node_ports[k]),
                ],
                tmp / f"supernode-{k}.log",
                flower_env(tmp, f"node{k}"),
                tmp,
            )
            for k in range(NODES)
        ]
        run_config = f"config={toml_str(str(config))} run-dir={toml_str(str(run_dir))}"
        cli = procs.start(
            [str(BIN / "flwr"), "run", str(ROOT), "loopback", "--run-config", run_config, "--stream"],
            tmp / "flwr-run.log",
            cli_env,
            tmp,
        )
        summary = run_dir / "summary.json"

        def kill_victim_after_round_1() -> bool:
            if "killed_at_s" not in result and any(r["round"] == "1" for r in rows(run_dir / "rounds.csv")):
                victim = psutil.Process(nodes[VICTIM].pid)
                children = victim.children(recursive=True)
                nodes[VICTIM].send_signal(signal.SIGKILL)  # a real process dies, no goodbye to the SuperLink
                nodes[VICTIM].wait(timeout=10)
                result["killed_at_s"] = time.monotonic() - started
                result["victim_children"] = children
            return superlink.poll() is None

        wait_for_file(
            summary, RUN_TIMEOUT_S - (time.monotonic() - started), procs, keep_going=kill_victim_after_round_1
        )
        result["finished_s"] = time.monotonic() - started
        finish_run(cli, nodes, summary, result)
    finally:
        wind_down(procs, result, tmp, started)
        print(
            f"deployment: node {VICTIM} killed at {result.get('killed_at_s', -1):.0f} s, run finished at "
            f"{result.get('finished_s', -1):.0f} s, all stopped at {result['wall_s']:.0f} s"
        )
    return result


def test_run_completes_after_a_supernode_is_killed(deployment: dict) -> None:
    run = deployment["run_dir"]
    assert "killed_at_s" in deployment, "round 1 never reached rounds.csv\n" + log_tail(deployment)
    assert (run / "summary.json").is_file(), f"no summary after {deployment['finished_s']:.0f} s\n" + log_tail(
        deployment
    )
    assert deployment["cli_rc"] == 0, log_tail(deployment)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["strategy"] == "relief"
    assert (run / "model.npz").is_file()
    # the survivors never noticed anything
    assert [rc for k, rc in enumerate(deployment["node_rcs"]) if k != VICTIM] == [None] * (NODES - 1)
    assert deployment["node_rcs"][VICTIM] == -signal.SIGKILL


def test_later_rounds_record_the_lost_client(deployment: dict) -> None:
    run = deployment["run_dir"]
    rounds = {r["round"]: r for r in rows(run / "rounds.csv")}
    assert sorted(rounds) == ["0", "1", "2", "3"], rounds
    assert rounds["1"]["participants"] == str(NODES) and rounds["1"]["failed"] == "0", rounds["1"]
    # after the kill: the victim either failed (error reply or no reply) or was no longer asked (fewer participants)
    for r in ("2", "3"):
        assert int(rounds[r]["participants"]) < NODES, rounds[r]
    assert int(rounds["2"]["failed"]) >= 1, rounds["2"]  # it was still registered when round 2 was planned
    clients = rows(run / "clients.csv")
    victim = [c for c in clients if c["client"] == str(VICTIM)]
    by_round = {c["round"]: c["status"] for c in victim}
    assert by_round.get("1") == "ok", victim
    # the reason: the SuperLink's "node unavailable" error (code 5), or nothing before the round timeout
    assert by_round.get("2", "").startswith(("rejected: error 5:", "rejected: no reply")), victim
    assert by_round.get("3", "absent") != "ok", victim
    others = [c for c in clients if c["client"] != str(VICTIM)]
    assert others and all(c["status"] == "ok" for c in others), others


def test_global_model_still_progressed(deployment: dict) -> None:
    rounds = rows(deployment["run_dir"] / "rounds.csv")
    assert all(int(r["participants"]) > 0 for r in rounds[1:]), rounds
    # cumulative upload grows every round: updates from the survivors were received and aggregated
    up = [int(float(r["bytes_up"])) for r in rounds]
    assert all(b > a for a, b in pairwise(up)), up
    assert all(r["macro_f1"] != "" for r in rounds), rounds


def test_nothing_left_running(deployment: dict) -> None:
    assert deployment["left"] == [], deployment["left"]
    assert deployment.get("victim_children"), "the killed SuperNode had no subprocess (its SuperExec) to check"
    for child in deployment["victim_children"]:  # the killed node's own subprocesses did not linger
        assert not alive(child), child
