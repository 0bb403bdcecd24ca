"""GPT2_CHECK_NUMERICS: find the parameters whose gradient or value went non-finite, and
decide whether a step diverged."""

import math

import torch


def _counts(t):
    """(non-finite, NaN, inf) element counts of a tensor."""
    nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    return nan + inf, nan, inf


def nonfinite_table(named_params):
    """A text table of every parameter whose gradient or value holds a NaN or an inf, and
    the number of such rows (0: everything is finite)."""
    rows = []
    for name, p in named_params:
        for what, t in (("grad", p.grad), ("param", p.detach())):
            if t is not None and not bool(torch.isfinite(t).all()):
                rows.append(
                    (
                        name,
                        "x".join(map(str, p.shape)) or "scalar",
                        str(t.dtype)[6:],
                        str(t.device),
                        what,
                        *map(str, _counts(t)),
                    )
                )
    head = ("parameter", "shape", "dtype", "device", "tensor", "non-finite", "nan", "inf")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    return "\n".join(lines), len(rows)


def check_numerics(loss, named_params, scaler, step, log):
    """GPT2_CHECK_NUMERICS, called after the backward pass and before the optimizer step
    (after GradScaler.unscale_ under fp16). Returns None when the step may proceed, or the
    message of the divergence, after logging the table of offending parameters.

    The rule: a non-finite loss always diverges. A non-finite gradient diverges in fp32 and
    bf16. Under fp16 an inf/NaN gradient is the GradScaler's business (it skips the step and
    halves the scale), so it only counts once the scale has already dropped below 1: then
    the gradient overflows even unscaled, which no further halving can fix.
    """
    loss_ok = math.isfinite(loss)
    grads = [p.grad for _, p in named_params if p.grad is not None]
    grads_ok = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
    if loss_ok and grads_ok:
        return None
    if loss_ok and scaler.is_enabled() and scaler.get_scale() >= 1.0:
        log(
            f"step {step}: fp16 gradients overflowed at loss scale {scaler.get_scale():g}; "
            "the GradScaler skips this step and lowers the scale"
        )
        return None
    table, n = nonfinite_table(named_params)
    what = f"loss {loss}" if not loss_ok else "gradients"
    if scaler.is_enabled():
        what += f" (fp16 loss scale {scaler.get_scale():g})"
    message = f"check numerics: non-finite {what} at step {step}"
    if n:
        message += f", {n} non-finite tensor(s):\n{table}"
    else:
        message += ": every parameter and gradient is finite (the forward pass overflowed)"
    log(message)
    return message
