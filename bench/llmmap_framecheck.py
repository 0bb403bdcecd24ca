"""A refined zoom frame of an LLM map checked against the same frame computed in full, and
a test of whether the transects' fine structure is training or arithmetic.

    python bench/llmmap_framecheck.py --out-dir bench/results            # on a GPU
    python bench/llmmap_framecheck.py --out-dir /tmp/fc --points 9 --levels 2 \\
        --steps 3 --line-points 9                                        # a CPU dry run
    python bench/llmmap_framecheck.py --analyse bench/results \\
        --prefix llmmap_framecheck_h100 --out bench/results/llmmap_framecheck_islands.json

Everything runs in one process, each batch of points through the workload's own
llmmap.maps.run_batch (gpt2/batched.py, K models a step, each run labelled), seeded and
with the run profile as a worker sets them, so the batch composition is known exactly.

1. The frame: --points x --points points of the pre-training map (defconfig
   llmmap-pretrain-zoom) around --centre, --width decades wide (default: frame 1 of the
   committed zoom, the deepest that has a boundary), computed in full in one batch; then
   refined for real with kmatrix.refine.derive (--levels, --guard, --band, --verify as a
   zoom frame is: each level's points to compute trained as one batch, as the driver's
   stages do). bench/compare_maps.py's compare() checks the refined frame against the
   full one; this script adds each inferred point's verification stratum and its
   distance to the full frame's nearest label change, so wrong labels show within the
   band and outside it, and per stratum. The same refinement replayed on the full frame's
   labels (other settings, the 33 x 33 frame of every second point) costs no training.

2. Training or arithmetic: the deepest depth of the committed pre-training transects (129
   points a line, steps of 3.05e-5 decades; lrs read from their results CSV) trained again
   under changes that move only rounding: the same batch twice (a control: it must agree
   bitwise), another batch composition (K and neighbours), each point twice in one batch,
   and Muon's Newton-Schulz orthogonalisation in fp32 instead of the bf16 it runs in on
   CUDA. Labels that flip under these are set by rounding, not by the learning rate.
"""

import argparse
import csv
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compare_maps import change_distance, compare  # noqa: E402
from kmatrix import kconfig, refine  # noqa: E402
from kmatrix.cell import Cell, RunContext  # noqa: E402
from kmatrix.config import Config  # noqa: E402
from kmatrix.errors import Diverged  # noqa: E402
from kmatrix.grid import apply_sweep  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402
from kmatrix.plan import plan  # noqa: E402

# frame 1 of bench/results/llmmap_pretrain_zoom_h100.json: 1 decade wide, a boundary of
# measured dimension 1.49 (the deepest frame that zoom finished)
CENTRE = (4.869675251658631, 2.7384196342643614)
TRANSECTS = ROOT / "bench/results/llmmap_pretrain_transects_h100_results.csv"


# ---------------------------------------------------------------------------- running


