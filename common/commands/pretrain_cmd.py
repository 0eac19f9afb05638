"""`relief pretrain CONFIG [--set key=value ...] [--out PATH] [--epochs N] [--pool full-sensor|all-clients]`

Trains the lora regime's frozen backbone (modality encoders ``E_m``, fusion blocks ``W0_m``, bias ``b0``) centrally
and writes it as a checkpoint that ``model.checkpoint`` can point at (docs/lora.md, "Warm start for the LoRA regime").

* Pool (``--pool``): ``full-sensor`` (default) = the windows of the training clients that carry *every* modality
  (the fast tier's "lab devices" in the default tiers), so every encoder is warm-started on the same samples;
  ``all-clients`` = every training client's windows with the modalities it owns. The held-out test subjects are never
  in the pool; they only score the result.
* Training: cnn regime (encoders, ``W0``, ``b0`` and the head all train) with the LoRA adapter left at its no-op
  initialisation (``B = 0``), so the saved backbone alone carries the pretrained function (decision D3). Adam,
  batch size ``train.batch_size``, seed ``seed``; every batch comes from one group of pool clients sharing a modality
  set and, with probability ``--modality-dropout``, keeps only a random non-empty subset of its modalities.
* Output: ``torch.save`` of the backbone tensors only (plain tensors, so ``torch.load(weights_only=True)`` reads it),
  written atomically, plus a provenance JSON next to it (``<checkpoint>.json``: config fingerprint, seed, pool,
  recipe, per-epoch loss and test macro-F1, SHA-256 of the checkpoint). Default path:
  ``runs/checkpoints/<data.name>-seed<seed>.pt``.

:func:`ensure_checkpoint` makes the lora regime runnable without this manual step: it creates (or reuses, when the
provenance matches) the default checkpoint and returns a config with ``model.checkpoint`` set.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.config import ConfigError, to_dict
from common.experiment import ExperimentConfig, load_experiment

if TYPE_CHECKING:
    import numpy as np

    from common.data import ClientData, Federation
    from common.model import MultimodalNet

POOLS = ("full-sensor", "all-clients")
DEFAULT_POOL = "full-sensor"
DEFAULT_EPOCHS = 10
DEFAULT_LR = 1e-3
DEFAULT_MODALITY_DROPOUT = 0.5  # chosen by measurement: docs/decisions.md (D22)
DEFAULT_DIR = Path("runs") / "checkpoints"
PROVENANCE_VERSION = 1  # bump when the pretraining procedure changes what a given fingerprint + recipe produces
SALT_PRETRAIN = 201  # independent random stream for the pretraining batch order
# Fields of ModelConfig that shape the backbone. The adapter (lora_rank, lora_alpha) is not part of it, so one
# checkpoint serves every rank; regime and checkpoint describe how the backbone is used, not what it is.
BACKBONE_FIELDS = ("encoder_channels", "kernel_size", "embed_dim", "fusion_dim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (e.g. configs/default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="checkpoint path (default: runs/checkpoints/<data.name>-seed<seed>.pt)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default=DEFAULT_POOL,
        help="full-sensor: windows of the clients carrying every modality (default); "
        "all-clients: every training client's windows with the modalities it owns",
    )
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR})")
    parser.add_argument(
        "--modality-dropout",
        type=float,
        default=DEFAULT_MODALITY_DROPOUT,
        help="probability that a batch keeps only a random subset of its modalities "
        f"(default {DEFAULT_MODALITY_DROPOUT}; docs/decisions.md)",
    )


def main(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    if args.epochs < 1:
        raise ConfigError("--epochs", "an integer >= 1", args.epochs, source="command line")
    if not args.lr > 0:
        raise ConfigError("--lr", "a number > 0", args.lr, source="command line")
    out = Path(args.out) if args.out else default_path(cfg)
    info = pretrain(cfg, out, epochs=args.epochs, pool=args.pool, lr=args.lr, modality_dropout=args.modality_dropout)
    m = info["metrics"]
    print(
        f"pretrained in {m['train_s']:.1f} s: test macro-F1 {m['macro_f1_untrained']:.3f} (untrained) -> "
        f"{m['macro_f1']:.3f}; provenance {provenance_path(out)}"
    )
    print(out.resolve())
    return 0


# ---------------------------------------------------------------------------------------------------- provenance


def default_path(cfg: ExperimentConfig, directory: str | Path | None = None) -> Path:
    """``runs/checkpoints/<data.name>-seed<seed>.pt`` (relative to the working directory, like `relief simulate`'s
    ``--out runs``), or the same name under ``directory``."""
    return Path(directory if directory is not None else DEFAULT_DIR) / f"{cfg.data.name}-seed{cfg.seed}.pt"


def provenance_path(checkpoint: str | Path) -> Path:
    return Path(f"{checkpoint}.json")


def fingerprint(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a backbone checkpoint is made *for*: the data, the client partition (which decides the pool and the
    normalisation), the seed and the backbone's shape. A checkpoint is reused only when this matches exactly."""
    data = {k: v for k, v in to_dict(cfg.data).items() if k != "cache"}
    model = {k: getattr(cfg.model, k) for k in BACKBONE_FIELDS}
    return {"v": PROVENANCE_VERSION, "seed": cfg.seed, "data": data, "clients": to_dict(cfg.clients), "model": model}


