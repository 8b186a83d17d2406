"""Multi-process (gloo, CPU) tests of the sharded losses: every rank's loss and gradients against
the single-process float64 reference on the gathered batch, under the DDP-average convention:
local feature gradients are ``W * dL/dx``, ``logit_scale`` / ``logit_bias`` gradients ``dL/ds``."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from support.losses_reference import clip_ref, colbert_ref, filip_ref, siglip_ref

pytestmark = pytest.mark.distributed

NA = 13
SIZES_A = {1: [13], 2: [5, 8], 3: [4, 2, 7], 4: [3, 5, 1, 4]}
NB_LABELS = 17
SIZES_B_LABELS = {1: [17], 2: [10, 7], 3: [6, 6, 5], 4: [2, 6, 4, 5]}
CASES = ["clip_diag", "clip_labels", "clip_positives", "siglip", "filip", "colbert"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world: int, *args, timeout: float = 400.0) -> None:
    """Run ``fn(rank, world, port, *args)`` in ``world`` spawned processes; fail (not hang) on timeout."""
    port = _free_port()
    ctx = mp.start_processes(fn, args=(world, port, *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"distributed workers did not finish within {timeout} s (hang?)")


def _init(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def build_case(name: str):
    """Global inputs of one case: (fn name, a, b, extras dict, kwargs, row_pos, sizes_b per W)."""
    gen = torch.Generator().manual_seed(CASES.index(name))
    if name in ("filip", "colbert"):
        nb = NA if name == "filip" else NB_LABELS
        ta = torch.randn(NA, 4, 8, generator=gen)
        tb = torch.randn(nb, 5, 8, generator=gen)
        ma = torch.rand(NA, 4, generator=gen) > 0.3
        mb = torch.rand(nb, 5, generator=gen) > 0.3
        ma[:, 0] = True
        mb[:, 0] = True
        if name == "filip":
            return dict(a=ta, b=tb, ma=ma, mb=mb, kw=dict(label_smoothing=0.1), row_pos=None, sizes_b=SIZES_A)
        labels = torch.randint(0, nb, (NA,), generator=gen)
        return dict(a=ta, b=tb, ma=ma, mb=mb, kw=dict(symmetric=True), labels=labels, row_pos=labels[:, None],
                    sizes_b=SIZES_B_LABELS)  # fmt: skip
    a = torch.randn(NA, 6, generator=gen, dtype=torch.float64)
    if name == "clip_labels":
        b = torch.randn(NB_LABELS, 6, generator=gen, dtype=torch.float64)
        labels = torch.randint(0, NB_LABELS, (NA,), generator=gen)
        return dict(a=a, b=b, kw=dict(symmetric=False, label_smoothing=0.05), labels=labels,
                    row_pos=labels[:, None], sizes_b=SIZES_B_LABELS)  # fmt: skip
    if name == "clip_positives":
        b = torch.randn(2 * NA, 6, generator=gen, dtype=torch.float64)
        pos = torch.stack([2 * torch.arange(NA), 2 * torch.arange(NA) + 1], 1)
        return dict(a=a, b=b, kw=dict(), positives=pos, row_pos=pos,
                    sizes_b={w: [2 * s for s in v] for w, v in SIZES_A.items()})  # fmt: skip
    b = torch.randn(NA, 6, generator=gen, dtype=torch.float64)
    return dict(a=a, b=b, kw=dict(label_smoothing=0.1) if name == "clip_diag" else {}, row_pos=None, sizes_b=SIZES_A)


def _shard(t: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    lo = sum(sizes[:rank])
    return t[lo : lo + sizes[rank]]


def _run_case(name: str, rank: int, world: int, strategy: str, group):
    import mlvec.losses as L

    c = build_case(name)
    sa, sb = SIZES_A[world], c["sizes_b"][world]
    a = _shard(c["a"], sa, rank).clone().requires_grad_(True)
    b = _shard(c["b"], sb, rank).clone().requires_grad_(True)
    dt = a.dtype
    scale = torch.tensor(2.0, dtype=dt, requires_grad=True)
    bias = torch.tensor(-0.5, dtype=dt, requires_grad=True)
    kw = dict(c["kw"], strategy=strategy, tile_size=3, group=group)
    if "labels" in c:
        kw["labels"] = _shard(c["labels"], sa, rank)
    if "positives" in c:
        kw["positives"] = _shard(c["positives"], sa, rank)
    if name.startswith("clip"):
        loss = L.clip_loss(a, b, scale, bias, **kw)
    elif name == "siglip":
        loss = L.siglip_loss(a, b, scale, bias, **kw)
    else:
        ma, mb = _shard(c["ma"], sa, rank), _shard(c["mb"], sb, rank)
        fn = L.filip_loss if name == "filip" else L.colbert_loss
        loss = fn(a, ma, b, mb, scale, bias, **kw)
    loss.backward()
    return {"loss": loss.detach(), "a": a.grad, "b": b.grad, "scale": scale.grad, "bias": bias.grad}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # One set of 4 processes runs every group size W = 1..4 on subgroups (W = 4: the default
    # world group), which also exercises point-to-point addressing inside a subgroup.
    _init(rank, world, port)
    for w in range(1, world + 1):
        group = dist.new_group(list(range(w))) if w < world else None
        if rank >= w:
            continue
        res = {}
        for strategy in ("all_gather", "ring"):
            for name in CASES:
                res[(name, strategy)] = _run_case(name, rank, w, strategy, group)
        torch.save(res, os.path.join(out_dir, f"w{w}_rank{rank}.pt"))
    dist.destroy_process_group()


def _reference(name: str):
    c = build_case(name)
    a = c["a"].double().requires_grad_(True)
    b = c["b"].double().requires_grad_(True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    kw = {"eps" if k == "label_smoothing" else k: v for k, v in c["kw"].items()}
    if name.startswith("clip"):
        loss = clip_ref(a, b, scale, bias, row_pos=c["row_pos"], **kw)
    elif name == "siglip":
        loss = siglip_ref(a, b, scale, bias, row_pos=c["row_pos"])
    elif name == "filip":
        loss = filip_ref(a, c["ma"], b, c["mb"], scale, bias, row_pos=c["row_pos"], **kw)
    else:
        loss = colbert_ref(a, c["ma"], b, c["mb"], scale, bias, row_pos=c["row_pos"], **kw)
    ga, gb, gs, gbias = torch.autograd.grad(loss, [a, b, scale, bias])
    return c, loss.detach(), ga, gb, gs, gbias


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    spawn(_worker, 4, str(out))
    return out


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sharded_losses_match_reference(world, sharded_results):
    results = [torch.load(sharded_results / f"w{world}_rank{r}.pt") for r in range(world)]
    for name in CASES:
        c, loss, ga, gb, gs, gbias = _reference(name)
        tol = dict(rtol=1e-9, atol=1e-11) if c["a"].dtype == torch.float64 else dict(rtol=2e-4, atol=1e-5)
        sa, sb = SIZES_A[world], c["sizes_b"][world]
        for strategy in ("all_gather", "ring"):
            for rank in range(world):
                got = results[rank][(name, strategy)]
                where = f"{name} {strategy} rank {rank}/{world}"
                torch.testing.assert_close(got["loss"].double(), loss, **tol, msg=where)
                # DDP-average convention: local feature gradient is W times the true one.
                torch.testing.assert_close(got["a"].double() / world, _shard(ga, sa, rank), **tol, msg=where)
                torch.testing.assert_close(got["b"].double() / world, _shard(gb, sb, rank), **tol, msg=where)
                torch.testing.assert_close(got["scale"].double(), gs, **tol, msg=where)
                torch.testing.assert_close(got["bias"].double(), gbias, **tol, msg=where)


def _openclip_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from open_clip.loss import ClipLoss as OCClip
    from open_clip.loss import SigLipLoss as OCSig

    import mlvec.losses as L

    _init(rank, world, port)
    gen = torch.Generator().manual_seed(0)
    a_all = torch.nn.functional.normalize(torch.randn(12, 8, generator=gen, dtype=torch.float64), dim=-1)
    b_all = torch.nn.functional.normalize(torch.randn(12, 8, generator=gen, dtype=torch.float64), dim=-1)
    res = {}
    mods = {
        "clip": (OCClip(gather_with_grad=True, rank=rank, world_size=world), L.ClipLoss(tile_size=4)),
        "clip_ring": (OCClip(gather_with_grad=True, rank=rank, world_size=world), L.ClipLoss(strategy="ring")),
        "siglip": (OCSig(rank=rank, world_size=world), L.SigLipLoss(tile_size=4)),
        "siglip_ring": (OCSig(rank=rank, world_size=world), L.SigLipLoss(strategy="ring")),
        # The same constructor arguments on both sides (open_clip's names).
        "clip_local": (OCClip(local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world),
                       L.ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank,
                                  world_size=world)),
        "siglip_shift": (OCSig(cache_labels=True, rank=rank, world_size=world, dist_impl="shift"),
                         L.SigLipLoss(cache_labels=True, rank=rank, world_size=world, dist_impl="shift")),
    }
    for key, (theirs, ours) in mods.items():
        for who, mod in (("theirs", theirs), ("ours", ours)):
            a = a_all[rank * 6 : rank * 6 + 6].clone().requires_grad_(True)
            b = b_all[rank * 6 : rank * 6 + 6].clone().requires_grad_(True)
            ls = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
            lb = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
            loss = mod(a, b, ls.exp(), lb) if key.startswith("siglip") else mod(a, b, ls.exp())
            loss.backward()
            res[(key, who)] = {"loss": loss.detach(), "a": a.grad, "b": b.grad, "ls": ls.grad,
                               "lb": lb.grad}  # fmt: skip
    try:  # a rank that is not this process's is refused, not silently ignored
        L.ClipLoss(rank=1 - rank, world_size=world)(a_all[:6], b_all[:6], 10.0)
        res["wrong_rank"] = "accepted"
    except ValueError as e:
        res["wrong_rank"] = str(e)
    torch.save(res, os.path.join(out_dir, f"openclip_rank{rank}.pt"))
    _bad_inputs(rank, out_dir)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    pytest.importorskip("open_clip")
    out = tmp_path_factory.mktemp("two_ranks")
    spawn(_openclip_worker, 2, str(out), timeout=400)
    return out


def test_agrees_with_open_clip_two_ranks(two_rank_results):
    res = [torch.load(two_rank_results / f"openclip_rank{r}.pt") for r in range(2)]
    for key in ("clip", "clip_ring", "siglip", "siglip_ring", "clip_local", "siglip_shift"):
        theirs = [r[(key, "theirs")] for r in res]
        ours = [r[(key, "ours")] for r in res]
        if key in ("clip", "clip_ring"):
            # gather_with_grad=True, local_loss=False: every rank computes the global loss.
            for t, o in zip(theirs, ours, strict=True):
                torch.testing.assert_close(o["loss"], t["loss"], rtol=1e-10, atol=1e-12)
        else:
            # open_clip's SigLIP (and CLIP with local_loss=True) returns each rank's part; the
            # global loss is their mean.
            mean = (theirs[0]["loss"] + theirs[1]["loss"]) / 2
            for o in ours:
                torch.testing.assert_close(o["loss"], mean, rtol=1e-10, atol=1e-12)
        for t, o in zip(theirs, ours, strict=True):
            torch.testing.assert_close(o["a"], t["a"], rtol=1e-9, atol=1e-12, msg=key)
            torch.testing.assert_close(o["b"], t["b"], rtol=1e-9, atol=1e-12, msg=key)
        # After DDP's average the scale/bias gradients agree.
        for p in ("ls",) + (("lb",) if key.startswith("siglip") else ()):
            mean_t = (theirs[0][p] + theirs[1][p]) / 2
            mean_o = (ours[0][p] + ours[1][p]) / 2
            torch.testing.assert_close(mean_o, mean_t, rtol=1e-9, atol=1e-12, msg=key)
    for rank, r in enumerate(res):
        assert f"rank={1 - rank} was given" in r["wrong_rank"], r["wrong_rank"]


def _bad_inputs(rank: int, out_dir: str) -> None:
    import mlvec.losses as L

    out = {}
    good_a, good_b = torch.randn(4, 6), torch.randn(4, 6)
    bad = {
        "nan_features": (torch.full((4, 6), float("nan")) if rank == 1 else good_a, good_b, {}),
        "dim_mismatch_across_ranks": (torch.randn(4, 5 if rank == 1 else 6), torch.randn(4, 5 if rank == 1 else 6), {}),
        "uneven_diag": (good_a, torch.randn(3 if rank == 0 else 4, 6), {}),
        "label_out_of_range": (good_a, good_b, {"labels": torch.tensor([0, 1, 2, 8 if rank == 1 else 3])}),
    }
    for strategy in ("all_gather", "ring"):
        for key, (a, b, kw) in bad.items():
            try:
                L.clip_loss(a, b, 3.0, strategy=strategy, **kw)
                out[(key, strategy)] = "no error"
            except ValueError as e:
                out[(key, strategy)] = str(e)
    # The group is still in step afterwards.
    out["after"] = float(L.clip_loss(good_a, good_b, 3.0))
    torch.save(out, os.path.join(out_dir, f"bad_rank{rank}.pt"))


def test_bad_input_raises_on_every_rank_without_hanging(two_rank_results):
    res = [torch.load(two_rank_results / f"bad_rank{r}.pt") for r in range(2)]
    for strategy in ("all_gather", "ring"):
        assert "NaN" in res[1][("nan_features", strategy)]
        assert "rank(s) [1]" in res[0][("nan_features", strategy)]
        for r in range(2):
            assert "feature dimension" in res[r][("dim_mismatch_across_ranks", strategy)]
            assert "batch sizes differ" in res[r][("uneven_diag", strategy)]
            assert "column index 8" in res[r][("label_out_of_range", strategy)]
    assert all(torch.isfinite(torch.tensor(r["after"])) for r in res)
