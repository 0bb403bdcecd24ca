"""The gpt2 summary: loss curves, final validation loss and a throughput table, from
finished results (missing and diverged cells included)."""

import math
from pathlib import Path

from kmatrix import gpu_usage
from kmatrix.files import as_float, write_atomic


def _ema(values, alpha=0.1):
    """Exponential moving average for the loss plot; it restarts after a non-finite value
    (None or NaN in a result), which stays NaN in the curve."""
    out, m = [], None
    for v in map(as_float, values):
        m = v if m is None or not math.isfinite(m) else (1 - alpha) * m + alpha * v
        out.append(m)
    return out


def summarize(summary_dir, cells, results, cfg):
    """Three figures and a table from the finished cells: loss curves, the final validation
    loss per optimizer / precision (and variant), a throughput table, and the GPU usage
    per cell where it was sampled; their numbers for summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary_dir = Path(summary_dir)
    summary_dir.mkdir(parents=True, exist_ok=True)
    profile = cfg.get("profile", "?")
    # an ablation's variants get the colours (each name leads its labels); else optimizers
    colors = {o: plt.cm.tab10(i % 10) for i, o in enumerate(sorted({_hue(c.point) for c in cells}))}
    done = [(c, results[c.id]) for c in cells if results.get(c.id)]
    rows = [_row(c, r) for c, r in done]

    varied = any("variant" in c.point for c in cells)
    by = "variant / optimizer / precision" if varied else "optimizer / precision"
    title = f"{cfg.get('name', 'gpt2')}: training loss by {by} [{profile}]"
    _loss_curves(plt, summary_dir / "loss_curves.png", done, colors, title)
    means = _final_val_loss(plt, summary_dir / "final_val_loss.png", rows, colors, profile)
    _throughput_table(summary_dir / "throughput.md", rows, profile)
    figures = ["loss_curves.png", "final_val_loss.png"]
    usages = {c.id: (results.get(c.id) or {}).get("gpu_usage") for c in cells}
    title = f"{cfg.get('name', 'gpt2')}: GPU usage per cell [{profile}]"
    if gpu_usage.plot(summary_dir / "gpu_usage.png", usages, title):
        figures.append("gpu_usage.png")
    best = min(
        (r for r in rows if r["status"] == "ok" and _finite(r["final_val_loss"])),
        key=lambda r: r["final_val_loss"],
        default=None,
    )
    return {
        "figures": figures,
        "tables": ["throughput.md"],
        "final_val_loss": {n.replace("\n", "-"): m for n, m in means.items()},
        "throughput": rows,
        "best_cell": best["cell"] if best else None,
        "cells_done": len(rows),
        "cells_total": len(cells),
    }


def _hue(point):
    return point.get("variant") or point["optimizer"]


def _row(cell, result):
    """One cell's line of the throughput table (and of summary.json's "throughput")."""
    pt, m = cell.point, result.get("metrics") or {}
    return {
        "cell": cell.id,
        **({"variant": pt["variant"]} if "variant" in pt else {}),
        "optimizer": pt["optimizer"],
        "precision": pt["precision"],
        "seed": pt["seed"],
        "status": result.get("status"),
        "final_val_loss": m.get("final_val_loss"),
        "tokens_per_s": m.get("tokens_per_s"),
        "mfu": m.get("mfu"),
        "peak_mem_mb": m.get("peak_mem_mb"),
        **_gpu_columns(result.get("gpu_usage")),
    }


def _save(plt, fig, path):
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def _loss_curves(plt, path, done, colors, title):
    """The training loss (EMA) of every finished cell: colour = variant or optimizer, line
    style = precision; a cell that did not finish ok says its status in the legend."""
    styles = {"fp32": "-", "bf16": "--", "fp16": ":"}
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for c, r in done:
        pt = c.point
        label = f"{pt['optimizer']} {pt['precision']} s{pt['seed']}"
        if "variant" in pt:
            label = f"{pt['variant']} {label}"
        if r.get("status") != "ok":
            label += f" ({r.get('status')})"
        if r.get("losses"):
            ax.plot(
                _ema(r["losses"]),
                color=colors[_hue(pt)],
                ls=styles.get(pt["precision"], "-"),
                lw=1.2,
                label=label,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (EMA 0.1)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if done:
        ax.legend(fontsize=8, ncol=2)
    _save(plt, fig, path)


def _final_val_loss(plt, path, rows, colors, profile):
    """Final validation loss per (variant,) optimizer and precision: one dot per seed and
    the mean (a dot plot: loss differences are small next to the loss, and bars would hide
    them). Returns {"[<variant>\n]<optimizer>\n<precision>": mean} of the groups with a
    finite loss."""
    groups, diverged = {}, {}
    for r in rows:
        name = f"{r['optimizer']}\n{r['precision']}"
        if "variant" in r:
            name = f"{r['variant']}\n{name}"
        v = as_float(r["final_val_loss"])
        if r["status"] == "ok" and math.isfinite(v):
            groups.setdefault(name, []).append(v)
        else:
            diverged[name] = diverged.get(name, 0) + 1
    names = sorted(set(groups) | set(diverged))
    means = [sum(groups[n]) / len(groups[n]) if n in groups else None for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 4.5))
    for i, n in enumerate(names):
        color = colors[n.split("\n")[0]]
        values = groups.get(n, [])
        ax.plot([i] * len(values), values, "o", color=color, alpha=0.6, ms=6)
        if means[i] is not None:
            ax.plot([i - 0.25, i + 0.25], [means[i]] * 2, color=color, lw=2)
            ax.annotate(f"{means[i]:.3f}", (i + 0.28, means[i]), va="center", fontsize=8)
        if diverged.get(n):
            ax.annotate(
                f"{diverged[n]} not ok",
                (i, 0.02),
                xycoords=("data", "axes fraction"),
                ha="center",
                fontsize=8,
                color="#8B0000",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("final validation loss")
    ax.set_title(f"final validation loss: seeds (dots), mean (line) [{profile}]", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, path)
    return {n: m for n, m in zip(names, means) if m is not None}


def _throughput_table(path, rows, profile):
    fmt = lambda v, f, unit="": "-" if v is None else format(v, f) + unit  # noqa: E731
    lines = [
        f"# Throughput [{profile}]",
        "",
        "| cell | status | final val loss | tokens/s | MFU | peak mem (MiB) | GPU util | GPU power |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['status']} | {fmt(r['final_val_loss'], '.4f')} | "
            f"{fmt(r['tokens_per_s'], ',.0f')} | {fmt(r['mfu'], '.1%')} | {fmt(r['peak_mem_mb'], '.0f')} | "
            f"{fmt(r['gpu_util_pct'], '.0f', '%')} | {fmt(r['gpu_power_w'], '.0f', ' W')} |"
        )
    text = "\n".join(lines) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def _gpu_columns(usage):
    """Mean utilisation and power of a cell's gpu_usage (kmatrix/gpu_usage.py), or None."""
    usage = usage if isinstance(usage, dict) else {}
    number = lambda key: v if _finite(v := usage.get(key)) else None  # noqa: E731
    return {"gpu_util_pct": number("mean_utilization_pct"), "gpu_power_w": number("mean_power_w")}


def _finite(v):
    return math.isfinite(as_float(v))
