"""Labels of one LLM training run for trainability grids (DESIGN.md section 6).

stable    = finished without exception with a finite final loss;
trainable = stable and mean(last K losses) / first loss < threshold
            (K = `window`, or the number of steps if fewer).
"""

import math


def _finite(x):
    return x is not None and math.isfinite(x)


def label_run(losses, error=None, window=20, threshold=1.0):
    """Label one run from its per-step losses and the exception it raised (if any).

    Returns dict(stable, trainable, first_loss, last_k_mean, ratio); numbers that cannot
    be computed (no losses, a non-finite first loss) are None. A NaN or inf inside the
    last K makes last_k_mean non-finite and the run not trainable, since a loss that
    blew up on the way is no evidence of training even if the final value is finite.
    """
    losses = [float(x) for x in (losses or [])]
    first = losses[0] if losses else None
    final = losses[-1] if losses else None
    stable = error is None and _finite(final)
    k = min(int(window), len(losses))
    last_k_mean = sum(losses[-k:]) / k if k > 0 else None
    ratio = None
    if _finite(first) and first != 0 and last_k_mean is not None:
        ratio = last_k_mean / first
    trainable = bool(stable and ratio is not None and math.isfinite(ratio) and ratio < threshold)
    return {
        "stable": bool(stable),
        "trainable": trainable,
        "first_loss": first,
        "last_k_mean": last_k_mean,
        "ratio": ratio,
    }