class Runner:
    """Builds cells of the defconfig at given (x, y) knob values and trains batches."""

    def __init__(self, defconfig, device, steps=0, tmp=None, chunk=0):
        tmp = Path(tmp or os.environ.get("TMPDIR", "/tmp")) / f"framecheck_{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        values = kconfig.apply_defconfig(defconfig, dotconfig=tmp / ".config")
        sets = {"exec_gpus": ["none"], "track_wandb": "disabled"}
        if steps:
            sets["gpt2_max_steps"] = steps
        self.cfg = Config(values).replace(**sets)
        self.grid0 = plan(self.cfg)[0]
        self.device, self.cache, self.seconds, self.batches = device, {}, 0.0, []
        self.chunk = chunk  # models per step (0: every point of a batch in one step)
        self.keep_losses = False  # True: each row also holds the run's per-step losses

    def cells(self, points):
        out = []
        for n, (x, y) in enumerate(points):
            params = dict(self.grid0.params)
            apply_sweep(self.cfg, params, "x", x)
            apply_sweep(self.cfg, params, "y", y)
            params["grid_seeds"] = "shared"
            # one chunk, or chunks of self.chunk in order: the composition is known
            params["batch_models"] = min(self.chunk, len(points)) if self.chunk else len(points)
            point = {**self.grid0.point, "probe": "check", "at": n}
            out.append(
                Cell(f"check-{n}", n, self.grid0.workload, point, self.grid0.run_seed, params)
            )
        return out

    def train(self, points, label):
        """Train the points as one batch; per point a dict of its outcome."""
        import torch

        from kmatrix.seeding import apply_profile, seed_everything
        from llmmap import maps

        cells = self.cells(points)
        ctxs = []
        for _ in cells:
            ctx = RunContext(device=self.device, out_dir=Path("."), cache=self.cache)
            ctx.log = lambda *a: None
            ctxs.append(ctx)
        seed_everything(cells[0].run_seed)  # as kmatrix/batch_run.py does for a batch
        apply_profile(self.cfg.get("profile") or "paper_repro")
        t0 = time.perf_counter()
        outs = maps.run_batch(cells, ctxs)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.batches.append({"label": label, "models": len(cells), "seconds": round(dt, 2)})
        print(f"  batch {label}: {len(cells)} models in {dt:.1f} s", flush=True)
        rows = []
        for out in outs:
            m = out.metrics if isinstance(out, Diverged) else out["metrics"]
            rows.append(
                {
                    "status": "diverged" if isinstance(out, Diverged) else "ok",
                    "stable": bool(m.get("stable")),
                    "trainable": bool(m.get("trainable")),
                    "loss": _num(m.get("final_train_loss")),
                    "ratio": _num(m.get("ratio")),
                    "steps": m.get("steps"),
                }
            )
            if self.keep_losses:
                losses = out.losses if isinstance(out, Diverged) else out["losses"]
                rows[-1]["losses"] = [_num(x) for x in losses]
        return rows


def _num(v):
    return float(v) if v is not None and math.isfinite(float(v)) else float("nan")


def _finite(v):
    """A float for JSON, None where not finite (a ratio a frame did not save)."""
    return float(v) if math.isfinite(float(v)) else None


def _label(row):
    return (("stable", row["stable"]), ("trainable", row["trainable"]))


# ---------------------------------------------------------------------------- the frame


def frame_points(centre, width, n):
    """[(x, y)] knob values of an n x n frame, index i + n * j (i along x)."""
    lx, ly = math.log10(centre[0]), math.log10(centre[1])
    step, h = width / (n - 1), (n - 1) // 2
    xs = [10 ** (lx + (i - h) * step) for i in range(n)]
    ys = [10 ** (ly + (j - h) * step) for j in range(n)]
    return xs, ys


def arrays(xs, ys, labels, rows=None):
    """A grid dict as compare_maps reads it: [ny, nx] arrays; labels {(i, j): label},
    rows {(i, j): outcome} of the computed points (None: every labelled point computed)."""
    shape = (len(ys), len(xs))
    g = {"xs": np.array(xs), "ys": np.array(ys), "inferred": np.zeros(shape, dtype=bool)}
    for k in ("trainable", "stable", "loss", "ratio"):
        g[k] = np.full(shape, np.nan)
    for (i, j), lab in labels.items():
        d = dict(lab)
        g["trainable"][j, i], g["stable"][j, i] = float(d["trainable"]), float(d["stable"])
        r = rows.get((i, j)) if rows is not None else None
        if rows is not None and r is None:
            g["inferred"][j, i] = True
        elif r is not None:
            g["loss"][j, i], g["ratio"][j, i] = r["loss"], r["ratio"]
    return g


def point_strata(walked, levels, n):
    """{inferred point: (level, stratum)} as kmatrix.refine drew its verification sample:
    a point new at stride s is in level L - log2(s); its stratum is its distance to the
    nearest label change of the stride-2s lattice (decided before that level)."""
    s0, out = 2**levels, {}
    by_level = {}
    for i, j in walked["inferred"]:
        s = s0 // 2
        while i % s or j % s:
            s //= 2
        by_level.setdefault(s, {})[(i, j)] = None
    for s, pts in by_level.items():
        k = levels - int(math.log2(s))
        for p, stratum in refine._strata(walked["labels"], pts, s, n, n).items():
            out[p] = (k, stratum)
    return out


