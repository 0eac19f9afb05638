"""The same rounds without Flower: instructions go to :func:`relief_client.worker.run_instruction` as plain calls.

Used to check that Flower changes nothing (the integration test compares final arrays) and for quick ablations.
It is not how experiments are run: `relief simulate` goes through Flower's simulation runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.data import Federation
from common.experiment import ExperimentConfig
from common.rounds import Reply
from relief_client.worker import run_instruction
from relief_server.session import Session


def run_direct(
    cfg: ExperimentConfig, run_dir: str | Path | None = None, fed: Federation | None = None, progress: bool = False
) -> tuple[Session, dict[str, Any]]:
    session = Session(cfg, run_dir, fed, progress)
    by_cid = {str(c.cid): c for c in session.fed.clients}
    session.initial_row()
    for t in range(1, cfg.train.rounds + 1):
        replies = []
        for cid, (ins, arrays) in sorted(session.instructions(t, sorted(by_cid)).items()):
            res = run_instruction(cfg, session.fed, by_cid[cid], arrays, ins)
            replies.append(Reply(cid, res.arrays, res.samples, res.flops, res.steps, {"wall_train_s": res.train_s}))
        session.finish_round(t, replies, {})
    return session, session.summarise()
