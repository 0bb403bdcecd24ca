"""Apples to apples: what differs between the cells a summary compares, besides their axes.

A summary's figures put cells side by side as if only their axes (variant, optimizer,
precision, seed, the grid) told them apart. Each cell's manifest.json and result.json
say what else it ran with; `differences()` lists every such setting that is not the same
for all of them: the machine (GPU model, driver), the software (torch, CUDA, cuDNN, the
commit), the numerics (run profile, deterministic algorithms, TF32, torch.compile), what
a cell ran with when it differs from its plan (the batch size and gradient accumulation
after an out-of-memory fallback, recorded under "ran_with", and its planned parameters:
a result reused from another configuration), and retries.

What it cannot see: settings no manifest records (the CPU model, other jobs on the
machine, a library version outside the environment snapshot), and cells without a
manifest (not run yet, inferred by a refined grid, or run before manifests existed),
which it counts but does not compare. It compares every cell of the summary, so a
figure that shows only some of them may be warned about a difference it does not show.
"""

import json
import textwrap

from kmatrix.results import cell_file

# setting -> its value in a cell's (manifest, result); None where the cell does not say.
ENVIRONMENT = {
    "gpu": lambda m, r: (m.get("gpu") or {}).get("name") or m.get("device"),
    "driver": lambda m, r: (m.get("gpu") or {}).get("driver"),
    "torch": lambda m, r: m.get("torch"),
    "cuda": lambda m, r: m.get("cuda"),
    "cudnn": lambda m, r: m.get("cudnn"),
    "code": lambda m, r: _commit(m.get("git") or {}),
    "profile": lambda m, r: (m.get("knobs") or {}).get("profile") or r.get("profile"),
    "deterministic": lambda m, r: (m.get("knobs") or {}).get("deterministic_algorithms"),
    "tf32": lambda m, r: (m.get("knobs") or {}).get("tf32"),
    "compile": lambda m, r: (m.get("knobs") or {}).get("compile"),
    "attempt": lambda m, r: r.get("attempt"),
}
# What a cell ran with, against what its plan said (an out-of-memory fallback records it).
RAN_WITH = ("batch_size", "grad_accum", "oom_retries")


def _commit(git):
    sha = git.get("sha")
    return f"{sha[:12]}{' (dirty)' if git.get('dirty') else ''}" if sha else None


def read_manifest(root, cell_id):
    """The cell's manifest.json as a dict, or None (none, unreadable, not an object)."""
    path = cell_file(root, cell_id, "manifest.json")
    try:
        data = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _text(value):
    return value if isinstance(value, str) else json.dumps(value)


def differences(root, cells, results):
    """{"cells": compared, "without_manifest": n, "differences": {setting: [{"value",
    "cells", "e.g."}...]}}: each setting whose value is not the same for every compared
    cell, its values most common first, with a cell that has each."""
    seen = {}  # setting -> value -> [cell ids]
    compared, missing = 0, 0
    for cell in cells:
        result = results.get(cell.id)
        manifest = read_manifest(root, cell.id) if result else None
        if manifest is None:
            missing += 1
            continue
        compared += 1
        for setting, read in ENVIRONMENT.items():
            value = read(manifest, result)
            if value is None:  # the cell does not say (a diverged run's knobs): no evidence
                continue
            seen.setdefault(setting, {}).setdefault(_text(value), []).append(cell.id)
        ran = manifest.get("ran_with") or {}
        for key in RAN_WITH:
            planned = cell.params.get(key, 0 if key == "oom_retries" else None)
            value = ran.get(key, planned)
            text = "as planned" if value == planned else f"{_text(planned)} -> {_text(value)}"
            seen.setdefault(key, {}).setdefault(text, []).append(cell.id)
        done = result.get("params")
        for key in sorted(set(cell.params) | set(done or {})) if isinstance(done, dict) else ():
            if done.get(key) != cell.params.get(key):
                text = f"{_text(done.get(key))} (this configuration: {_text(cell.params.get(key))})"
                seen.setdefault(f"param {key}", {}).setdefault(text, []).append(cell.id)
    found = {}
    for setting, values in seen.items():
        if setting.startswith("param "):  # cells not listed ran with the planned value
            agree = compared - sum(len(ids) for ids in values.values())
            if agree:
                values = {"as planned": [None] * agree, **values}
        if len(values) > 1:
            ordered = sorted(values.items(), key=lambda kv: -len(kv[1]))
            found[setting] = [
                {"value": value, "cells": len(ids), "e.g.": next((i for i in ids if i), None)}
                for value, ids in ordered
            ]
    return {"cells": compared, "without_manifest": missing, "differences": found}


def warning_lines(report):
    """The summary's warning, one line per setting; [] when the cells are comparable."""
    found = report["differences"]
    if not found:
        return []
    lines = [
        f"warning: the figures compare {report['cells']} cells that differ in more than "
        f"their axes ({', '.join(found)}):"
    ]
    for setting, values in found.items():
        parts = [
            f"{v['value']} ({v['cells']} cell{'' if v['cells'] == 1 else 's'}"
            + (f", e.g. {v['e.g.']})" if v["e.g."] else ")")
            for v in values
        ]
        lines.append(f"  {setting}: {'; '.join(parts)}")
    return lines


def stamp(png, text):
    """Add a line of red text under a figure (a PNG the workload wrote), so the image
    itself says that its cells are not comparable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kmatrix.files import write_atomic

    image = plt.imread(png)
    height, width = image.shape[:2]
    lines = textwrap.wrap(text, max(40, width // 6))  # ~6 pixels a character at 8 points
    band = 8 + 13 * len(lines)
    fig = plt.figure(figsize=(width / 100, (height + band) / 100), dpi=100)
    fig.figimage(image, 0, band)
    fig.text(
        0.005,
        band / 2 / (height + band),
        "\n".join(lines),
        color="#8B0000",
        fontsize=8,
        va="center",
        linespacing=1.2,
    )
    write_atomic(png, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