def check(full, walked, levels, band, n, fine=None):
    """compare_maps.compare of a refined walk (its arrays `fine`; None: a replay, whose
    computed points are the full frame's) against the full frame, plus the wrong inferred
    labels within the band (<= band points of a true change) and outside it, per level
    and verification stratum."""
    if fine is None:
        rows = {p: {"loss": np.nan, "ratio": np.nan} for p in walked["labels"]}
        for p in walked["inferred"]:
            del rows[p]
        fine = arrays(full["xs"], full["ys"], walked["labels"], rows)
        fine["loss"] = np.where(fine["inferred"], np.nan, full["loss"])
    out = compare(fine, full)
    out["dimension"] = frame_dimension(fine)
    dist = change_distance(full["trainable"], full["stable"])
    strata = point_strata(walked, levels, n)
    wrong = {
        p
        for p, lab in walked["inferred"].items()
        if (float(dict(lab)["trainable"]), float(dict(lab)["stable"]))
        != (full["trainable"][p[1], p[0]], full["stable"][p[1], p[0]])
    }
    near = {p for p in walked["inferred"] if dist[p[1], p[0]] <= band}
    own = change_distance(fine["trainable"], fine["stable"])  # the refined frame's changes
    out["band_points"] = band
    out["inferred_within_band"] = len(near)
    out["wrong_within_band"] = len(wrong & near)
    out["wrong_outside_band"] = len(wrong - near)
    # of those, next to a change the refined frame holds (the band's own reach; the rest
    # are features it never saw)
    out["wrong_within_band_of_its_own_changes"] = sum(1 for p in wrong if own[p[1], p[0]] <= band)
    out["wrong_distance_to_change"] = sorted(float(dist[p[1], p[0]]) for p in wrong)
    per = []
    for k in range(1, levels + 1):
        for m, (lo, hi) in enumerate(refine.STRATA):
            pts = [p for p, ks in strata.items() if ks == (k, m)]
            if pts:
                per.append(
                    {
                        "level": k,
                        "stratum_points": [lo, hi],
                        "inferred": len(pts),
                        "wrong": len(wrong & set(pts)),
                    }
                )
    out["wrong_by_level_and_stratum"] = per
    out["verification"] = refine.verification_report(walked)
    out["verified"] = len(walked["verified"])
    out["verify_misses"] = sum(1 for v in walked["verified"] if v[2] != v[3])
    return out


def box_counts(trainable):
    """The trainable boundary's boxes per size, as frame_dimension's estimate counts them
    (llmmap.maps.boundary, fractal.dimension.edge_box_count at the frame's estimator)."""
    from fractal.dimension import edge_box_count
    from llmmap.maps import PAPER_ESTIMATOR_FROM, boundary

    method = "paper" if min(np.shape(trainable)) >= PAPER_ESTIMATOR_FROM else "pow2"
    bc = edge_box_count(boundary(trainable), method)
    return {"sizes": bc["sizes"], "counts": [int(c) for c in bc["counts"]]}


def frame_dimension(g):
    """The trainable boundary's box-counting dimension and pixels (llmmap.maps)."""
    from llmmap.maps import boundary_dimension

    d, pixels, how = boundary_dimension(g["trainable"])
    return {"dimension": d, "boundary_pixels": pixels, **how,
            "trainable_ratio": float(np.nanmean(g["trainable"]))}  # fmt: skip


def replay(full, levels, guard, band, verify, seed=1, every=1):
    """kmatrix.refine.derive over the full frame's labels (every `every`-th point)."""
    t, s = full["trainable"][::every, ::every], full["stable"][::every, ::every]
    n = t.shape[0]

    def label_of(i, j):
        return (("stable", bool(s[j, i])), ("trainable", bool(t[j, i])))

    walked = refine.derive(levels, guard, verify, n, n, label_of, seed=seed, band=band)
    sub = {k: full[k][::every, ::every] for k in ("trainable", "stable", "loss", "ratio")}
    sub["xs"], sub["ys"] = full["xs"][::every], full["ys"][::every]
    res = check(sub, walked, levels, band, n)
    res["settings"] = dict(points=n, levels=levels, guard=guard, band=band, verify=verify)
    return res


# ---------------------------------------------------------------------------- arithmetic


