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

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration

NODES = 4
VICTIM = 2  # partition-id (= client id) of the SuperNode that is killed after round 1
SMALL = {
    "name": "faults",
    "seed": 3,
    "data": {"name": "synthetic-pamap2", "synthetic_seconds": 12.0},
    "clients": {"test_count": 5},  # 9 subjects - 5 held out = 4 clients = 4 supernodes
    "clock": {"deadline_mode": "fastest", "deadline_factor": 2.0},
    "train": {"rounds": 3, "batch_size": 16},
    "eval": {"target_macro_f1": 0.3},
    # a killed node's message comes back as an error after ~64 s (30 s heartbeat, patience 2): wait longer than that
    "strategy": {"round_timeout_s": 90.0},
}
RUN_TIMEOUT_S = 420.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Processes:
    """Every process the test starts, and every descendant seen while it ran (orphans included)."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen] = []
        self.seen: dict[int, psutil.Process] = {}

    def start(self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        out = log.open("w")
        try:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        finally:
            out.close()  # the child holds its own descriptor
        self.popens.append(proc)
        self.snapshot()
        return proc

    def snapshot(self) -> None:
        for proc in self.popens:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(proc.pid)
                for q in [p, *p.children(recursive=True)]:
                    self.seen.setdefault(q.pid, q)

    def stop_all(self) -> None:
        self.snapshot()
        procs = [p for p in self.seen.values() if _alive(p)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        for proc in self.popens:  # reap our direct children
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def left_running(self, markers: list[str]) -> list[str]:
        """Processes still alive that we started or saw, or whose command line names our folder or ports."""
        left = [" ".join(p.cmdline()) for p in self.seen.values() if _alive(p)]
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.info["pid"] in self.seen:
                continue
            cmd = " ".join(p.info.get("cmdline") or [])
            if any(m in cmd for m in markers):
                left.append(cmd)
        return left


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("deploy")
    config = tmp / "faults.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run_dir = tmp / "run"
    link_port = _free_port()
    node_ports = [_free_port() for _ in range(NODES)]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_INTERNAL_", "FLWR_LOCAL_"))} | {
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RELIEF_CACHE_DIR": str(tmp / "cache"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def env_for(name: str) -> dict[str, str]:  # every process its own FLWR_HOME (app installs never race)
        home = tmp / f"home-{name}"
        home.mkdir(exist_ok=True)
        return {**base_env, "FLWR_HOME": str(home)}

    cli_env = env_for("cli")
    (tmp / "home-cli" / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\n'
        "insecure = true\n"
    )
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
            env_for("superlink"),
            tmp,
        )
        while not _healthy(link_port):
            assert superlink.poll() is None, (tmp / "superlink.log").read_text()[-3000:]
            assert time.monotonic() - started < 60, "SuperLink not healthy after 60 s"
            time.sleep(0.3)
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
                env_for(f"node{k}"),
                tmp,
            )
            for k in range(NODES)
        ]
        run_config = f"config={_toml_str(str(config))} run-dir={_toml_str(str(run_dir))}"
        cli = procs.start(
            [str(BIN / "flwr"), "run", str(ROOT), "loopback", "--run-config", run_config, "--stream"],
            tmp / "flwr-run.log",
            cli_env,
            tmp,
        )
        summary = run_dir / "summary.json"
        while not summary.exists() and time.monotonic() - started < RUN_TIMEOUT_S:
            procs.snapshot()
            if "killed_at_s" not in result and any(r["round"] == "1" for r in _rows(run_dir / "rounds.csv")):
                victim = psutil.Process(nodes[VICTIM].pid)
                children = victim.children(recursive=True)
                nodes[VICTIM].send_signal(signal.SIGKILL)  # a real process dies, no goodbye to the SuperLink
                nodes[VICTIM].wait(timeout=10)
                result["killed_at_s"] = time.monotonic() - started
                result["victim_children"] = children
            if superlink.poll() is not None:
                break
            time.sleep(0.5)
        result["finished_s"] = time.monotonic() - started
        with contextlib.suppress(subprocess.TimeoutExpired):
            cli.wait(timeout=60 if summary.exists() else 1)
        result["cli_rc"] = cli.poll()
        result["node_rcs"] = [n.poll() for n in nodes]
    finally:
        procs.stop_all()
        result["left"] = procs.left_running(result["markers"])
        result["wall_s"] = time.monotonic() - started
        print(
            f"deployment: node {VICTIM} killed at {result.get('killed_at_s', -1):.0f} s, run finished at "
            f"{result.get('finished_s', -1):.0f} s, all stopped at {result['wall_s']:.0f} s"
        )
        result["logs"] = {p.name: p.read_text(errors="replace") for p in sorted(tmp.glob("*.log"))}
    return result


def _log_tail(d: dict, name: str = "flwr-run.log", n: int = 4000) -> str:
    return d["logs"].get(name, "")[-n:]


def test_run_completes_after_a_supernode_is_killed(deployment: dict) -> None:
    run = deployment["run_dir"]
    assert "killed_at_s" in deployment, "round 1 never reached rounds.csv\n" + _log_tail(deployment)
    assert (run / "summary.json").is_file(), f"no summary after {deployment['finished_s']:.0f} s\n" + _log_tail(
        deployment
    )
    assert deployment["cli_rc"] == 0, _log_tail(deployment)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["strategy"] == "relief"
    assert (run / "model.npz").is_file()
    # the survivors never noticed anything
    assert [rc for k, rc in enumerate(deployment["node_rcs"]) if k != VICTIM] == [None] * (NODES - 1)
    assert deployment["node_rcs"][VICTIM] == -signal.SIGKILL


def test_later_rounds_record_the_lost_client(deployment: dict) -> None:
    run = deployment["run_dir"]
    rounds = {r["round"]: r for r in _rows(run / "rounds.csv")}
    assert sorted(rounds) == ["0", "1", "2", "3"], rounds
    assert rounds["1"]["participants"] == str(NODES) and rounds["1"]["failed"] == "0", rounds["1"]
    # after the kill: the victim either failed (error reply or no reply) or was no longer asked (fewer participants)
    for r in ("2", "3"):
        assert int(rounds[r]["participants"]) < NODES, rounds[r]
    assert int(rounds["2"]["failed"]) >= 1, rounds["2"]  # it was still registered when round 2 was planned
    clients = _rows(run / "clients.csv")
    victim = [c for c in clients if c["client"] == str(VICTIM)]
    by_round = {c["round"]: c["status"] for c in victim}
    assert by_round.get("1") == "ok", victim
    # the reason: the SuperLink's "node unavailable" error (code 5), or nothing before the round timeout
    assert by_round.get("2", "").startswith(("rejected: error 5:", "rejected: no reply")), victim
    assert by_round.get("3", "absent") != "ok", victim
    others = [c for c in clients if c["client"] != str(VICTIM)]
    assert others and all(c["status"] == "ok" for c in others), others


def test_global_model_still_progressed(deployment: dict) -> None:
    rounds = _rows(deployment["run_dir"] / "rounds.csv")
    assert all(int(r["participants"]) > 0 for r in rounds[1:]), rounds
    # cumulative upload grows every round: updates from the survivors were received and aggregated
    up = [int(float(r["bytes_up"])) for r in rounds]
    assert all(b > a for a, b in pairwise(up)), up
    assert all(r["macro_f1"] != "" for r in rounds), rounds


def test_nothing_left_running(deployment: dict) -> None:
    assert deployment["left"] == [], deployment["left"]
    assert deployment.get("victim_children"), "the killed SuperNode had no subprocess (its SuperExec) to check"
    for child in deployment["victim_children"]:  # the killed node's own subprocesses did not linger
        assert not _alive(child), child
