"""The paper's experiments as cells: images, zoom centres and zoom frames.

With FRACTAL_ZOOM_FRAMES = 1 a cell is one experiment's image of the opening window.
With more, the paper's protocol runs in two stages of cells:

- stage 0 (plan): one "centre" cell per experiment and zoom path (paper, auto, given),
  which finds the centre of the path's frames: the given centre, followed down the
  boundary by a cheap low-resolution descent where frames are deeper than it is known
  (fractal.zoom.descend: the paper's and given paths to the nearest boundary point, the
  automatic path to the most complex boundary the arithmetic did not make), recorded in
  its result;
- the next stage (next_stage, once the centres are known): one "frame" cell per frame,
  deepest first and interleaved across paths, so that a frame usually finds the next deeper
  frame's result on disk and copies the quarter of its pixels the two share. Frames are
  independent cells, so they spread over every GPU.

The summary pools each path's box-counting slopes into the dimension, with a bootstrap
spread over frames, the estimate over stretches of depth, slopes against depth, sheets of
the frames, and the frames that correspond to the paper's panels.
"""

import math
from pathlib import Path

from fractal import notebook, zoom
from fractal.common import DECAY_KNOBS, EXPERIMENTS, OPTIMIZERS, TAIL
from kmatrix.cell import cell_id
from kmatrix.errors import ConfigError


def zooming(cfg):
    return cfg.get("fractal_zoom_frames", 1) > 1


def experiment_steps(cfg, name):
    if cfg.get("fractal_steps_per_experiment"):
        return cfg.get(f"fractal_steps_{name}")
    return cfg.fractal_steps


def _steps_symbol(cfg, name):
    if cfg.get("fractal_steps_per_experiment"):
        return f"FRACTAL_STEPS_{name.upper()}"
    return "FRACTAL_STEPS"


def _opening(cfg):
    return [cfg.fractal_x_min, cfg.fractal_x_max, cfg.fractal_y_min, cfg.fractal_y_max]


def data_path(cfg, name):
    """The .npz file of FRACTAL_DATA_FILE for an experiment, or None."""
    if cfg.get("fractal_data") != "file":
        return None
    return cfg.get("fractal_data_file_path", "").replace("{experiment}", name)


# ----------------------------------------------------------------------------------------
# planning


def axes(cfg):
    out = [("experiment", list(cfg.fractal_experiments))]
    if zooming(cfg):
        out.append(("path", list(cfg.get("fractal_paths") or [])))
    seeds = list(cfg.get("seeds") or [0])
    if len(seeds) > 1:
        out.append(("seed", seeds))
    return out


def validate(cfg):
    experiments = list(cfg.get("fractal_experiments") or [])
    if not experiments:
        raise ConfigError("FRACTAL_EXPERIMENT_TANH", "no experiment selected", "select one or more")
    for name in experiments:
        if name not in EXPERIMENTS:
            raise ConfigError(f"FRACTAL_EXPERIMENT_{name.upper()}", "unknown experiment")
    for lo, hi in (("fractal_x_min", "fractal_x_max"), ("fractal_y_min", "fractal_y_max")):
        a, b = cfg.get(lo), cfg.get(hi)
        if a is None or b is None:
            raise ConfigError((lo if a is None else hi).upper(), "empty", "give a log10 value")
        if not a < b:
            raise ConfigError(
                lo.upper(), f"min {a} >= max {b}", f"make it smaller than {hi.upper()}"
            )
    for name in experiments:
        steps = experiment_steps(cfg, name)
        if steps is None or cfg.get("fractal_tail", TAIL) > steps:
            raise ConfigError(
                _steps_symbol(cfg, name), f"{steps} steps < FRACTAL_TAIL", "train longer"
            )
    n = cfg.fractal_resolution
    if cfg.get("fractal_dimension", "paper") == "paper" and n < 32:
        raise ConfigError(
            "FRACTAL_DIMENSION_PAPER",
            f"{n} pixels per side leave porespy's boxes (10 px to the side) no scales",
            "choose FRACTAL_DIMENSION_POW2, or FRACTAL_RESOLUTION >= 32",
        )
    _validate_data(cfg, experiments)
    _validate_optimizer(cfg, experiments)
    if zooming(cfg):
        _validate_zoom(cfg)


