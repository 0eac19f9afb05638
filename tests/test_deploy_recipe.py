"""The deployment recipe (deploy/), run for real on loopback.

What runs is what the recipe says, not a parallel hand-written command line:
1. `deploy/certs/make-certs.sh 127.0.0.1 localhost` makes the CA and the SuperLink certificate, and
   `deploy/certs/make-node-key.sh` an ECDSA P-384 key for each of three SuperNodes (two registered, one rogue);
2. the SuperLink is started from `ExecStart=` and `Environment=` of deploy/systemd/relief-superlink.service (TLS,
   `--enable-supernode-auth`, `--disable-runtime-dependency-installation`, `--database`), with the unit's paths
   (/opt/relief/venv/bin, /etc/relief, /var/lib/relief) mapped into a temporary folder and the example
   deploy/config/relief.env's host/port replaced by a free loopback port;
3. the operator registers two node keys with `flwr supernode register <pub> <connection>` through a private
   FLWR_HOME whose config.toml connection uses `root-certificates` (TLS verified against the new CA, SAN 127.0.0.1);
4. three SuperNodes start from relief-supernode.service's `ExecStart=` (`--root-certificates`,
   `--auth-supernode-private-key`, `--node-config <node.toml>`); the one whose key was never registered must stop
   with Flower exit code 305 in its log (process exit status 1);
5. `flwr run <repo> <connection>` submits a 2-client, 2-round experiment over TLS; the run must write summary.json
   with both clients participating in every round;
6. every process started (and its descendants) is stopped by pid, and none is left.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import flower_support
import pytest
import yaml
from flower_support import (
    BIN,
    ROOT,
    Processes,
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

DEPLOY = ROOT / "deploy"
pytestmark = pytest.mark.integration

SMALL = {
    **flower_support.SMALL,
    "name": "deploy-recipe",
    "clients": {"test_count": 7},  # 9 subjects - 7 held out = 2 clients = 2 supernodes
    "train": {**flower_support.SMALL["train"], "rounds": 2},
}
NODES = 2
RUN_TIMEOUT_S = 150.0
ROGUE_TIMEOUT_S = 60.0
EXIT_SUPERNODE_CONNECTION_ERROR = 305  # flwr.supercore.exit.ExitCode.SUPERNODE_CONNECTION_ERROR (logged; status 1)

MISSING = [tool for tool in ("openssl", "ssh-keygen") if shutil.which(tool) is None]


# ------------------------------------------------------------------------------------------------ recipe parsing


def unit_service(path: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart= (continuation lines joined, split like systemd) and the Environment= pairs of a unit."""
    text = path.read_text().replace("\\\n", " ")
    exec_start: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ExecStart="):
            exec_start = shlex.split(line.removeprefix("ExecStart="))
        elif line.startswith("Environment="):
            for pair in shlex.split(line.removeprefix("Environment=")):
                key, _, value = pair.partition("=")
                env[key] = value
    assert exec_start, f"{path} has no ExecStart="
    return exec_start, env


def env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def localise(words: list[str], variables: dict[str, str], prefixes: dict[str, str]) -> list[str]:
    """Expand ${VAR} as systemd does (one word each), then map the unit's absolute paths into the test folder."""
    out = []
    for word in words:
        word = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], word)
        for old, new in prefixes.items():
            word = word.replace(old, new)
        out.append(word)
    return out


