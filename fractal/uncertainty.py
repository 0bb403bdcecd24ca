"""The uncertainty exponent: a boundary's dimension measured below the pixel.

Move every sample point by eps and count the share f(eps) whose label changes. For a
boundary of box-counting dimension D in the plane, f(eps) ~ eps^alpha with alpha = 2 - D
(Grebogi, McDonald, Ott and Yorke, "Final state sensitivity", 1983): a smooth curve gives
alpha = 1, a boundary that fills the plane alpha = 0. No image is box-counted, so eps can
go far below a frame's pixel, down to where the arithmetic, not the hyperparameters, sets
the label. There f(eps) stops falling: rounding noise flips a fixed share of the points
however small the move. `fit` reports that floor instead of folding it into alpha.

`flip_fractions` takes any labeller of product grids (gx, gy) -> bool [ny, nx]: the
engine's (`engine_labeller`), or a synthetic boundary of known dimension (the tests).
"""

import math

import numpy as np

# moves, in pixels of the frame, from one pixel down to 2^-30 of one
EPS_PIXELS = tuple(2.0**-k for k in (0, 2, 4, 6, 8, 11, 14, 18, 22, 26, 30))
# a move must be this many ulps of the coordinate, or it moves nothing but the rounding
MIN_ULPS = 64
# flips a share needs before it enters the fit (fewer: Poisson noise decides the slope)
MIN_FLIPS = 20
# flips this many times what the fitted line predicts, below the fitted moves: a floor
FLOOR_FACTOR = 4.0
# a slope below this is no dimension: noise, or a boundary too near 2 to tell from it
ALPHA_MIN = 0.05


def sample_grid(centre, width, m, seed=0):
    """m random log10 coordinates per axis in the square `width` wide around `centre`:
    a product grid of m x m points off the pixel lattice (a frame's grid would align
    the points with the structure the frame resolved)."""
    rng = np.random.default_rng(seed)
    gx = centre[0] + (rng.random(m) - 0.5) * width
    gy = centre[1] + (rng.random(m) - 0.5) * width
    return np.sort(gx), np.sort(gy)


def smallest_move(gx):
    """The smallest move along x that changes more than the rounding of the coordinate:
    MIN_ULPS ulps of the largest |x|."""
    return MIN_ULPS * float(np.spacing(np.max(np.abs(gx))))


def flip_fractions(label, gx, gy, eps_list):
    """label(gx, gy) -> bool [len(gy), len(gx)]. Returns [{"eps", "flips", "points",
    "fraction"}] for each move eps along x that is at least smallest_move(gx); the
    points are the product grid (gx, gy), labelled once as they are and once per move."""
    base = np.asarray(label(gx, gy), dtype=bool)
    floor = smallest_move(gx)
    out = []
    for eps in sorted(eps_list, reverse=True):
        if eps < floor:
            continue
        moved = np.asarray(label(gx + eps, gy), dtype=bool)
        flips = int((moved != base).sum())
        out.append(
            {"eps": float(eps), "flips": flips, "points": base.size, "fraction": flips / base.size}
        )
    return out


def fit(rows, min_flips=MIN_FLIPS):
    """alpha, dimension = 2 - alpha, and the floor, from flip_fractions' rows.

    alpha is the least-squares slope of log f against log eps over the largest moves
    that flip at least min_flips points each. Below them, a floor is two moves or more
    that each flip at least 3 points and FLOOR_FACTOR (4) times what the fitted line
    predicts there: the shares stopped falling. A fitted alpha below ALPHA_MIN is a floor
    from the largest move on (noise, or a boundary of dimension near 2: the two cannot be
    told apart), and no dimension. Returns {"alpha", "dimension", "fitted", "floor_eps",
    "floor_fraction", "local_alpha"}: floor_eps the largest move of the floor (None: the
    shares kept falling as far as the points can tell), alpha None with fewer than 3
    fitted moves, local_alpha the slope between each two neighbouring moves with flips
    (a floor inside the fitted moves shows there as slopes near 0 at the small end)."""
    rows = sorted(rows, key=lambda r: -r["eps"])
    n = next((k for k, r in enumerate(rows) if r["flips"] < min_flips), len(rows))
    fitted, rest = rows[:n], rows[n:]
    local = [
        math.log(q["flips"] / r["flips"]) / math.log(q["eps"] / r["eps"])
        for q, r in zip(rows, rows[1:])
        if q["flips"] and r["flips"]
    ]
    out = {"alpha": None, "dimension": None, "fitted": len(fitted), "floor_eps": None,
           "floor_fraction": None, "local_alpha": local}  # fmt: skip
    floor = []
    if len(fitted) >= 3:
        x = np.log([r["eps"] for r in fitted])
        y = np.log([r["fraction"] for r in fitted])
        alpha, c = (float(v) for v in np.polyfit(x, y, 1))
        if alpha < ALPHA_MIN:
            floor = fitted
        else:
            out.update(alpha=alpha, dimension=2.0 - alpha)
            expect = [r["points"] * math.exp(c + alpha * math.log(r["eps"])) for r in rest]
            over = [r for r, e in zip(rest, expect) if r["flips"] >= max(3, FLOOR_FACTOR * e)]
            floor = over if len(over) >= 2 else []
    if floor:
        out.update(floor_eps=floor[0]["eps"], floor_fraction=floor[0]["fraction"])
    return out


