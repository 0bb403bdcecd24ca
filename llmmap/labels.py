"""Labels of one LLM training run for trainability grids.

stable    = finished without exception, and no recorded loss (train or validation) is
            non-finite;
trainable = stable and mean(last K losses) / first loss < threshold
            (K = `window`, or the number of steps if fewer).

A huge but finite loss (say 3e29) is stable: the arithmetic never broke, and stability
is a statement about numerics alone. It is not trainable, since its ratio to the first
loss is far above the threshold. Keeping the two apart is what lets a map show where
training blows up slowly (stable, not trainable) and where it breaks (unstable).
"""

import math


def _finite(x):
    return x is not None and math.isfinite(x)


def label_run(losses, error=None, window=20, threshold=1.0, val_losses=()):
    """Label one run from its per-step losses, its [step, loss] validation losses and
    the exception it raised (if any).

    Returns dict(stable, trainable, first_loss, last_k_mean, ratio); numbers that cannot
    be computed (no losses, a non-finite first loss) are None. A NaN or inf anywhere makes
    the run unstable and so not trainable, even if the final value is finite: a loss
    that blew up on the way is no evidence of training. Non-finite values may arrive as
    None (how result files store them).
    """
    losses = [math.nan if x is None else float(x) for x in (losses or [])]
    val = [math.nan if v[1] is None else float(v[1]) for v in (val_losses or [])]
    first = losses[0] if losses else None
    stable = error is None and bool(losses) and all(map(_finite, losses + val))
    k = min(int(window), len(losses))
    last_k_mean = sum(losses[-k:]) / k if k > 0 else None
    ratio = None
    if _finite(first) and first != 0 and _finite(last_k_mean):
        ratio = last_k_mean / first
    trainable = bool(stable and ratio is not None and math.isfinite(ratio) and ratio < threshold)
    return {
        "stable": bool(stable),
        "trainable": trainable,
        "first_loss": first if _finite(first) else None,
        "last_k_mean": last_k_mean if _finite(last_k_mean) else None,
        "ratio": ratio if _finite(ratio) else None,
    }
