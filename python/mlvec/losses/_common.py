"""Input checking, target normalisation and the call into the tiled engine (shared by all losses)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlvec.losses._dist import STRATEGIES, Comm, agree, resolve_group
from mlvec.losses._engine import Problem, Scorer, TiledLoss

_DTYPES = {torch.float32: 1, torch.float16: 2, torch.bfloat16: 3, torch.float64: 4}
_TGT_DIAG, _TGT_LABELS, _TGT_POS = 0, 1, 2


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_features(name: str, t: object, ndim: int) -> str | None:
    if not isinstance(t, torch.Tensor):
        return f"{name}: expected a torch.Tensor, got {type(t).__name__}"
    if t.dim() != ndim:
        return f"{name}: expected {ndim} dimensions, got {_describe(t)}"
    if t.dtype not in _DTYPES:
        return f"{name}: dtype must be float32, float16, bfloat16 or float64, got {_describe(t)}"
    if t.shape[0] == 0:
        return f"{name}: empty batch ({_describe(t)}); every rank needs at least one row"
    if not bool(torch.isfinite(t).all()):
        return f"{name}: contains NaN or infinite values ({_describe(t)})"
    return None


def as_scalar(name: str, v: object, like: torch.Tensor) -> tuple[torch.Tensor | None, str | None]:
    """``logit_scale`` / ``logit_bias``: a float or a one-element tensor (kept as is for autograd)."""
    if v is None:
        return None, None
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None, f"{name}: expected a scalar or one-element tensor, got shape {tuple(v.shape)}"
        if not v.is_floating_point():
            return None, f"{name}: expected a floating-point tensor, got dtype {v.dtype}"
        if v.device != like.device:
            return None, f"{name}: on device {v.device} but the features are on {like.device}"
        t = v
    elif isinstance(v, (int, float)):
        t = torch.tensor(float(v), dtype=torch.float64 if like.dtype == torch.float64 else torch.float32)
    else:
        return None, f"{name}: expected a float or a tensor, got {type(v).__name__}"
    if not bool(torch.isfinite(t.detach()).all()):
        return None, f"{name}: is not finite ({float(t.detach().reshape(()))})"
    return t, None


def _positives_tensor(positives: object, n_rows: int) -> tuple[torch.Tensor | None, str | None]:
    if isinstance(positives, torch.Tensor):
        if positives.dtype not in (torch.int64, torch.int32) or positives.dim() != 2:
            return None, f"positives: expected an int64 tensor [rows, P] padded with -1, got {_describe(positives)}"
        p = positives.to(torch.int64)
    elif isinstance(positives, Sequence):
        lists = [list(map(int, r)) for r in positives]
        width = max((len(r) for r in lists), default=0)
        p = torch.full((len(lists), max(width, 1)), -1, dtype=torch.int64)
        for i, r in enumerate(lists):
            p[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    else:
        return None, f"positives: expected a tensor or a list of index lists, got {type(positives).__name__}"
    if p.shape[0] != n_rows:
        return None, f"positives: {p.shape[0]} rows but the first input has {n_rows} rows"
    if bool((p < -1).any()):
        return None, "positives: negative column index (only -1 is allowed, as padding)"
    srt = p.sort(1).values
    if bool(((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any()):
        return None, "positives: a row lists the same positive column twice"
    return p.cpu(), None


def targets(labels: object, positives: object, n_rows: int) -> tuple[int, torch.Tensor | None, str | None]:
    """``(kind, row_pos or None for the diagonal, error)``; row_pos holds global column indices."""
    if labels is not None and positives is not None:
        return _TGT_DIAG, None, "labels and positives: pass at most one of them"
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
            return _TGT_DIAG, None, f"labels: expected an int64 tensor [rows] of column indices, got {labels!r:.80}"
        if labels.shape != (n_rows,):
            return _TGT_DIAG, None, f"labels: expected shape ({n_rows},), got {tuple(labels.shape)}"
        if bool((labels < 0).any()):
            return _TGT_DIAG, None, "labels: negative column index"
        return _TGT_LABELS, labels.to(torch.int64).cpu().reshape(-1, 1), None
    if positives is not None:
        p, err = _positives_tensor(positives, n_rows)
        return _TGT_POS, p, err
    return _TGT_DIAG, None, None


def run(
    *,
    scorer_factory,
    kind: str,
    rows: tuple[torch.Tensor, ...],
    cols: tuple[torch.Tensor, ...],
    names: tuple[str, str],
    logit_scale: object,
    logit_bias: object,
    labels: object,
    positives: object,
    symmetric: bool,
    label_smoothing: float,
    group: object,
    strategy: str,
    tile_size: int | None,
    local_errors: list[str | None],
    extra_fields: Sequence[int] = (),
) -> torch.Tensor:
    """Validate locally, agree on sizes across ranks (raising everywhere on bad input), then run."""
    a, b = rows[0], cols[0]
    errors = [e for e in local_errors if e]
    if not errors:
        if a.shape[-1] != b.shape[-1]:
            errors.append(f"{names[0]} and {names[1]}: feature dimensions differ ({a.shape[-1]} vs {b.shape[-1]})")
        elif a.dtype != b.dtype:
            errors.append(f"{names[0]} and {names[1]}: dtypes differ ({a.dtype} vs {b.dtype})")
        elif a.device != b.device:
            errors.append(f"{names[0]} and {names[1]}: devices differ ({a.device} vs {b.device})")
    if strategy not in STRATEGIES:
        errors.append(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 1):
        errors.append(f"tile_size: expected a positive int or None, got {tile_size!r}")
    if not (isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing < 1.0):
        errors.append(f"label_smoothing: expected a float in [0, 1), got {label_smoothing!r}")
    scale = bias = None
    if not errors:
        scale, err = as_scalar("logit_scale", logit_scale, a)
        if err:
            errors.append(err)
        elif scale is None:
            errors.append("logit_scale: required")
        bias, err = as_scalar("logit_bias", logit_bias, a)
        if err:
            errors.append(err)
    tkind, row_pos, err = _TGT_DIAG, None, None
    if not errors:
        try:
            tkind, row_pos, err = targets(labels, positives, a.shape[0])
        except (TypeError, ValueError) as e:  # e.g. a positives list holding non-integers
            err = f"labels/positives: {e}"
    if err:
        errors.append(err)
    n_a = a.shape[0] if isinstance(a, torch.Tensor) and a.dim() > 0 else 0
    n_b = b.shape[0] if isinstance(b, torch.Tensor) and b.dim() > 0 else 0
    dim = a.shape[-1] if isinstance(a, torch.Tensor) and a.dim() > 0 else 0
    dcode = _DTYPES.get(getattr(a, "dtype", None), 0)
    pmax = int(row_pos.max()) if row_pos is not None and row_pos.numel() else -1
    has_pos = int((row_pos >= 0).any(1).sum()) if row_pos is not None else n_a

    device = a.device if isinstance(a, torch.Tensor) else torch.device("cpu")
    # Whether a backward pass will follow: the sigmoid loss then computes its gradients in the
    # forward sweep (no statistics are needed first), saving the backward's recompute.
    wants_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (*rows, *cols, scale, bias)
    )
    comm: Comm = resolve_group(group, device)
    table = agree(
        comm,
        errors[0] if errors else None,
        [n_a, n_b, dim, dcode, tkind, pmax, has_pos, int(wants_grad), *extra_fields],
    )
    sizes_a, sizes_b = table[:, 0].tolist(), table[:, 1].tolist()
    nb_glob = sum(sizes_b)
    # Global checks: every rank sees the same table, so every rank raises the same error.
    for col, what in ((2, "feature dimension"), (3, "dtype"), (4, "kind of targets (labels/positives/none)")):
        if len(set(table[:, col].tolist())) != 1:
            raise ValueError(f"ranks disagree on the {what}: {table[:, col].tolist()}")
    for k in range(len(extra_fields)):
        if len(set(table[:, 8 + k].tolist())) != 1:
            raise ValueError(f"ranks disagree on the token-set lengths: {table[:, 7 + k].tolist()}")
    if tkind == _TGT_DIAG and sizes_a != sizes_b:
        raise ValueError(
            f"{names[0]} and {names[1]}: batch sizes differ ({sizes_a} vs {sizes_b} per rank); "
            "pass labels= or positives= to pair rows with columns explicitly"
        )
    if int(table[:, 5].max()) >= nb_glob:
        raise ValueError(f"labels/positives: column index {int(table[:, 5].max())} >= global column count {nb_glob}")
    if int(table[:, 6].sum()) == 0:
        raise ValueError("positives: no row has any positive column")

    if row_pos is None:
        start = sum(sizes_a[: comm.rank])
        row_pos = torch.arange(start, start + n_a, dtype=torch.int64).reshape(-1, 1)
    scorer: Scorer = scorer_factory(a.dtype, a.device)
    cd = scorer.compute_dtype
    if bias is None:
        bias = torch.zeros((), dtype=cd, device=a.device)
    pb = Problem(
        scorer=scorer,
        kind=kind,
        symmetric=bool(symmetric),
        smoothing=float(label_smoothing),
        comm=comm,
        strategy=strategy,
        sizes_a=sizes_a,
        sizes_b=sizes_b,
        row_pos=row_pos,
        tile=tile_size or scorer.default_tile,
        n_rows_tensors=len(rows),
        # Every rank must take the same path (their collectives differ).
        fuse_grad=kind == "sigmoid" and bool(table[:, 7].min()),
    )
    return TiledLoss.apply(pb, scale, bias, *rows, *cols)
