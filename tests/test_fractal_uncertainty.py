"""The uncertainty exponent on boundaries whose dimension is known (a straight line,
graphs of Weierstrass functions, a line made noisy below a known scale) and the engine's
labeller against the engine."""

import numpy as np

from fractal import uncertainty as U


def test_known_boundaries_read_their_dimension_and_the_noise_its_floor():
    checks = U.known_checks()
    for name in ("line", "weierstrass a=0.5 b=3", "weierstrass a=0.7 b=2"):
        c = checks[name]
        assert abs(c["dimension"] - c["expected"]) < 0.1, (name, c)
        assert c["fitted"] >= 3 and c["floor_eps"] is None, (name, c)
    for name in ("weierstrass a=0.5 b=3", "weierstrass a=0.7 b=2"):  # 1.369 and 1.485
        assert abs(checks[name]["dimension"] - checks[name]["expected"]) < 0.05
    noisy = checks["line, noisy within 1e-7"]
    assert abs(noisy["dimension"] - 1.0) < 0.1  # above the noise: the line
    assert noisy["floor_eps"] is not None and noisy["floor_eps"] < 1e-7
    assert noisy["flips"][-1] > 0  # a move of a few ulps still flips labels


def test_noise_at_every_scale_gives_no_dimension():
    gx, gy = U.sample_grid((0.5, 0.0), 1e-3, 200)
    rows = U.flip_fractions(U.noisy_line_boundary(1e-3), gx, gy, U.EPS_PIXELS)
    fit = U.fit(rows)
    assert fit["floor_eps"] is not None and fit["alpha"] is None


def test_moves_below_the_coordinates_rounding_are_left_out():
    gx = np.array([1e3, 1e3 + 1.0])
    rows = U.flip_fractions(U.line_boundary, gx, np.zeros(2), [1.0, 1e-20])
    assert [r["eps"] for r in rows] == [1.0]  # 1e-20 cannot move 1e3
    assert U.smallest_move(gx) == U.MIN_ULPS * np.spacing(1e3 + 1.0)


def test_the_engine_labeller_is_the_engine_converged_map():
    from fractal import notebook
    from fractal.common import EXPERIMENTS
    from fractal.engine import compute_image

    gx, gy = np.linspace(-1, 1, 5), np.linspace(0, 5, 4)
    label = U.engine_labeller("tanh", steps=20, data="notebook")
    ref = compute_image(**EXPERIMENTS["tanh"], grid=(gx, gy), steps=20, device="cpu",
                        data=notebook.problem_arrays(272, "full"))  # fmt: skip
    got = label(gx, gy)
    assert got.shape == (4, 5) and got.dtype == bool
    assert np.array_equal(got, np.asarray(ref["converged"], dtype=bool))
    assert got.any() and not got.all()