def _validate_data(cfg, experiments):
    source = cfg.get("fractal_data", "seeded")
    if source == "notebook" and "minibatch" in experiments:
        steps = experiment_steps(cfg, "minibatch")
        if steps != notebook.MINIBATCH_STEPS:
            raise ConfigError(
                _steps_symbol(cfg, "minibatch"),
                f"{steps} steps, but the notebook's minibatch table is for "
                f"{notebook.MINIBATCH_STEPS} (it depends on the step count)",
                f"set {notebook.MINIBATCH_STEPS}, or use FRACTAL_DATA_SEEDED",
            )
        if cfg.get("fractal_minibatch_size", 16) != notebook.MINIBATCH_SIZE:
            raise ConfigError(
                "FRACTAL_MINIBATCH_SIZE",
                "the notebook's minibatch table has 16 indices per step",
                "set 16, or use FRACTAL_DATA_SEEDED",
            )
    if source == "file":
        for name in experiments:
            path = Path(data_path(cfg, name))
            if not path.is_file():
                raise ConfigError(
                    "FRACTAL_DATA_FILE_PATH",
                    f"{path} (experiment {name}) not found",
                    "give an .npz with X, Y, W0, W1 (and idx); see docs/fractal.md",
                )


# the Kconfig symbol of each optimizer knob (common.OPTIMIZERS)
_KNOB_SYMBOLS = {
    "momentum": "fractal_momentum",
    "beta1": "fractal_beta1",
    "beta2": "fractal_beta2",
    "alpha": "fractal_rmsprop_alpha",
    "eps": "fractal_eps",
    "weight_decay": "fractal_weight_decay",
}


def optimizer_params(cfg):
    """The cells' optimizer, its knobs and, with FRACTAL_KNOB_AXIS, the axes; nothing for
    plain gradient descent on the two lrs, so those cells stay as they were."""
    opt = cfg.get("fractal_optimizer") or "gd"
    knob = cfg.get("fractal_knob_axis") or ""
    if opt == "gd" and not knob:
        return {}
    knobs = {k: cfg.get(sym) for k, sym in _KNOB_SYMBOLS.items() if k in OPTIMIZERS[opt]}
    out = {"optimizer": opt, "optim": {k: v for k, v in knobs.items() if v is not None}}
    return {**out, "axes": f"{knob}_vs_lr"} if knob else out


def _validate_optimizer(cfg, experiments):
    opt = cfg.get("fractal_optimizer") or "gd"
    if opt == "muon" and cfg.get("fractal_backend") == "triton":
        raise ConfigError("FRACTAL_BACKEND_TRITON", "the Triton kernel has no Muon", "use auto")
    knob = cfg.get("fractal_knob_axis") or ""
    if not knob:
        return
    if knob not in OPTIMIZERS[opt]:
        raise ConfigError(
            "FRACTAL_KNOB_AXIS", f"{opt} has no knob {knob!r}", f"one of {list(OPTIMIZERS[opt])}"
        )
    bad = [n for n in experiments if EXPERIMENTS[n]["axes"] != "lr_vs_lr"]
    if bad:
        raise ConfigError("FRACTAL_KNOB_AXIS", f"{bad} have no lr x lr axes", "deselect them")
    if knob in DECAY_KNOBS and cfg.fractal_x_max > 0:
        raise ConfigError(
            "FRACTAL_X_MAX", f"x is log10(1 - {knob}), which must be <= 0", "set it <= 0"
        )


def _validate_zoom(cfg):
    paths = list(cfg.get("fractal_paths") or [])
    if not paths:
        raise ConfigError("FRACTAL_PATH_PAPER", "no zoom path selected", "select paper or auto")
    outer = cfg.get("fractal_zoom_outer_width")
    if outer is None or not outer > 0:
        raise ConfigError("FRACTAL_ZOOM_OUTER_WIDTH", f"{outer} is not > 0", "the paper: 6")
    point = [cfg.get(f"fractal_zoom_point_{k}") for k in ("x", "y", "width")]
    if "given" in paths:
        for k, v in zip(("X", "Y", "WIDTH"), point):
            if v is None:
                raise ConfigError(f"FRACTAL_ZOOM_POINT_{k}", "empty", "FRACTAL_PATH_GIVEN needs it")
        if not point[2] > 0:
            raise ConfigError("FRACTAL_ZOOM_POINT_WIDTH", f"{point[2]} is not > 0", "decades")