def config_hash(cfg: ExperimentConfig) -> str:
    blob = json.dumps(fingerprint(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_provenance(checkpoint: str | Path) -> dict[str, Any] | None:
    """The provenance of ``checkpoint``, or None when it or its JSON is missing or unreadable."""
    p = provenance_path(checkpoint)
    if not Path(checkpoint).is_file() or not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def matches(cfg: ExperimentConfig, checkpoint: str | Path) -> bool:
    """True when ``checkpoint`` exists, its provenance was made for ``cfg`` and the file is the one it describes."""
    info = read_provenance(checkpoint)
    if info is None or info.get("config_hash") != config_hash(cfg):
        return False
    return bool(info.get("sha256") == _sha256(Path(checkpoint)))


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through a temporary file in the same folder, renamed into place (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; a checkpoint is meant to be read by others (and copied)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------- pretraining


def pool_clients(fed: Federation, pool: str) -> list[ClientData]:
    """The training clients whose windows form ``pool``: ``full-sensor`` = those owning every modality,
    ``all-clients`` = all of them (clients without windows are left out). Raises ConfigError when it is empty."""
    every = [m.name for m in fed.modalities]
    if pool not in POOLS:
        raise ConfigError("--pool", "one of " + ", ".join(POOLS), pool, source="command line")
    chosen = [c for c in fed.clients if c.n > 0 and (pool == "all-clients" or c.modalities == every)]
    if not chosen:
        raise ConfigError(
            "--pool",
            "a pool with windows: no training client carries every modality (" + ", ".join(every) + "); "
            "use --pool all-clients",
            pool,
            source="command line",
        )
    return chosen


def pool_parts(clients: list[ClientData]) -> list[tuple[list[str], dict[str, np.ndarray], np.ndarray]]:
    """The pool as (modality set, windows, labels) parts, one per distinct modality set among ``clients``; every
    batch is drawn from one part and holds all of its modalities (modality-complete batches)."""
    import numpy as np

    by_set: dict[tuple[str, ...], list[ClientData]] = {}
    for c in clients:
        by_set.setdefault(tuple(c.modalities), []).append(c)
    parts = []
    for mods, group in by_set.items():
        x = {m: np.concatenate([c.x[m] for c in group]) for m in mods}
        y = np.concatenate([c.y for c in group]).astype(np.int64)
        parts.append((list(mods), x, y))
    return parts


def pretraining_model(cfg: ExperimentConfig, fed: Federation) -> MultimodalNet:
    """The model pretraining starts from: cnn regime, seeded by ``cfg.seed``, adapter frozen at its no-op init.

    The adapter is built with a fixed rank (1) so that the backbone's initialisation, hence the checkpoint, does
    not depend on ``model.lora_rank`` (which is not part of the fingerprint)."""
    from common.model import init_model

    mcfg = dataclasses.replace(cfg.model, regime="cnn", checkpoint="", lora_rank=1, lora_alpha=1.0)
    mods = {m.name: m.channels for m in fed.modalities}
    model = init_model(mcfg, cfg.seed, mods, len(fed.class_names), fed.window)
    for name, p in model.named_parameters():
        if name.startswith(("lora_a.", "lora_b")):
            p.requires_grad_(False)  # B = 0: the adapter stays a no-op, so the backbone alone carries the function
    return model


def _device(name: str) -> Any:
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def pretrain(
    cfg: ExperimentConfig,
    out: str | Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    pool: str = DEFAULT_POOL,
    lr: float = DEFAULT_LR,
    modality_dropout: float = DEFAULT_MODALITY_DROPOUT,
    fed: Federation | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Pretrain the backbone of ``cfg``'s model on ``pool``, save it to ``out`` (+ provenance JSON); returns the
    provenance written."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from common.data import load_federation
    from common.metrics import evaluate

    say = log or (lambda _: None)
    out = Path(out)
    fed = fed if fed is not None else load_federation(cfg.data, cfg.clients, cfg.seed)
    clients = pool_clients(fed, pool)
    parts = pool_parts(clients)
    model = pretraining_model(cfg, fed)
    device = _device(cfg.train.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng([cfg.seed, SALT_PRETRAIN])
    bs = cfg.train.batch_size
    tensors = [({m: torch.from_numpy(x[m]) for m in mods}, torch.from_numpy(y)) for mods, x, y in parts]
    n_pool = sum(len(y) for _, _, y in parts)
    say(
        f"pretraining the backbone on pool {pool}: {n_pool} windows "
        f"({', '.join('+'.join(m) + f' x{len(y)}' for m, _, y in parts)}), {epochs} epochs, batch {bs}, "
        f"Adam lr {lr}, {device.type}"
    )

    def test_f1() -> float:
        model.to("cpu")
        f1 = evaluate(model, fed.test_x, fed.test_y, {})["macro_f1"]
        model.to(device)
        return f1

    f1_untrained = test_f1()
    say(f"epoch  0  test macro-F1 {f1_untrained:.3f} (untrained)")
    history: list[dict[str, float]] = []
    torch.manual_seed(cfg.seed)  # dropout masks
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        batches = [
            (i, order[lo : lo + bs])
            for i, (_, _, y) in enumerate(parts)
            for order in [rng.permutation(len(y))]
            for lo in range(0, len(y), bs)
        ]
        model.to(device).train()
        losses = []
        for k in rng.permutation(len(batches)):
            i, idx_np = batches[k]
            xs, ys = tensors[i]
            idx = torch.from_numpy(idx_np)
            mods = list(xs)
            if len(mods) > 1 and rng.random() < modality_dropout:
                # Teach the backbone to work with sensors missing, as the federation's devices will use it:
                # keep a random non-empty subset of the modalities for this batch.
                keep = rng.random(len(mods)) < 0.5
                keep[rng.integers(len(mods))] = True
                mods = [m for m, k in zip(mods, keep, strict=True) if k]
            loss = F.cross_entropy(model({m: xs[m][idx].to(device) for m in mods}), ys[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        f1 = test_f1()
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "test_macro_f1": f1})
        say(f"epoch {epoch:2d}  loss {history[-1]['loss']:.4f}  test macro-F1 {f1:.3f}")
    train_s = time.perf_counter() - start
    model.to("cpu")

    own = dict(model.named_parameters())
    state = {n: own[n].detach().clone().contiguous() for n in model.backbone_names()}
    _write_atomic(out, lambda f: torch.save(state, f))
    info = {
        "checkpoint": str(out.resolve()),
        "config_hash": config_hash(cfg),
        "fingerprint": fingerprint(cfg),
        "seed": cfg.seed,
        "pool": pool,
        "modality_dropout": modality_dropout,
        "pool_clients": [c.cid for c in clients],
        "pool_windows": n_pool,
        "recipe": {
            "regime": "cnn (adapter frozen at B = 0)",
            "optimizer": "adam",
            "lr": lr,
            "epochs": epochs,
            "batch_size": bs,
            "dropout": cfg.model.dropout,
            "device": device.type,
        },
        "tensors": {n: list(t.shape) for n, t in state.items()},
        "metrics": {
            "macro_f1_untrained": f1_untrained,
            "macro_f1": history[-1]["test_macro_f1"] if history else f1_untrained,
            "train_s": train_s,
            "history": history,
        },
        "sha256": _sha256(out),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(info, indent=2, default=str) + "\n"
    _write_atomic(provenance_path(out), lambda f: f.write(text.encode()))
    return info


def ensure_checkpoint(
    cfg: ExperimentConfig, directory: str | Path | None = None, log: Callable[[str], None] | None = print
) -> ExperimentConfig:
    """Make the lora regime runnable without a manual `relief pretrain`.

    When ``cfg.model.regime == "lora"`` and ``cfg.model.checkpoint`` is empty: reuse the default checkpoint
    (:func:`default_path`, under ``directory`` if given) when its provenance matches ``cfg``'s fingerprint and its
    SHA-256, else pretrain it with the default recipe; return a copy of ``cfg`` with ``model.checkpoint`` set to its
    absolute path. Any other ``cfg`` is returned unchanged (the same object).
    """
    if cfg.model.regime != "lora" or cfg.model.checkpoint:
        return cfg
    say = log or (lambda _: None)
    path = default_path(cfg, directory).resolve()
    if matches(cfg, path):
        info = read_provenance(path) or {}
        metrics = info.get("metrics", {})
        say(
            f"lora regime: reusing backbone checkpoint {path} (pool {info.get('pool')}, "
            f"test macro-F1 {metrics.get('macro_f1', float('nan')):.3f})"
        )
    else:
        reason = "absent" if not path.exists() else "made for another configuration"
        say(f"lora regime: backbone checkpoint {path} {reason}; pretraining it (relief pretrain)")
        pretrain(cfg, path, log=log)
    new = copy.deepcopy(cfg)
    new.model.checkpoint = str(path)
    return new