def engine_image(experiment, steps, optimizer="gd", data="seeded", device="cpu", key="values",
                 **kwargs):  # fmt: skip
    """image(gx, gy): the engine's `key` array ("values", or "converged") on the grid
    (gx, gy) of the named experiment (fractal.engine.compute_image), on the seeded data
    or the notebook's, as FRACTAL_DATA_* chooses for a frame cell."""
    from fractal.common import EXPERIMENTS
    from fractal.engine import compute_image
    from fractal.paper_cells import problem_data

    spec = EXPERIMENTS[experiment]
    arrays = problem_data({"data": data, **spec})

    def image(gx, gy):
        res = compute_image(**spec, grid=(np.asarray(gx), np.asarray(gy)), steps=steps,
                            optimizer=optimizer, data=arrays, device=device, **kwargs)  # fmt: skip
        return np.asarray(res[key])

    return image


def engine_labeller(experiment, steps, optimizer="gd", data="seeded", device="cpu", **kwargs):
    """label(gx, gy) for the engine: True where the pixel's network converged."""
    image = engine_image(experiment, steps, optimizer, data, device, "converged", **kwargs)
    return lambda gx, gy: np.asarray(image(gx, gy), dtype=bool)


# ----------------------------------------------------------------------------------------
# boundaries of known dimension, to check the instrument on (tests, bench)


def line_boundary(gx, gy):
    """A straight line, x = 0.5 + 0.3 y: dimension 1."""
    return gx[None, :] > 0.5 + 0.3 * gy[:, None]


def weierstrass_boundary(a, b, terms):
    """The graph y = W(x), W = sum_n<terms a^n cos(2 pi b^n x): box dimension
    2 + ln a / ln b (0 < a < 1 < b, a b > 1) down to about b^-terms."""
    k = np.arange(terms)[:, None]

    def label(gx, gy):
        w = (a**k * np.cos(2 * np.pi * b**k * gx[None, :])).sum(0)
        return gy[:, None] > w[None, :]

    return label


def noisy_line_boundary(amplitude):
    """line_boundary with every label redrawn within `amplitude` of the line by a draw
    from the point's bits: any move, even of an ulp, draws again, as rounding amplified
    by training does. Dimension 1 above the amplitude, a floor below it."""

    def label(gx, gy):
        with np.errstate(over="ignore"):
            h = gx.view(np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
            h = h ^ (gy.view(np.uint64)[:, None] * np.uint64(0xC2B2AE3D27D4EB4F))
            h ^= h >> np.uint64(31)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
        draw = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
        return gx[None, :] > 0.5 + 0.3 * gy[:, None] + amplitude * (draw - 0.5)

    return label


def known_checks(m=400):
    """The instrument on the boundaries above, as the tests and bench/uncertainty_frames.py
    run it: {name: {"expected", "dimension", "alpha", "fitted", "floor_eps", "flips"}}."""
    ys = np.sort(np.random.default_rng(1).uniform(-2.5, 2.5, m))
    cases = [
        ("line", line_boundary, (0.5, 0.0), 1e-3, None, 1.0),
        ("weierstrass a=0.5 b=3", weierstrass_boundary(0.5, 3, 26), (0.5, 0.0), 1.0, ys,
         2 + math.log(0.5) / math.log(3)),
        ("weierstrass a=0.7 b=2", weierstrass_boundary(0.7, 2, 40), (0.5, 0.0), 1.0, ys,
         2 + math.log(0.7) / math.log(2)),
        ("line, noisy within 1e-7", noisy_line_boundary(1e-7), (0.5, 0.0), 1e-3, None, 1.0),
    ]  # fmt: skip
    out = {}
    for name, label, centre, width, gy_override, expected in cases:
        gx, gy = sample_grid(centre, width, m)
        gy = gy if gy_override is None else gy_override
        rows = flip_fractions(label, gx, gy, [e * width / 256 for e in EPS_PIXELS])
        out[name] = {"expected": expected, **fit(rows), "flips": [r["flips"] for r in rows],
                     "eps": [r["eps"] for r in rows], "points": m * m}  # fmt: skip
    return out
