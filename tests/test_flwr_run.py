"""What a Flower user does: `flwr run <repo> local ... --stream` against the local simulation connection.

One private FLWR_HOME (with its own config.toml) and private ports for the whole module. Two runs go to the same
detached local SuperLink that the first `flwr run` starts:

1. 4 supernodes, with `overrides="train.rounds=2"` in --run-config: the run folder is complete and the override
   took effect (2 rounds, not the YAML's 3);
2. Flower's default federation (2 supernodes) for the 4-client config: the server warns that only 2 of 4 clients
   have a node, and the run still completes with 2 participants.

Then the SuperLink is stopped by process id (found by its command line, which names our FLWR_HOME), and nothing
with that FLWR_HOME may remain.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from flower_support import (
    BIN,
    ROOT,
    SMALL,
    alive,
    flower_env,
    free_port,
    kill_tree,
    processes_mentioning,
    rows,
    toml_str,
    write_connection,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flwr_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("flwr-run")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    env = flower_env(
        tmp,
        "flwr",
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
        FLWR_LOCAL_CONTROL_API_PORT=str(free_port()),
    )
    home = Path(env["FLWR_HOME"])
    write_connection(home, "local", ":local:")

    def flwr_run(run_dir: Path, overrides: str, federation: str | None) -> tuple[subprocess.CompletedProcess, float]:
        run_config = f"config={toml_str(str(config))} run-dir={toml_str(str(run_dir))} overrides={toml_str(overrides)}"
        cmd = [str(BIN / "flwr"), "run", str(ROOT), "local", "--run-config", run_config]
        cmd += ["--federation-config", federation] if federation else []
        started = time.monotonic()
        # cwd: the detached SuperLink (and so the ServerApp) inherits it; keep the checkout clean
        proc = subprocess.run(
            [*cmd, "--stream"], cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        return proc, time.monotonic() - started

    result: dict = {"home": home, "tmp": tmp}
    try:
        result["four"] = flwr_run(tmp / "four", "train.rounds=2", "num-supernodes=4 client-resources-num-cpus=1")
        # Flower's default federation: 2 supernodes (2 CPUs each). Discovery waits connect_timeout_s for all 4
        # clients' nodes, so shorten it; the same value bounds the QUERY, which Ray start-up needs time for.
        result["two"] = flwr_run(tmp / "two", "train.rounds=1 strategy.connect_timeout_s=20", None)
    finally:
        result["superlinks"] = [p.pid for p in processes_mentioning("flower-superlink", str(home))]
        result["tree"] = kill_tree(result["superlinks"], timeout=15)
        result["left"] = [" ".join(p.cmdline()) for p in processes_mentioning(str(home))]
        print("flwr run: " + ", ".join(f"{k} {result[k][1]:.0f} s" for k in ("four", "two") if k in result))
    return result


def _explain(run: tuple[subprocess.CompletedProcess, float]) -> str:
    proc, secs = run
    return f"exit {proc.returncode} after {secs:.0f} s\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_flwr_run_writes_a_complete_run_folder(flwr_runs: dict) -> None:
    proc, _ = flwr_runs["four"]
    assert proc.returncode == 0, _explain(flwr_runs["four"])
    run = flwr_runs["tmp"] / "four"
    for name in ("config.yaml", "environment.json", "rounds.csv", "clients.csv", "summary.json", "model.npz"):
        assert (run / name).is_file(), f"{run / name} missing\n" + _explain(flwr_runs["four"])
    assert "RELIEF run finished" in proc.stdout  # --stream shows the ServerApp's output
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["name"] == "it" and resolved["seed"] == 3  # our YAML, not the bundled default
    assert resolved["train"]["rounds"] == 2 and resolved["strategy"]["name"] == "relief"
    assert json.loads((run / "environment.json").read_text())["packages"]["flwr"] == "1.42.0"


def test_run_config_overrides_take_effect(flwr_runs: dict) -> None:
    run = flwr_runs["tmp"] / "four"
    rounds = rows(run / "rounds.csv")
    assert [r["round"] for r in rounds] == ["0", "1", "2"], rounds  # the YAML says 3; overrides said 2
    assert all(r["participants"] == "4" and r["failed"] == "0" for r in rounds[1:]), rounds
    assert len(rows(run / "clients.csv")) == 2 * 4
    assert json.loads((run / "summary.json").read_text())["rounds"] == 2


def test_default_federation_runs_with_two_of_four_clients(flwr_runs: dict) -> None:
    proc, _ = flwr_runs["two"]
    assert proc.returncode == 0, _explain(flwr_runs["two"])
    run = flwr_runs["tmp"] / "two"
    assert (run / "summary.json").is_file(), _explain(flwr_runs["two"])
    assert "only 2 of the federation's 4 clients have a node" in proc.stdout, _explain(flwr_runs["two"])
    rounds = rows(run / "rounds.csv")
    assert [r["round"] for r in rounds] == ["0", "1"], rounds
    assert rounds[1]["participants"] == "2" and rounds[1]["failed"] == "0", rounds
    clients = rows(run / "clients.csv")  # simulation gives its 2 nodes partition-ids 0 and 1
    assert sorted(c["client"] for c in clients) == ["0", "1"] and all(c["status"] == "ok" for c in clients), clients


def test_superlink_stopped_by_pid_and_nothing_left(flwr_runs: dict) -> None:
    # `flwr run` started one detached SuperLink, and the second run reused it
    assert len(flwr_runs["superlinks"]) == 1, flwr_runs["superlinks"]
    assert len(flwr_runs["tree"]) > 1, "the SuperLink had no subprocess (its SuperExec) to check"
    assert not [p for p in flwr_runs["tree"] if alive(p)], flwr_runs["tree"]
    assert flwr_runs["left"] == [], flwr_runs["left"]
