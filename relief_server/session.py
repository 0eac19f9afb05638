"""One run on the server side, free of Flower: data, global model, round logic, evaluation and the run folder.

The Flower strategy (:mod:`relief_server.strategy`) and the direct runner (:mod:`relief_server.direct`) both drive
a :class:`Session`; they differ only in how instructions reach the clients.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.clock import to_target
from common.data import Federation, load_federation
from common.experiment import ExperimentConfig
from common.metrics import evaluate
from common.profiles import load_profile
from common.rounds import ClientInfo, Reply, RoundOutcome, ServerCore
from common.runlog import RunRecorder
from relief_client.worker import Instruction, model_for, work_seed


def client_infos(fed: Federation) -> dict[str, ClientInfo]:
    profiles = {name: load_profile(name) for name in sorted({c.profile for c in fed.clients})}
    return {
        str(c.cid): ClientInfo(str(c.cid), tuple(c.modalities), len(c.y), profiles[c.profile], c.tier)
        for c in fed.clients
    }


def tier_subsets(fed: Federation) -> dict[str, list[str]]:
    """Each tier's most common modality set (evaluation under what that tier's devices can sense)."""
    by_tier: dict[str, Counter[tuple[str, ...]]] = {}
    for c in fed.clients:
        by_tier.setdefault(c.tier, Counter())[tuple(c.modalities)] += 1
    return {tier: list(counts.most_common(1)[0][0]) for tier, counts in by_tier.items()}


class Session:
    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: str | Path | None,
        fed: Federation | None = None,
        progress: bool = False,
    ) -> None:
        self.cfg = cfg
        self.fed = fed if fed is not None else load_federation(cfg.data, cfg.clients, cfg.seed)
        self.clients = client_infos(self.fed)
        self.model = model_for(cfg, self.fed)
        self.core = ServerCore(
            cfg.strategy.name,
            self.model,
            allocation=cfg.strategy.relief,
            clock=cfg.clock,
            local_epochs=cfg.train.local_epochs,
            batch_size=cfg.train.batch_size,
            max_update_norm=cfg.strategy.max_update_norm,
            seed=cfg.seed,
        )
        self.rare = self.fed.rarest_modalities()
        self.subsets = {f"tier:{t}": mods for t, mods in tier_subsets(self.fed).items()}
        self.subsets |= {f"only:{m.name}": [m.name] for m in self.fed.modalities}
        columns = [f"macro_f1[{name}]" for name in self.subsets]
        self.recorder = (
            RunRecorder(run_dir, cfg, {"rare_modalities": self.rare}, columns) if run_dir is not None else None
        )
        self.history: list[dict[str, Any]] = []
        self.assigned: Counter[tuple[str, str]] = Counter()  # (tier, group) -> device-rounds it was trained
        self.progress = progress
        self._started = time.perf_counter()

    def adopt(self, identities: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep only the clients that have a node, as the nodes describe themselves: a real box may declare fewer
        sensors (`modalities`) or a calibrated `device-profile` in its node config. A profile the server cannot load
        (a path that exists only on the node) keeps the federation's profile, with a warning."""
        adopted = {}
        for cid, info in sorted(identities.items()):
            known = self.clients[cid]
            profile = known.profile
            name = str(info.get("profile") or profile.name)
            if name != profile.name:
                try:
                    profile = load_profile(name)
                except (OSError, ValueError) as err:
                    print(f"client {cid}: device profile {name!r} not loadable here ({err}); using {profile.name}")
            mods = tuple(str(m) for m in info.get("modalities", known.modalities))
            samples = int(info.get("samples", known.samples))
            adopted[cid] = ClientInfo(cid, mods, samples, profile, known.tier)
        self.clients = adopted

    def instructions(self, round_number: int, cids: list[str]) -> dict[str, tuple[Instruction, dict]]:
        """Plan the round for the given clients: cid -> (instruction, arrays to send)."""
        plans = self.core.plan(round_number, [self.clients[c] for c in cids])
        out = {}
        for cid, a in plans.items():
            seed = work_seed(self.cfg.seed, round_number, cid)
            ins = Instruction(round_number, a.train, a.present, a.samples, seed, a.reply)
            out[cid] = (ins, self.core.payload(a))
        return out

    def evaluate(self) -> dict[str, float]:
        m = evaluate(self.model, self.fed.test_x, self.fed.test_y, self.subsets)
        # docs/metrics.md: the rare modality's F1 = macro-F1 with only that modality present (mean over ties)
        m["rare_modality_f1"] = sum(m[f"macro_f1[only:{r}]"] for r in self.rare) / len(self.rare)
        return m

    def finish_round(self, round_number: int, replies: list[Reply], rejected: Mapping[str, str]) -> RoundOutcome:
        """Aggregate, evaluate (every `eval.every` rounds and at the end), and write the round's rows."""
        outcome = self.core.aggregate(round_number, list(self.clients.values()), replies, rejected)
        evaluated = round_number % self.cfg.eval.every == 0 or round_number == self.cfg.train.rounds
        metrics = self.evaluate() if evaluated else {}
        if "macro_f1" in metrics:
            self.core.ledger.set_metric(round_number, metrics["macro_f1"])
        self._record(outcome, replies, metrics)
        return outcome

    def _record(self, outcome: RoundOutcome, replies: list[Reply], metrics: dict[str, float]) -> None:
        rec = self.core.ledger.rounds[-1]
        row = {
            "round": outcome.round,
            "virtual_time_s": rec.cum_time_s,
            "energy_j": rec.cum_energy_j,
            "bytes_up": rec.cum_bytes_up,
            "bytes_down": rec.cum_bytes_down,
            "round_time_s": rec.duration_s,
            "deadline_s": outcome.timing.deadline_s if outcome.timing.deadline_s is not None else "",
            "participants": len(outcome.accepted),
            "failed": len(outcome.rejected),
            "late": len(outcome.late),
            "sat_out": len(self.core.sat_out),
            **metrics,
        }
        self.history.append(row)
        by_cid = {r.cid: r for r in replies}

        def who(cid: str) -> dict[str, Any]:
            info = self.clients[cid]
            return {"round": outcome.round, "client": cid, "tier": info.tier, "profile": info.profile.name}

        client_rows = []
        for cid, plan in sorted(self.core.plans.items()):
            info, cr, r = self.clients[cid], outcome.timing.clients.get(cid), by_cid.get(cid)
            self.assigned.update((info.tier, g) for g in plan.train)
            status = (
                ("rejected: " + outcome.rejected[cid])
                if cid in outcome.rejected
                else ("late" if cid in outcome.late else "ok")
            )
            client_rows.append(
                {
                    **who(cid),
                    "status": status,
                    "groups": list(plan.train),
                    "present": list(plan.present),
                    "samples": r.samples if r else 0,
                    "work_fraction": plan.work_fraction,
                    "flops": r.flops if r else 0.0,
                    "bytes_up": outcome.bytes_up.get(cid, 0),
                    "bytes_down": outcome.bytes_down.get(cid, 0),
                    "virtual_s": cr.finish_s if cr else "",
                    "virtual_j": cr.energy_j if cr else "",
                    **(dict(r.metrics) if r else {}),
                }
            )
        client_rows += [
            {**who(cid), "status": "sat out: cannot deliver one batch before the deadline", "samples": 0}
            for cid in self.core.sat_out
        ]
        if self.recorder:
            self.recorder.round(row)
            self.recorder.clients(client_rows)
        if self.progress:
            f1 = f"macro-F1 {metrics['macro_f1']:.3f}  rare-F1 {metrics['rare_modality_f1']:.3f}" if metrics else ""
            print(
                f"[{self.cfg.strategy.name}] round {outcome.round:3d}/{self.cfg.train.rounds}  "
                f"virtual {rec.cum_time_s:9.1f} s  {rec.cum_energy_j / 1000:8.2f} kJ  {f1}  "
                f"failed {len(outcome.rejected)}  late {len(outcome.late)}  sat out {len(self.core.sat_out)}  "
                f"({time.perf_counter() - self._started:.0f} s)",
                flush=True,
            )

    def initial_row(self) -> None:
        """Round 0: the initial model's metrics at zero cost."""
        m = self.evaluate()
        row = {
            "round": 0,
            "virtual_time_s": 0.0,
            "energy_j": 0.0,
            "bytes_up": 0,
            "bytes_down": 0,
            "round_time_s": 0.0,
            "participants": 0,
            "failed": 0,
            "late": 0,
            "sat_out": 0,
            **m,
        }
        self.history.append(row)
        if self.recorder:
            self.recorder.round(row)

    def summarise(self) -> dict[str, Any]:
        target = self.cfg.eval.target_macro_f1
        hit = to_target(self.core.ledger, target)
        last: dict[str, Any] = next((h for h in reversed(self.history) if "macro_f1" in h), {})
        rec = self.core.ledger.rounds[-1] if self.core.ledger.rounds else None
        summary = {
            "name": self.cfg.name,
            "strategy": self.cfg.strategy.name,
            "rounds": len(self.core.ledger.rounds),
            "rare_modalities": self.rare,
            "target_macro_f1": target,
            "final": {k: v for k, v in last.items() if k == "accuracy" or "f1" in k},
            "totals": {
                "virtual_time_s": rec.cum_time_s if rec else 0.0,
                "energy_j": rec.cum_energy_j if rec else 0.0,
                "bytes_up": rec.cum_bytes_up if rec else 0.0,
                "bytes_down": rec.cum_bytes_down if rec else 0.0,
            },
            "to_target": None
            if hit is None
            else {"round": hit.round, "time_s": hit.time_s, "energy_j": hit.energy_j, "bytes": hit.bytes_total},
            "run_dir": str(self.recorder.dir) if self.recorder else None,
            "wall_clock_s": time.perf_counter() - self._started,
        }
        if self.recorder:
            self.recorder.arrays("model.npz", self.core.registry.read())
            self.recorder.summary(summary)
            self.recorder.close()
        return summary