def open_csv(path):
    """A results CSV as text, gzipped (a .gz name) or not."""
    path = Path(path)
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _transects(path, lines, defconfig, points=0):
    """The committed transects' CSV: (rows by line and lattice position, a function from
    (line, position) to the point's knob values, as the probe built them: the anchors from
    the grid's committed labels (llmmap.probes.anchors), then probes.transect_coord; the
    CSV keeps no probe point's learning rates), and the labels the probe walked on."""
    from llmmap import probes, transects
    from llmmap.maps import label

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"framecheck_t_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = Config(kconfig.apply_defconfig(defconfig, dotconfig=tmp / ".config"))
    if points:
        cfg = cfg.replace(llmmap_points=points)
    grid = plan(cfg)
    by, results = {}, {}
    with open_csv(path) as f:
        for r in csv.DictReader(f):
            if not r["probe"]:
                metrics = {"stable": r["stable"] == "True", "trainable": r["trainable"] == "True"}
                results[r["id"]] = {"status": r["status"], "metrics": metrics}
            elif r["probe"] in lines:
                by.setdefault(r["probe"], {})[int(r["at"][1:])] = r
    found = probes.anchors(cfg, grid, results, label)
    unit = transects.unit(cfg.llmmap_width, cfg.llmmap_points, cfg.llmmap_depths)

    def values(name, u):
        anchor, direction = found[int(name[1:])]
        coord = probes.transect_coord(anchor, direction, unit, u)
        return {"matrix_lr": probes.to_value(cfg, "x", coord[0]),
                "unembedding_lr": probes.to_value(cfg, "y", coord[1])}  # fmt: skip

    return cfg, by, values