# ------------------------------------------------------------------------------------------------ the deployment


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if MISSING:
        pytest.skip(f"the deploy recipe needs {' and '.join(MISSING)} on PATH (apt-get install openssl openssh-client)")
    tmp = tmp_path_factory.mktemp("deploy-recipe")
    result: dict = {"tmp": tmp, "markers": [str(tmp)]}
    started = time.monotonic()

    # 1. certificates and node keys, with the recipe's scripts
    certs, keys = tmp / "certs", tmp / "keys"
    mk = subprocess.run(
        ["bash", str(DEPLOY / "certs" / "make-certs.sh"), "--out", str(certs), "127.0.0.1", "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result["make_certs"] = mk
    again = subprocess.run(
        ["bash", str(DEPLOY / "certs" / "make-certs.sh"), "--out", str(certs), "127.0.0.1", "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result["make_certs_again"] = again
    names = [f"node{k}" for k in range(NODES)] + ["rogue"]
    result["make_keys"] = [
        subprocess.run(
            ["bash", str(DEPLOY / "certs" / "make-node-key.sh"), "--out", str(keys), name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for name in names
    ]
    assert mk.returncode == 0, mk.stdout + mk.stderr
    assert all(p.returncode == 0 for p in result["make_keys"]), [p.stderr for p in result["make_keys"]]

    # the recipe: units, example env file and node.toml
    link_cmd, link_unit_env = unit_service(DEPLOY / "systemd" / "relief-superlink.service")
    node_cmd, node_unit_env = unit_service(DEPLOY / "systemd" / "relief-supernode.service")
    site = env_file(DEPLOY / "config" / "relief.env")
    node_toml = tomllib.loads((DEPLOY / "config" / "node.toml").read_text())
    result.update(link_cmd=link_cmd, node_cmd=node_cmd, site=site, node_toml=node_toml)

    link_port = free_port()
    node_ports = [free_port() for _ in names]
    result["markers"] += [f"127.0.0.1:{p}" for p in (link_port, *node_ports)]
    base_env = flower_env(tmp)  # the units set PATH and FLWR_HOME themselves

    def box(name: str) -> dict[str, str]:
        """Prefix map for one simulated box: its own /etc/relief and /var/lib/relief under tmp."""
        etc, var = tmp / name / "etc", tmp / name / "var"
        (etc / "certs").mkdir(parents=True)
        (etc / "keys").mkdir()
        var.mkdir(parents=True)
        shutil.copy(certs / "ca.crt", etc / "certs" / "ca.crt")
        return {"/opt/relief/venv/bin": str(BIN), "/etc/relief/": f"{etc}/", "/var/lib/relief": str(var)}

    def service_env(unit_env: dict[str, str], prefixes: dict[str, str]) -> dict[str, str]:
        env = base_env | {k: localise([v], {}, prefixes)[0] for k, v in unit_env.items()}
        env["RELIEF_CACHE_DIR"] = str(tmp / "cache")  # one synthetic-data cache for all boxes (speed)
        return env

    procs = Processes()
    try:
        # 2. the SuperLink, from its unit
        server = box("server")
        for f in ("server.pem", "server.key"):
            shutil.copy(certs / f, Path(server["/etc/relief/"]) / "certs" / f)
        link_vars = site | {"RELIEF_SUPERLINK_HOST": "127.0.0.1", "RELIEF_SUPERLINK_PORT": str(link_port)}
        link_env = service_env(link_unit_env, server)
        cmd = localise(link_cmd, link_vars, server)
        result["superlink_cmd"] = cmd
        superlink = procs.start(cmd, tmp / "superlink.log", link_env, Path(server["/var/lib/relief"]))
        wait_healthy(
            lambda: superlink_healthy(link_port, ca=certs / "ca.crt", timeout=1),
            superlink,
            tmp / "superlink.log",
            since=started,
        )

        # 3. the operator registers two node keys (TLS connection with root-certificates)
        cli_env = flower_env(tmp, "operator")
        write_connection(
            Path(cli_env["FLWR_HOME"]), "testbed", f"127.0.0.1:{link_port}", root_certificates=certs / "ca.crt"
        )
        result["register"] = [
            subprocess.run(
                [
                    str(BIN / "flwr"),
                    "supernode",
                    "register",
                    str(keys / f"node{k}.pub"),
                    "testbed",
                    "--name",
                    f"node{k}",
                    "--format",
                    "json",
                ],
                env=cli_env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=60,
            )
            for k in range(NODES)
        ]
        result["list"] = subprocess.run(
            [str(BIN / "flwr"), "supernode", "list", "testbed", "--format", "json"],
            env=cli_env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )

        # 4. three SuperNodes from their unit: two registered, one rogue
        nodes = []
        for k, name in enumerate(names):
            prefixes = box(name)
            etc = Path(prefixes["/etc/relief/"])
            shutil.copy(keys / name, etc / "keys" / "supernode")
            toml = {"partition-id": k if k < NODES else 0, "device-profile": "x86-host"}
            (etc / "node.toml").write_text("".join(f"{key} = {json.dumps(v)}\n" for key, v in toml.items()))
            node_vars = site | {"RELIEF_SUPERLINK": f"127.0.0.1:{link_port}"}
            node_vars["RELIEF_SUPERNODE_PORT"] = str(node_ports[k])
            env = service_env(node_unit_env, prefixes)
            cmd = localise(node_cmd, node_vars, prefixes)
            result.setdefault("supernode_cmds", []).append(cmd)
            nodes.append(procs.start(cmd, tmp / f"supernode-{name}.log", env, Path(prefixes["/var/lib/relief"])))
        rogue = nodes.pop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            rogue.wait(timeout=ROGUE_TIMEOUT_S)
        result["rogue_rc"] = rogue.poll()

        # 5. the operator submits a run over TLS
        config = tmp / "small.yaml"
        config.write_text(yaml.safe_dump(SMALL))
        run_dir = tmp / "run"
        result["run_dir"] = run_dir
        run_config = f"config={toml_str(str(config))} run-dir={toml_str(str(run_dir))}"
        cli = procs.start(
            [str(BIN / "flwr"), "run", str(ROOT), "testbed", "--run-config", run_config, "--stream"],
            tmp / "flwr-run.log",
            cli_env,
            ROOT,
        )
        summary = run_dir / "summary.json"
        run_started = time.monotonic()
        wait_for_file(
            summary, RUN_TIMEOUT_S, procs, keep_going=lambda: superlink.poll() is None and cli.poll() in (None, 0)
        )
        result["run_s"] = time.monotonic() - run_started
        finish_run(cli, nodes, summary, result)
    finally:
        wind_down(procs, result, tmp, started)
    return result


# ------------------------------------------------------------------------------------------------ the checks


def test_certificates_and_keys(deployment: dict) -> None:
    certs, keys = deployment["tmp"] / "certs", deployment["tmp"] / "keys"
    for f, mode in (("ca.key", 0o600), ("server.key", 0o600), ("ca.crt", 0o644), ("server.pem", 0o644)):
        assert (certs / f).stat().st_mode & 0o777 == mode, f
    assert certs.stat().st_mode & 0o777 == 0o700
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "server.pem"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in sans and "DNS:localhost" in sans, sans
    again = deployment["make_certs_again"]
    assert again.returncode == 3 and "refusing to overwrite" in again.stderr, again.stderr  # idempotent
    for name in ("node0", "node1", "rogue"):
        assert (keys / name).stat().st_mode & 0o777 == 0o600
        assert (keys / f"{name}.pub").read_text().startswith("ecdsa-sha2-nistp384 ")


def test_units_carry_the_required_flags(deployment: dict) -> None:
    link, node = deployment["link_cmd"], deployment["node_cmd"]
    for flag in (
        "--ssl-ca-certfile",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database",
    ):
        assert flag in link, flag
    assert "--insecure" not in link and "--insecure" not in node
    for flag in ("--root-certificates", "--auth-supernode-private-key", "--node-config", "--superlink"):
        assert flag in node, flag
    assert "--allow-runtime-dependency-installation" not in node
    assert set(deployment["node_toml"]) <= {"partition-id", "data-path", "device-profile", "modalities"}
    assert {"RELIEF_SUPERLINK_HOST", "RELIEF_SUPERLINK_PORT", "RELIEF_SUPERLINK", "RELIEF_SUPERNODE_PORT"} <= set(
        deployment["site"]
    )


def test_registration_over_tls(deployment: dict) -> None:
    registered = set()
    for p in deployment["register"]:
        assert p.returncode == 0, p.stdout + p.stderr
        reply = json.loads(p.stdout[p.stdout.index("{") :])  # a status line precedes the JSON
        assert reply["success"] is True, p.stdout
        registered.add(str(reply["node-id"]))
    listing = deployment["list"]
    assert listing.returncode == 0, listing.stdout + listing.stderr
    listed = {str(n["node-id"]) for n in json.loads(listing.stdout[listing.stdout.index("{") :])["nodes"]}
    assert listed == registered and len(registered) == NODES, (listed, registered)


def test_unregistered_key_is_refused_with_305(deployment: dict) -> None:
    # Flower's exit code 305 is what the log reports; the process exit status of every Flower error exit is 1
    # (flwr.supercore.exit.flwr_exit), which is what systemd sees.
    log = log_tail(deployment, "supernode-rogue.log")
    assert deployment["rogue_rc"] == 1, log
    assert f"Exit Code: {EXIT_SUPERNODE_CONNECTION_ERROR}" in log, log
    assert "Failed to activate SuperNode" in log, log


def test_run_completes_with_both_nodes_every_round(deployment: dict) -> None:
    run = deployment["run_dir"]
    assert (run / "summary.json").is_file(), f"no summary after {deployment['run_s']:.0f} s\n" + log_tail(deployment)
    assert deployment["cli_rc"] == 0, log_tail(deployment)
    assert deployment["node_rcs"] == [None] * NODES, deployment["node_rcs"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 2, summary
    rounds = rows(run / "rounds.csv")
    assert [r["round"] for r in rounds] == ["0", "1", "2"], rounds
    for r in rounds[1:]:
        assert r["participants"] == str(NODES) and r["failed"] == "0", r
    clients = rows(run / "clients.csv")
    assert sorted((c["round"], c["client"], c["status"]) for c in clients) == [
        (str(r), str(c), "ok") for r in (1, 2) for c in range(NODES)
    ], clients


def test_nothing_left_running(deployment: dict) -> None:
    assert deployment["left"] == [], deployment["left"]
    print(f"deploy recipe: {deployment['wall_s']:.0f} s in all, flwr run {deployment['run_s']:.0f} s")
