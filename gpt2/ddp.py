"""One gpt2 cell trained over N GPUs of one machine with DistributedDataParallel.

The worker (pinned to N GPUs by the scheduler: CUDA_VISIBLE_DEVICES lists them) spawns
one process per GPU (NCCL), or N CPU processes (gloo) when it has no GPU. The effective
batch is the configured one: each step's A micro-batches are shared out, A/N to each
rank (rank r trains micro-batches r, N + r, 2N + r, ... of the single-process order),
DDP averages the gradients and the logged loss is the mean over ranks. With A = N (one
micro-batch per rank) the losses equal one process's at the same effective batch
bitwise in the deterministic profile: the single process sums g0/2 + g1/2 where DDP sums
(g0 + g1)/2, and halving is exact in floating point. With A/N > 1 per rank the sums
associate differently: the same to rounding, not bitwise.

Only rank 0 logs, checkpoints and writes its result (a file the worker reads back);
every rank evaluates the same validation batches.
"""

import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.multiprocessing.spawn import ProcessException

from kmatrix.errors import Diverged


@dataclass
class Replica:
    """What train() needs to know of a DDP run: the DDP module (for no_sync), this rank
    and the number of ranks."""

    module: object
    rank: int
    world: int

    def mean(self, value):
        """The mean of a scalar tensor over ranks, as one process's sum of value/N."""
        value = value / self.world
        dist.all_reduce(value)
        return value


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cell, ctx, B, A):
    """Train `cell` over p["ddp_gpus"] processes at micro-batch B, A micro-batches per step
    in all; returns rank 0's result. Raises torch.OutOfMemoryError when a rank ran out of
    memory (the caller's fallback halves B), Diverged when the run diverged."""
    n = cell.params["ddp_gpus"]
    cuda = ctx.device.startswith("cuda")
    if cuda and torch.cuda.device_count() < n:
        raise RuntimeError(
            f"GPT2_DDP_GPUS={n} but this worker sees {torch.cuda.device_count()} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')})"
        )
    from .runner import _token_data

    data = _token_data(cell.params, ctx)  # prepared once here; ranks map the same files
    with tempfile.TemporaryDirectory(prefix="kmatrix-ddp-") as tmp:
        args = (n, _free_port(), cell, ctx.device, ctx.profile, str(ctx.out_dir), B, A, data, tmp)
        try:
            torch.multiprocessing.start_processes(
                _rank, args=args, nprocs=n, join=True, start_method="spawn"
            )
        except ProcessException:
            for rank in range(n):  # a rank out of memory: the caller falls back
                path = Path(tmp) / f"oom{rank}.txt"
                if path.exists():
                    raise torch.OutOfMemoryError(f"rank {rank}: {path.read_text()}") from None
            raise
        outcome = json.loads((Path(tmp) / "result.json").read_text())
    if "diverged" in outcome:
        d = outcome["diverged"]
        raise Diverged(d["message"], d["metrics"], d["losses"], d["val_losses"])
    return outcome


def _rank(rank, n, port, cell, device, profile, out_dir, B, A, data, tmp):
    """One DDP process: join the group, train this rank's share, rank 0 writes the result."""
    from kmatrix.cell import RunContext
    from kmatrix.seeding import apply_profile, seed_everything

    from .runner import _run_once

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device.startswith("cuda"):
        torch.cuda.set_device(rank)
        device, backend = f"cuda:{rank}", "nccl"
    else:
        torch.set_num_threads(max(1, torch.get_num_threads() // n))  # the worker's cores
        backend = "gloo"
    dist.init_process_group(backend, rank=rank, world_size=n)
    try:
        seed_everything(cell.run_seed)  # as the worker seeds every cell
        apply_profile(profile)
        ctx = RunContext(device, Path(out_dir), profile=profile)
        key = ("gpt2.data", json.dumps(cell.params["data"], sort_keys=True))
        ctx.cache[key + (str(cell.params["data_dir"]),)] = data
        if rank:
            ctx.log = lambda *a: None
        try:
            result = _run_once(cell, ctx, B, A, replica=(rank, n))
        except Diverged as e:
            result = {"diverged": dict(message=str(e), metrics=e.metrics, losses=e.losses)}
            result["diverged"]["val_losses"] = e.val_losses
        except torch.OutOfMemoryError as e:
            (Path(tmp) / f"oom{rank}.txt").write_text(str(e).splitlines()[0] if str(e) else "")
            raise
        if rank == 0:
            from kmatrix.files import write_json_atomic

            write_json_atomic(Path(tmp) / "result.json", result)
    finally:
        dist.destroy_process_group()