def deepest_depth(path, lines, limit=0, defconfig="llmmap-pretrain-transects"):
    """Per transect line: its deepest depth's rows of the committed results CSV, each with
    its knob values rebuilt as the probe built them (_transects). The deepest depth is the
    one run of consecutive lattice positions (depth d has step 2^(D-1-d) positions: only
    the deepest holds neighbours one apart)."""
    _, by, values = _transects(path, lines, defconfig)
    out = {}
    for name in lines:
        us = sorted(by[name])
        best, run = [], [us[0]]
        for u in us[1:]:
            run = run + [u] if u == run[-1] + 1 else [u]
            best = run if len(run) > len(best) else best
        if limit:
            mid = len(best) // 2
            best = best[mid - limit // 2 : mid - limit // 2 + limit]
        out[name] = [{**by[name][u], **values(name, u)} for u in best]
    return out


def depth_rows(path, lines, depth, defconfig="llmmap-pretrain-transects", points=0):
    """Per transect line: the rows of one depth (0 = the widest) of the committed results
    CSV, with knob values as in deepest_depth; the depth's positions from
    llmmap.transects.walk replayed on the CSV's labels, as the probe walked them."""
    from llmmap import transects

    cfg, by, values = _transects(path, lines, defconfig, points)
    n = max(int(name[1:]) for name in lines) + 1

    def label_of(k, u):
        r = by[f"t{k}"][u]  # KeyError: not computed
        return (("stable", r["stable"] == "True"), ("trainable", r["trainable"] == "True"))

    walked = transects.walk(n, cfg.llmmap_points, cfg.llmmap_depths, label_of)
    out = {}
    for name in lines:
        record = walked["lines"][int(name[1:])][depth]
        out[name] = [{**by[name][u], **values(name, u)} for u in record["positions"]]
    return out


def ns_fp32(G, steps=5):
    """gpt2.optimizers.zeropower_via_newtonschulz5 with the iteration in fp32 on CUDA too
    (the library's runs it in bf16 there): the same arithmetic, rounded 2^16 times finer."""
    import torch

    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.float()
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    shape = X.shape
    X = X.reshape(-1, *shape[-2:])
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    X = X.reshape(shape)
    if transposed:
        X = X.mT
    return X


def changes(rows, key):
    return sum(1 for a, b in zip(rows, rows[1:]) if a[key] != b[key])


def line_stats(rows):
    ratios = np.array([r["ratio"] for r in rows])
    d = np.abs(np.diff(ratios))
    return {
        "trainable_changes": changes(rows, "trainable"),
        "stable_changes": changes(rows, "stable"),
        "median_neighbour_ratio_change": float(np.nanmedian(d)) if np.isfinite(d).any() else None,
    }


def agreement(a, b):
    """Two runs of the same points: how many losses agree bitwise, labels that flip, and
    the median ratio difference (against the neighbours' in line_stats)."""
    la, lb = np.array([r["loss"] for r in a]), np.array([r["loss"] for r in b])
    ra, rb = np.array([r["ratio"] for r in a]), np.array([r["ratio"] for r in b])
    both = np.isfinite(ra) & np.isfinite(rb)
    return {
        "points": len(a),
        "losses_bitwise_equal": int(np.sum((la == lb) | (np.isnan(la) & np.isnan(lb)))),
        "trainable_flips": sum(1 for x, y in zip(a, b) if x["trainable"] != y["trainable"]),
        "stable_flips": sum(1 for x, y in zip(a, b) if x["stable"] != y["stable"]),
        "median_ratio_difference": float(np.median(np.abs(ra - rb)[both])) if both.any() else None,
    }


def arithmetic(runner, depth, report, save, earlier):
    """The deepest transect depth trained again under rounding-only changes."""
    import gpt2.batched as batched

    names = sorted(depth)
    pts = [(float(r["matrix_lr"]), float(r["unembedding_lr"])) for n in names for r in depth[n]]
    sizes = [len(depth[n]) for n in names]

    def per_line(rows):
        out, k = {}, 0
        for n, m in zip(names, sizes):
            out[n] = rows[k : k + m]
            k += m
        return out

    committed = []
    for n in names:
        for r in depth[n]:
            committed.append(
                {
                    "stable": r["stable"] == "True",
                    "trainable": r["trainable"] == "True",
                    "loss": _num(float(r["final_train_loss"] or "nan")),
                    "ratio": _num(float(r["ratio"] or "nan")),
                }
            )
    runs = {"committed": committed, **earlier}
    rev = pts[::-1]
    stock = batched.zeropower_via_newtonschulz5
    plan_ = [
        ("bf16_ns", pts, stock),
        ("fp32_ns", pts, ns_fp32),
        ("bf16_ns_again", pts, stock),
        ("bf16_ns_doubled", pts + rev, stock),
        ("fp32_ns_doubled", pts + rev, ns_fp32),
    ]
    for name, points, ns in plan_:
        if not report["time_left"]():
            report["arithmetic_note"] = f"stopped before {name}: out of time"
            break
        batched.zeropower_via_newtonschulz5 = ns
        try:
            rows = runner.train(points, name)
        finally:
            batched.zeropower_via_newtonschulz5 = stock
        if len(points) > len(pts):  # each point twice: the second copies, reversed back
            runs[name + "_second_copy"] = rows[len(pts) :][::-1]
            rows = rows[: len(pts)]
        runs[name] = rows
        report["arithmetic"] = summarize_arithmetic(runs, per_line, names, pts)
        save()
    return runs


def summarize_arithmetic(runs, per_line, names, pts):
    out = {"lines": names, "points_per_line": len(pts) // len(names), "runs": {}}
    for name, rows in runs.items():
        out["runs"][name] = {n: line_stats(r) for n, r in per_line(rows).items()}
    pairs = [
        ("bf16_ns", "bf16_ns_again", "control: the same batch twice"),
        ("bf16_ns", "bf16_ns_doubled", "another composition (K doubled, other neighbours)"),
        ("bf16_ns_doubled", "bf16_ns_doubled_second_copy", "each point twice in one batch"),
        ("fp32_ns", "fp32_ns_doubled", "fp32 Newton-Schulz, another composition"),
        ("fp32_ns_doubled", "fp32_ns_doubled_second_copy", "fp32, each point twice in a batch"),
        ("bf16_ns", "fp32_ns", "Newton-Schulz in bf16 against fp32"),
        ("bf16_ns", "in_frame_batch", "another composition: in the full frame's batch"),
        ("committed", "bf16_ns", "the committed run (its own batches) against this one"),
    ]
    out["comparisons"] = []
    for a, b, what in pairs:
        if a in runs and b in runs:
            la, lb = per_line(runs[a]), per_line(runs[b])
            per = {n: agreement(la[n], lb[n]) for n in names}
            out["comparisons"].append({"a": a, "b": b, "what": what, "per_line": per})
    return out


def islands(full, refined, band=1):
    """From the saved frames (no training): the full frame's one-pixel islands (a point
    whose 8 neighbours all have the other trainable label), and the points both frames
    computed whose labels differ, with each frame's loss ratio (NaN where not saved)."""
    t = full["trainable"]
    pad = np.pad(t, 1, mode="constant", constant_values=np.nan)
    alone = np.ones(t.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                nb = pad[1 + dy : 1 + dy + t.shape[0], 1 + dx : 1 + dx + t.shape[1]]
                alone &= (nb != t) | np.isnan(nb)
    both = ~refined["inferred"]
    differ = both & (
        (full["trainable"] != refined["trainable"]) | (full["stable"] != refined["stable"])
    )
    wrong = refined["inferred"] & (full["trainable"] != refined["trainable"])
    return {
        "one_pixel_islands": int(alone.sum()),
        "one_pixel_islands_not_trainable": int((alone & (t == 0)).sum()),
        "computed_by_both": int(both.sum()),
        "computed_labels_differ": [
            {"at": [int(i), int(j)], "full_trainable": bool(full["trainable"][j, i]),
             "refined_trainable": bool(refined["trainable"][j, i]),
             "full_ratio": _finite(full["ratio"][j, i]),
             "refined_ratio": _finite(refined["ratio"][j, i]),
             "one_pixel_island_in_full": bool(alone[j, i])}
            for j, i in zip(*np.nonzero(differ))
        ],  # fmt: skip
        "inferred_wrong": int(wrong.sum()),
        "inferred_wrong_one_pixel_islands_in_full": int((wrong & alone).sum()),
        "band_points": band,
        "inferred_wrong_within_band_of_its_own_changes": int(
            (wrong & (change_distance(refined["trainable"], refined["stable"]) <= band)).sum()
        ),
        **missed_features(t, refined["trainable"]),
    }


def missed_features(full, refined):
    """The full frame's features of each trainable label (8-connected regions) and, of
    those, the ones the refined frame holds no point of (every point inferred the other
    label): their sizes in points."""
    from scipy import ndimage

    out = {}
    for value, name in ((0, "not_trainable"), (1, "trainable")):
        regions, count = ndimage.label(full == value, structure=np.ones((3, 3)))
        sizes = np.bincount(regions.ravel())[1:]
        hit = np.unique(regions[(refined == value) & (regions > 0)])
        missed = np.setdiff1d(np.arange(1, count + 1), hit)
        out[f"features_{name}"] = int(count)
        out[f"features_{name}_missed_sizes"] = sorted(int(sizes[k - 1]) for k in missed)
    return out


def analyse(folder, out, prefix, levels, guard, verify, band):
    """--analyse: islands() of the frames a GPU run saved, and the refinement replayed on
    the full frame's labels by this commit's kmatrix.refine (bands 0, 1 and 2), written
    beside them."""
    g = {k: dict(np.load(Path(folder) / f"{prefix}_{k}.npz")) for k in ("full", "refined")}
    report = {"frames": str(folder), **islands(g["full"], g["refined"], band)}
    report["box_counts"] = {k: box_counts(v["trainable"]) for k, v in g.items()}
    report["replayed"] = [replay(g["full"], levels, guard, b, verify) for b in (0, 1, 2)]
    write_bench_result(out, report)
    print(json.dumps(report, indent=1))


# ---------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defconfig", default="llmmap-pretrain-zoom")
    ap.add_argument("--centre", default=",".join(map(str, CENTRE)))
    ap.add_argument("--width", type=float, default=1.0, help="decades")
    ap.add_argument("--points", type=int, default=65)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--guard", type=int, default=1)
    ap.add_argument("--band", type=int, default=1)
    ap.add_argument("--verify", type=int, default=20)
    ap.add_argument("--steps", type=int, default=0, help="GPT2_MAX_STEPS (0: the defconfig's)")
    ap.add_argument("--lines", default="t0,t1,t2", help="transect lines ('': no part 2)")
    ap.add_argument("--transects", default=str(TRANSECTS), help="their committed CSV")
    ap.add_argument("--chunk", type=int, default=0,
                    help="models per step (0: a batch's points in one step; a BPE model's "
                    "batch needs chunks to fit, e.g. 96 on an H100)")  # fmt: skip
    ap.add_argument("--line-points", type=int, default=0, help="0: the whole deepest depth")
    ap.add_argument("--budget", type=float, default=0, help="seconds; 0: no limit")
    ap.add_argument("--device", default="")
    ap.add_argument("--out-dir", help="where the results and frames go (a GPU run)")
    ap.add_argument("--analyse", help="a folder of saved frames: islands() only, no training")
    ap.add_argument("--prefix", default="llmmap_framecheck", help="file names of the frames")
    ap.add_argument("--out", help="with --analyse: the result file")
    args = ap.parse_args()
    if args.analyse:
        return analyse(
            args.analyse, args.out, args.prefix, args.levels, args.guard, args.verify, args.band
        )

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    runner = Runner(args.defconfig, device, steps=args.steps, chunk=args.chunk)
    n, centre = args.points, tuple(float(v) for v in args.centre.split(","))
    xs, ys = frame_points(centre, args.width, n)
    grid = [(x, y) for y in ys for x in xs]
    lines = [name for name in args.lines.split(",") if name]
    depth = deepest_depth(args.transects, lines, args.line_points) if lines else {}
    report = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "defconfig": args.defconfig,
        "steps": runner.grid0.params["max_steps"],
        "precision": runner.grid0.params["precision"],
        "frame": {"centre": list(centre), "width_decades": args.width, "points": n,
                  "step_decades": args.width / (n - 1)},  # fmt: skip
        "batches": runner.batches,
        "models_per_step": args.chunk or "a batch's points",
    }
    report["time_left"] = lambda: not args.budget or time.perf_counter() - t_start < args.budget
    result_path = out_dir / "llmmap_framecheck.json"

    def save():
        report["wall_s"] = time.perf_counter() - t_start
        report["train_s"] = runner.seconds
        data = {k: v for k, v in report.items() if not callable(v)}
        write_bench_result(result_path, data)

    # 1. the frame in full, one batch with the transect points (another composition for
    # them than part 2's)
    extra = [(float(r["matrix_lr"]), float(r["unembedding_lr"])) for v in depth.values() for r in v]
    rows = runner.train(grid + extra, "full frame + transect points")
    full_rows = {(k % n, k // n): rows[k] for k in range(n * n)}
    full = arrays(xs, ys, {p: _label(r) for p, r in full_rows.items()}, full_rows)
    np.savez_compressed(out_dir / "llmmap_framecheck_full.npz", **full)
    report["full_frame"] = frame_dimension(full)
    report["full_frame"]["diverged"] = sum(r["status"] == "diverged" for r in full_rows.values())
    save()

    # the refinement, for real: each level's points to compute as one batch
    ref_rows = {}

    def label_of(i, j):
        return _label(ref_rows[(i, j)])

    level_cells = []
    while True:
        walked = refine.derive(args.levels, args.guard, args.verify, n, n, label_of, seed=1,
                               band=args.band)  # fmt: skip
        if not walked["pending"]:
            break
        if not report["time_left"]():
            report["refined_note"] = "stopped: out of time"
            break
        pend = walked["pending"]
        got = runner.train([(xs[i], ys[j]) for i, j in pend], f"refined level {walked['level']}")
        ref_rows.update(zip(pend, got))
        level_cells.append(len(pend))
    if not walked["pending"]:
        refined = arrays(xs, ys, walked["labels"], ref_rows)
        np.savez_compressed(out_dir / "llmmap_framecheck_refined.npz", **refined)
        res = check(full, walked, args.levels, args.band, n, fine=refined)
        res["cells_per_level"] = level_cells
        res["settings"] = dict(points=n, levels=args.levels, guard=args.guard, band=args.band,
                               verify=args.verify)  # fmt: skip
        report["refined_run"] = res
        save()

    # 2. training or arithmetic
    if depth:
        arithmetic(runner, depth, report, save, {"in_frame_batch": rows[n * n :]})

    # the refinement replayed on the full frame's labels: other settings, and the 33 x 33
    # frame of every second point (the committed zoom's frame geometry), no training
    report["replayed"] = [
        replay(full, args.levels, args.guard, band, args.verify) for band in (0, args.band, 2)
    ]
    if (n - 1) % 4 == 0 and args.levels > 1:
        report["replayed"] += [
            replay(full, args.levels - 1, args.guard, band, args.verify, every=2)
            for band in (0, args.band)
        ]
    save()
    print(json.dumps({k: v for k, v in report.items() if not callable(v)}, indent=1)[:6000])


if __name__ == "__main__":
    main()
