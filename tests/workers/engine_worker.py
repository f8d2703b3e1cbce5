"""A training process for the engine's fault tests, started by torchrun from tests/test_engine.py.

    python -m torch.distributed.run ... engine_worker.py MODE OUT_JSON key=value ...

MODE nonfinite: rank 1's second micro-batch gets a NaN loss (rank 0's stays finite).
MODE kill-once: on torchrun's first attempt, rank 0 SIGKILLs itself at its ``KILL_AT``-th
micro-batch; the restarted workers run the same command and continue from the run folder.
Each rank writes OUT_JSON.rank<N> with its summary, skipped steps and a checksum of its weights.
"""

import json
import os
import signal
import sys

import torch

from mobilevit.engine import Trainer, load_config

KILL_AT = 11  # epoch 2, third micro-batch, with the tests' 8 micro-batches an epoch


def main() -> None:
    mode, out_json, *overrides = sys.argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    trainer = Trainer(load_config(None, overrides))
    loss, calls = trainer.task.loss, [0]

    def injected(model, batch):
        calls[0] += 1
        out = loss(model, batch)
        if mode == "nonfinite" and rank == 1 and calls[0] == 2:
            out.loss = out.loss * float("nan")
        if mode == "kill-once" and rank == 0 and attempt == 0 and calls[0] == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    trainer.task.loss = injected
    summary = trainer.fit()
    # parameters only: BatchNorm running statistics are each rank's own until DDP's next broadcast
    checksum = sum(float(p.detach().double().sum()) for p in trainer.model.parameters())
    with open(f"{out_json}.rank{rank}", "w") as fh:
        json.dump({**summary, "attempt": attempt, "checksum": checksum, "calls": calls[0]}, fh)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