def _start(cfg, name, path):
    """(centre, width, prefer): where a path's descent starts, and how it moves. The
    paper's path starts at its panel's centre at the panel's width (the descent begins
    where the centre is no longer known to a frame's pixel: cell_params)."""
    if path == "paper":
        x, y, width, _ = zoom.PAPER_PANELS[name]
        return [x, y], width, "near"
    if path == "given":
        return (
            [cfg.fractal_zoom_point_x, cfg.fractal_zoom_point_y],
            cfg.fractal_zoom_point_width,
            "near",
        )
    x0, x1, y0, y1 = _opening(cfg)
    return [(x0 + x1) / 2, (y0 + y1) / 2], max(x1 - x0, y1 - y0), "structure"


def cell_params(cfg, point):
    name = point["experiment"]
    p = {
        "engine": "mlp",
        "kind": "image",
        "experiment": name,
        **EXPERIMENTS[name],  # nonlinearity, axes, batch, n_points
        "window": _opening(cfg),
        "resolution": cfg.fractal_resolution,
        "steps": experiment_steps(cfg, name),
        "dtype": cfg.get("fractal_dtype", "float64"),
        "backend": cfg.get("fractal_backend", "auto"),
        "minibatch_size": cfg.get("fractal_minibatch_size", 16),
        "tail": cfg.get("fractal_tail", TAIL),
        "seed": point.get("seed", (cfg.get("seeds") or [0])[0]),
        "data": cfg.get("fractal_data", "seeded"),
        "data_path": data_path(cfg, name),
        "dimension": cfg.get("fractal_dimension", "paper"),
        "early_exit": cfg.get("fractal_exit", "nonfinite"),
        "exit_verify": bool(cfg.get("fractal_exit_verify")),
        "reuse": bool(cfg.get("fractal_reuse_pixels", True)),
        **optimizer_params(cfg),
    }
    if not zooming(cfg):
        return p
    path = point["path"]
    centre, width, prefer = _start(cfg, name, path)
    width0, anchor_frame = zoom.ladder(width, cfg.fractal_zoom_outer_width)
    frames = cfg.fractal_zoom_frames
    descent_width = width
    if path == "paper":  # on the printed centre while it is known to a frame's pixel
        descent_width = zoom.known_width(width0, width, cfg.fractal_resolution)
    p.update(
        kind="centre",
        path=path,
        frames=frames,
        start_centre=[float(c) for c in centre],
        start_width=float(descent_width),
        prefer=prefer,
        width0=width0,
        anchor_frame=anchor_frame,  # the frame index of the start width (a panel's)
        deepest_width=math.ldexp(width0, -(frames - 1)),
        descent_resolution=cfg.get("fractal_descent_resolution", 65),
    )
    if cfg.get("fractal_noise_fall"):  # only when on: earlier results keep their cells
        p["noise_fall"] = True
    if prefer == "structure" and cfg.get("fractal_descent_lookahead"):  # the same
        p["lookahead"] = int(cfg.fractal_descent_lookahead)
    return p


def next_stage(cfg, cells, results):
    """Once every centre is known: every frame of every path whose centre cell finished,
    deepest first and interleaved across paths, as {"point", "params", "run_seed"}. After
    the frames (or without zoom): none."""
    if not zooming(cfg) or any(c.params.get("kind") == "frame" for c in cells):
        return []
    centres = [c for c in cells if c.params.get("kind") == "centre"]
    out = []
    for k in reversed(range(cfg.fractal_zoom_frames)):
        for c in centres:
            r = results.get(c.id)
            if not r or r.get("status") != "ok" or "centre" not in r:
                continue
            deeper = {**c.point, "frame": k + 1}
            params = {
                **c.params,
                "kind": "frame",
                "frame": k,
                "centre": r["centre"],
                "centre_cell": c.id,
                "reuse_from": cell_id(deeper, list(deeper)) if k + 1 < c.params["frames"] else None,
            }
            out.append({"point": {**c.point, "frame": k}, "params": params, "run_seed": c.run_seed})
    return out
