"""Process-group plumbing for the sharded losses: shape agreement, padded all-gather, ring exchange.

Collectives stay in Python on ``torch.distributed``; the tile math never calls them. Every rank
first validates its inputs locally and then joins one small all-gather of sizes that also carries
an "input is bad" flag, so a rank with bad input raises on every rank instead of leaving the others
waiting in a later collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

STRATEGIES = ("all_gather", "ring")


@dataclass
class Comm:
    """The process group a loss runs over (``world == 1`` means no collectives at all)."""

    group: object | None
    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def peer(self, group_rank: int) -> int:
        """Global rank of ``group_rank`` (point-to-point ops address peers by global rank)."""
        if self.group is None or self.group is dist.GroupMember.WORLD:
            return group_rank
        return dist.get_global_rank(self.group, group_rank)


def resolve_group(group: object | None, device: torch.device) -> Comm:
    """The default group is the world group when torch.distributed is initialised, else none."""
    if group is None:
        if dist.is_available() and dist.is_initialized():
            group = dist.GroupMember.WORLD
        else:
            return Comm(None, 0, 1, device)
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("group: torch.distributed is not initialised, so no process group can be used")
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    # NCCL only moves device tensors, gloo moves CPU tensors (and some device ones): keep the
    # small bookkeeping tensors where the backend wants them.
    backend = dist.get_backend(group)
    comm_device = device if backend == "nccl" else torch.device("cpu")
    return Comm(group, rank, world, comm_device)


def agree(comm: Comm, local_error: str | None, fields: Sequence[int]) -> torch.Tensor:
    """All-gather ``[ok, *fields]`` (int64) from every rank; raise everywhere if any rank failed.

    Returns a ``[world, len(fields)]`` int64 CPU tensor. A rank with bad input raises its own
    message; the others raise a ValueError naming that rank, so nobody hangs.
    """
    row = torch.tensor([0 if local_error else 1, *[int(f) for f in fields]], dtype=torch.int64)
    if not comm.distributed:
        if local_error:
            raise ValueError(local_error)
        return row[1:].unsqueeze(0)
    out = [torch.empty_like(row, device=comm.device) for _ in range(comm.world)]
    dist.all_gather(out, row.to(comm.device), group=comm.group)
    table = torch.stack([t.cpu() for t in out])
    if local_error:
        raise ValueError(local_error)
    bad = [r for r in range(comm.world) if table[r, 0] == 0]
    if bad:
        raise ValueError(f"bad loss input on rank(s) {bad} of the process group (see the error there)")
    return table[:, 1:]


def _wire(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # gloo has no bool collectives: masks travel as uint8.
    return (t.to(torch.uint8) if t.dtype == torch.bool else t).to(device).contiguous()


def _unwire(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(device=like.device, dtype=like.dtype)


def all_gather_rows(comm: Comm, t: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Concatenate every rank's ``t`` (first dims given by ``sizes``) along dim 0, in rank order."""
    if not comm.distributed:
        return t
    n_max = max(sizes)
    w = _wire(t, comm.device)
    pad = torch.zeros((n_max, *w.shape[1:]), dtype=w.dtype, device=comm.device)
    pad[: w.shape[0]] = w
    out = [torch.empty_like(pad) for _ in range(comm.world)]
    dist.all_gather(out, pad, group=comm.group)
    return _unwire(torch.cat([o[:n] for o, n in zip(out, sizes, strict=True)]), t)


def all_reduce_(comm: Comm, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum or max) of ``t``; returns ``t``. No-op on one process."""
    if not comm.distributed:
        return t
    w = t.to(comm.device)
    dist.all_reduce(w, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=comm.group)
    if w is not t:
        t.copy_(w)
    return t


class RingPass:
    """Tensors travel one hop to the right (``rank + 1``) per step, received from the left.

    ``start(tensors, sizes_of_next)`` posts the sends and receives without waiting, so the caller
    computes on the current block while it moves; ``wait()`` returns the received tensors.
    """

    def __init__(self, comm: Comm):
        self.comm = comm
        self.right = comm.peer((comm.rank + 1) % comm.world)
        self.left = comm.peer((comm.rank - 1) % comm.world)
        self._reqs: list = []
        self._ops: list = []
        self._recv: list[torch.Tensor] = []
        self._likes: list[torch.Tensor] = []

    def start(self, tensors: Sequence[torch.Tensor], recv_rows: int) -> None:
        ops = []
        self._recv, self._likes = [], []
        for t in tensors:
            w = _wire(t, self.comm.device)
            buf = torch.empty((recv_rows, *w.shape[1:]), dtype=w.dtype, device=self.comm.device)
            self._recv.append(buf)
            self._likes.append(t)
            ops.append(dist.P2POp(dist.isend, w, self.right, self.comm.group))
            ops.append(dist.P2POp(dist.irecv, buf, self.left, self.comm.group))
        self._ops = ops  # the send buffers must outlive the requests
        self._reqs = dist.batch_isend_irecv(ops)

    def wait(self) -> list[torch.Tensor]:
        for r in self._reqs:
            r.wait()
        self._reqs, self._ops = [], []
        return [_unwire(b, like) for b, like in zip(self._recv, self._likes, strict=True)]
