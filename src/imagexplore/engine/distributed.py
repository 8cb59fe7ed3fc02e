"""Process-group handling for runs under `torchrun` (gloo on CPU, NCCL on CUDA).

Outside torchrun every helper degrades to the single-process answer, so task code never branches on it.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def is_launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: str) -> torch.device:
    """Initialise the process group if launched by torchrun; returns this process' device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank())
        dev = torch.device("cuda", local_rank())
    else:
        dev = torch.device("cpu")
    if is_launched() and not is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (in place, returned for chaining). gloo needs CPU tensors, NCCL CUDA ones."""
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def collective_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def all_gather(t: torch.Tensor) -> torch.Tensor:
    """The rows of `t` from every process, concatenated in rank order; shards may differ in length (they are
    padded for the collective and trimmed after). Outside torchrun: `t` itself."""
    if not is_initialized():
        return t
    dev = collective_device()
    n = torch.tensor([t.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(x.item()) for x in sizes]
    padded = torch.zeros((max(sizes), *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(t.device)


def broadcast_object(obj):
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown_and_exit(code: int = 0) -> None:
    """End a torchrun worker cleanly.

    With gloo on this kind of machine a worker sometimes aborts at interpreter exit ("terminate called without an
    active exception"), which torchrun reports as a failure. Leaving through os._exit right after destroying the
    process group (output flushed first) avoids that race (docs/engine.md, Distributed training).
    """
    if is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
