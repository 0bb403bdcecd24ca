"""Vectorised training engine for "The boundary of neural network trainability is fractal".

Every pixel of an image is one small network trained with its own hyperparameters (two
learning rates, or a weight offset and a learning rate). All pixels share the data X, Y
and the initial weights, so a step over P pixels is two wide matrix products,
X @ [W0_1 ... W0_P] and X^T @ [dZ_1 ... dZ_P], plus per-pixel elementwise work.

The network follows the reference notebook exactly (mean-field parameterisation):
    z = x W0 / sqrt(16),  h = phi(z),  y_hat = h W1 / 16
    phi = tanh(sqrt(2) z) | sqrt(2) relu(z) | z,   loss = mean((y_hat - y)^2)
trained by plain gradient descent with one learning rate per layer (or another optimizer
per pixel: `Optimizer`, common.OPTIMIZERS). Gradients are written out by hand (two
layers), and a pixel keeps only running sums of its normalised loss, never its
trajectory, so images up to 4096 x 4096 fit.

Two backends: this file's PyTorch one (CPU and CUDA) and a fused Triton kernel
(fractal/triton_engine.py, CUDA) that keeps a block of pixels' weights in registers across
all steps. compute_image(backend="auto") picks Triton when it can.

Work that cannot change the image is skipped: a pixel stops training once an output-layer
weight is inf or NaN (from then on every loss is non-finite, so each later step adds the
same constant to its value: early_exit="nonfinite", the default), and pixels already
computed (a zoom frame's inner quarter, shared with the next deeper frame) are passed in
as `known` and not trained again. The exit is exact for every optimizer: each update is
w <- a w - u with a finite factor a, so a non-finite output weight stays non-finite.
"""

import os
import time

import numpy as np
import torch

from fractal.common import DECAY_KNOBS, EXIT_CODE, MAX_VAL, MUON_NS, MUON_NS_STEPS, OPT_CODE
from fractal.common import PHI_SCALE, TAIL, WIDTH
from kmatrix.progress import report as report_progress

from fractal.problem import (
    BATCHES,
    NONLINEARITIES,
    OFFSET_MODES,
    axis_values,
    check_optimizer,
    knob_axis,
    finalise,
    make_problem,
    pixel_hparams,
    pixel_knobs,
    sanitise_,
)

# ----------------------------------------------------------------------------------------
# the PyTorch backend


class TorchTrainer:
    """Trains P pixels at once. Buffers are allocated once and reused every step."""

    def __init__(self, problem, nonlinearity, P, offset_mode="every_step"):
        X, self.Y, self.idx = problem["X"], problem["Y"], problem["idx"]
        self.X, self.nl, self.P, self.offset_mode = X, nonlinearity, P, offset_mode
        n, dt, dev = X.shape[0], X.dtype, X.device
        n_grad = n if self.idx is None else self.idx.shape[1]
        # A holds x @ W0 then h in place; D holds dZ; both [n, P*16] so each product is one mm
        self.A = torch.empty(n, P * WIDTH, dtype=dt, device=dev)
        self.D = torch.empty(n_grad, P * WIDTH, dtype=dt, device=dev)
        self.Ag = self.A if self.idx is None else torch.empty_like(self.D)
        self.G0 = torch.empty(WIDTH, P * WIDTH, dtype=dt, device=dev)
        # the gradient's constant factors: d mean(r^2)/d y_hat = 2 r / n, y_hat = h W1 / 16
        c = 2.0 / (n_grad * WIDTH)
        self.c0, self.c1 = c * PHI_SCALE[nonlinearity], c

    @staticmethod
    def bytes_per_pixel(n_points, n_grad, itemsize):
        # A, D (and Ag when minibatch), G0, W0, einsum temporaries of size A (x2 margin)
        return itemsize * (WIDTH * (3 * n_points + 2 * n_grad) + 3 * WIDTH * WIDTH + 8 * n_points)

    def forward(self, X, Y, W0, W1, A):
        """A := h (in place); returns the residual r = y_hat - y, [n, P]."""
        torch.mm(X, W0.view(WIDTH, -1), out=A)
        A.mul_(PHI_SCALE[self.nl])
        if self.nl == "tanh":
            A.tanh_()
        elif self.nl == "relu":
            A.relu_()
        A3 = A.view(A.shape[0], self.P, WIDTH)
        r = torch.einsum("npj,pj->np", A3, W1).div_(WIDTH)
        return r.sub_(Y[:, None])

    def backward(self, X, W1, A, r):
        """Returns (dW0 [16, P*16], dW1 [P, 16]) without constant factors."""
        A3 = A.view(A.shape[0], self.P, WIDTH)
        D3 = self.D.view(A.shape[0], self.P, WIDTH)
        g1 = torch.einsum("npj,np->pj", A3, r)
        torch.mul(r[:, :, None], W1[None], out=D3)
        if self.nl == "tanh":
            D3.mul_(1.0 - A3 * A3)  # tanh' = 1 - h^2
        elif self.nl == "relu":
            D3.mul_(A3 > 0)
        torch.mm(X.T, self.D, out=self.G0)
        return self.G0, g1

    def step(self, W0, W1, off, lr0c, lr1c, step, last, opt=None):
        """One step for the P pixels: returns their loss (before the update); updates W0,
        W1 in place unless `last` (the last update would never be read out): by gradient
        descent, or by `opt` (an Optimizer) when given."""
        if self.offset_mode == "every_step":
            W0.add_(off)
        r = self.forward(self.X, self.Y, W0, W1, self.A)
        loss = r.square().mean(0)
        if last:
            return loss
        if self.idx is not None:  # minibatch: the gradient from 16 shared indices
            Xb, Yb = self.X[self.idx[step]], self.Y[self.idx[step]]
            r = self.forward(Xb, Yb, W0, W1, self.Ag)
            X, A = Xb, self.Ag
        else:
            X, A = self.X, self.A
        g0, g1 = self.backward(X, W1, A, r)
        if opt is not None:
            opt.update(W0, W1, g0.view(WIDTH, self.P, WIDTH), g1)
            return loss
        W0.addcmul_(g0.view(WIDTH, self.P, WIDTH), lr0c, value=-1.0)
        W1.addcmul_(g1, lr1c, value=-1.0)
        return loss


def newton_schulz(G, steps=MUON_NS_STEPS):
    """gpt2/optimizers.py's zeropower_via_newtonschulz5 for a batch of square matrices
    [P, 16, 16], in their own dtype (float64 here; the project's Muon runs fp32 or bf16)."""
    a, b, c = MUON_NS
    X = G / (torch.linalg.matrix_norm(G, keepdim=True) + 1e-7)  # spectral norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b * A + c * A @ A
        X = torch.baddbmm(X, B, X, beta=a)  # a * X + B @ X
    return X


class Optimizer:
    """A per-pixel optimizer (common.OPTIMIZERS) for P pixels, as torch.optim applies it
    to one network: its state lives beside the weights, W0's [16, P, 16] and W1's [P, 16].
    Knobs are floats, or [P] tensors (an image axis). The gradients arrive without the
    loss's constant factors (c0, c1), which adaptive steps need, so they are applied here."""

    def __init__(self, name, knobs, lr0, lr1, c0, c1, P, dt, dev):
        self.name, self.c0, self.c1, self.t = name, c0, c1, 0
        self.knobs = dict(knobs)
        self.lr0, self.lr1 = lr0, lr1  # [P]
        # two state tensors per layer (Adam's m and v; one unused by the others)
        self.s0 = [torch.zeros(WIDTH, P, WIDTH, dtype=dt, device=dev) for _ in range(2)]
        self.s1 = [torch.zeros(P, WIDTH, dtype=dt, device=dev) for _ in range(2)]

    @staticmethod
    def bytes_per_pixel(itemsize):
        return itemsize * 10 * WIDTH * (WIDTH + 1)  # state and temporaries, both layers

    def keep(self, mask):
        """Drops the pixels not in `mask` (the engine's compaction of stopped pixels)."""
        self.lr0, self.lr1 = self.lr0[mask], self.lr1[mask]
        self.knobs = {k: v[mask] if torch.is_tensor(v) else v for k, v in self.knobs.items()}
        self.s0 = [s[:, mask].contiguous() for s in self.s0]
        self.s1 = [s[mask].contiguous() for s in self.s1]

    def _k(self, name, layer):
        v = self.knobs[name]
        if torch.is_tensor(v):
            return v.view(1, -1, 1) if layer == 0 else v.view(-1, 1)
        return v

    def update(self, W0, W1, g0, g1):
        self.t += 1
        lr0, lr1 = self.lr0.view(1, -1, 1), self.lr1.view(-1, 1)
        G0, G1 = g0 * self.c0, g1 * self.c1  # the true gradients
        if self.name == "muon":
            self._muon(W0, G0, lr0, self.s0[0])
            self._adam(W1, G1, lr1, *self.s1, 1, decoupled=False)
            return
        step = {"momentum": self._sgd, "nesterov": self._sgd, "rmsprop": self._rmsprop}
        step = step.get(self.name, self._adam)
        step(W0, G0, lr0, *self.s0, 0, decoupled=self.name == "adamw")
        step(W1, G1, lr1, *self.s1, 1, decoupled=self.name == "adamw")

    def _sgd(self, W, G, lr, buf, _, layer, decoupled):
        # torch.optim.SGD (dampening 0): buf = mu buf + g (the first step: buf = g, the same
        # as mu * 0 + g), heavy ball W -= lr buf, Nesterov W -= lr (g + mu buf)
        mu = self._k("momentum", layer)
        buf.mul_(mu).add_(G)
        W.sub_(lr * (G + mu * buf if self.name == "nesterov" else buf))

    def _adam(self, W, G, lr, m, v, layer, decoupled):
        # torch.optim.Adam / AdamW, bias correction as there
        b1, b2, eps = (self._k(k, layer) for k in ("beta1", "beta2", "eps"))
        wd = self._k("weight_decay", layer) if "weight_decay" in self.knobs else 0.0
        if decoupled:
            W.mul_(1 - lr * wd)
        elif torch.is_tensor(wd) or wd != 0:
            G = G + wd * W
        m.lerp_(G, 1 - b1)
        v.mul_(b2).add_((1 - b2) * G * G)
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        denom = (v.sqrt() / (bc2**0.5)).add_(eps)
        W.sub_((lr / bc1) * m / denom)

    def _rmsprop(self, W, G, lr, v, _, layer, decoupled):
        alpha, eps, wd = (self._k(k, layer) for k in ("alpha", "eps", "weight_decay"))
        if torch.is_tensor(wd) or wd != 0:
            G = G + wd * W
        v.mul_(alpha).add_((1 - alpha) * G * G)
        W.sub_(lr * G / v.sqrt().add_(eps))

    def _muon(self, W0, G0, lr0, buf):
        # gpt2/optimizers.py's Muon: Nesterov momentum by lerp, then the orthogonalised
        # update of each pixel's 16 x 16 matrix (rows: inputs, columns: hidden units)
        mu = self._k("momentum", 0)
        buf.lerp_(G0, 1 - mu)
        g = G0.lerp(buf, mu)
        U = newton_schulz(g.permute(1, 0, 2)).permute(1, 0, 2)
        W0.sub_(lr0 * U)


def _train_chunk(
    problem, nl, lr0, lr1, offset, steps, offset_mode, record=False, tail=TAIL,
    early_exit="none", optimizer="gd", knobs=None,
):  # fmt: skip
    """Trains the pixels of one chunk: sum(v), sum(1/v), tail sum of v, steps trained (each
    [P]) and the [steps, P] normalised losses when record is True. `knobs`: the
    optimizer's, each a float or a [P] tensor.

    With early_exit, a pixel stops once an output-layer weight is inf or NaN ("threshold":
    also once v > MAX_VAL); each later step adds v = MAX_VAL to its sums, as it would have
    (every later loss is non-finite), so the sums are the full computation's. Stopped pixels
    are dropped from the matrix products once a quarter of those still training has stopped.
    """
    P = lr0.numel()
    W0_init, W1_init = problem["W0"], problem["W1"]
    tr = TorchTrainer(problem, nl, P, offset_mode)
    W0 = W0_init.reshape(WIDTH, 1, WIDTH).repeat(1, P, 1)  # [16, P, 16]
    W1 = W1_init.reshape(1, WIDTH).repeat(P, 1)  # [P, 16]
    off = offset.view(1, P, 1)
    if offset_mode == "init":
        W0.add_(off)
    lr0c = (lr0 * tr.c0).view(1, P, 1)
    lr1c = (lr1 * tr.c1).view(P, 1)
    dt, dev = W0.dtype, W0.device
    opt = None
    if optimizer != "gd":
        opt = Optimizer(optimizer, knobs, lr0, lr1, tr.c0, tr.c1, P, dt, dev)
    sum_v, sum_inv, tail_sum = (torch.zeros(P, dtype=dt, device=dev) for _ in range(3))
    steps_run = torch.full((P,), steps, dtype=torch.int32, device=dev)
    n_tail = min(tail, steps)
    traj = torch.empty(steps, P, dtype=dt, device=dev) if record else None
    active = torch.arange(P, device=dev)  # the pixels still in the products
    stopped = torch.zeros(P, dtype=torch.bool, device=dev)  # of the active ones
    v = torch.empty(P, dtype=dt, device=dev)
    for step in range(steps):
        last = step == steps - 1
        if len(active):
            loss = tr.step(W0, W1, off, lr0c, lr1c, step, last, opt)
            if step == 0:
                L0 = loss
            raw = loss / L0
            if record:
                traj[step, active] = raw
            va = sanitise_(raw.clone()).masked_fill_(stopped, MAX_VAL)
        v.fill_(MAX_VAL)
        if len(active):
            v[active] = va
        sum_v += v
        sum_inv += v.reciprocal()
        if step >= steps - n_tail:
            tail_sum += v
        if last or early_exit == "none" or not len(active):
            continue
        live = torch.isfinite(W1).all(dim=1)
        if early_exit == "threshold":
            live &= raw <= MAX_VAL
        newly = ~live & ~stopped
        if newly.any():
            steps_run[active[newly]] = step + 1
            stopped |= newly
        keep = ~stopped
        if int(keep.sum()) <= 3 * len(active) // 4:  # drop the stopped pixels
            active, W0, W1 = active[keep], W0[:, keep].contiguous(), W1[keep].contiguous()
            off, lr0c, lr1c, L0 = off[:, keep], lr0c[:, keep], lr1c[keep], L0[keep]
            stopped = stopped[keep]
            if opt is not None:
                opt.keep(keep)
            if len(active):
                tr = TorchTrainer(problem, nl, len(active), offset_mode)
    return (sum_v, sum_inv, tail_sum, steps_run), traj


def _torch_chunk_pixels(problem, device, chunk_pixels, optimizer="gd"):
    if chunk_pixels:
        return int(chunk_pixels)
    X, idx = problem["X"], problem["idx"]
    n_grad = X.shape[0] if idx is None else idx.shape[1]
    per_pixel = TorchTrainer.bytes_per_pixel(X.shape[0], n_grad, X.element_size())
    if optimizer != "gd":
        per_pixel += Optimizer.bytes_per_pixel(X.element_size())
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        budget = 0.6 * free
    else:
        budget = 48 * 2**20  # CPU: ~250 pixels per chunk measured 2x faster than ~1400
    return max(1, int(budget // per_pixel))


def _train_torch(
    problem, nonlinearity, lr0, lr1, offset, steps, offset_mode, chunk, record=False, tail=TAIL,
    early_exit="none", optimizer="gd", knobs=None,
):  # fmt: skip
    outs, n = [], lr0.numel()
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        kn = {k: v[sl] if torch.is_tensor(v) else v for k, v in (knobs or {}).items()}
        outs.append(
            _train_chunk(
                problem, nonlinearity, lr0[sl], lr1[sl], offset[sl], steps, offset_mode,
                record, tail, early_exit, optimizer, kn,
            )  # fmt: skip
        )
        report_progress(min(s + chunk, n), n, "pixels")  # the driver's heartbeat shows it
    sums = [torch.cat([o[0][i] for o in outs]) for i in range(4)]
    traj = torch.cat([o[1] for o in outs], dim=1) if record else None
    return sums, traj


# ----------------------------------------------------------------------------------------
# public API


def _check(nonlinearity, axes, batch, dtype, offset_mode, early_exit="none", optimizer="gd",
           optim=None):  # fmt: skip
    """Raises ValueError naming a bad setting; returns the optimizer's knobs."""
    for name, val, allowed in [
        ("nonlinearity", nonlinearity, NONLINEARITIES),
        ("batch", batch, BATCHES),
        ("dtype", dtype, ("float64", "float32")),
        ("offset_mode", offset_mode, OFFSET_MODES),
        ("early_exit", early_exit, tuple(EXIT_CODE)),
    ]:
        if val not in allowed:
            raise ValueError(f"{name}={val!r}; expected one of {allowed}")
    return check_optimizer(optimizer, optim, axes)


def triton_available(device):
    """Triton runs on CUDA, or on the CPU under its interpreter (TRITON_INTERPRET=1)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available()
    return os.environ.get("TRITON_INTERPRET") == "1"


def pick_backend(backend, device, optimizer="gd"):
    in_kernel = optimizer in OPT_CODE  # the others train on the torch backend only
    if backend == "auto":
        use = torch.device(device).type == "cuda" and triton_available(device) and in_kernel
        return "triton" if use else "torch"
    if backend == "triton" and not in_kernel:
        raise ValueError(f"the Triton kernel has no {optimizer}: use backend='torch' or 'auto'")
    if backend == "triton" and not triton_available(device):
        raise RuntimeError("backend='triton' needs triton and CUDA (or TRITON_INTERPRET=1)")
    if backend not in ("triton", "torch"):
        raise ValueError(f"backend={backend!r}; expected auto, triton or torch")
    return backend


def _setup(gx, gy, axes, n_points, steps, seed, batch, minibatch_size, dtype, device, data=None):
    """The shared problem and the per-pixel (lr0, lr1, offset) of pixels at the axis
    values gx[p], gy[p] (not log10)."""
    problem = make_problem(
        n_points=n_points,
        steps=steps,
        seed=seed,
        batch=batch,
        minibatch_size=minibatch_size,
        dtype=dtype,
        device=device,
        data=data,
    )
    dt = getattr(torch, dtype)
    as_tensor = lambda v: torch.tensor(v, dtype=dt, device=device)  # noqa: E731
    x = as_tensor(gx)
    return (problem, *pixel_hparams(axes, x, as_tensor(gy)), x)


def compute_image(
    *,
    nonlinearity,
    axes,
    batch,
    n_points,
    window=None,
    resolution=None,
    grid=None,
    steps=1000,
    seed=0,
    device="cpu",
    dtype="float64",
    minibatch_size=16,
    backend="auto",
    chunk_pixels=None,
    offset_mode="every_step",
    triton_config=None,
    tail=TAIL,
    data=None,
    known=None,
    early_exit="nonfinite",
    optimizer="gd",
    optim=None,
):
    """Trains one network per pixel of a log10-spaced grid and returns {"values",
    "converged"} ([ny, nx], row = y, row 0 = y min) plus timing and provenance.

    The grid is `window` (log10 x_min, x_max, y_min, y_max) at `resolution` (an int or
    (nx, ny)), spaced like np.logspace, or `grid` = (gx, gy), the log10 coordinates of the
    columns and rows (a zoom frame's, fractal.zoom.frame_grid). A pixel converged if the
    mean of its last `tail` normalised losses is below 1. `data`: arrays that replace the
    seeded draw of make_problem. `known` = (mask, values), both [ny, nx]: pixels whose
    values are already known (computed on the same grid points) are copied, not trained.
    `early_exit`: see common.EXIT_CODE ("nonfinite" leaves the image unchanged).
    `optimizer` (common.OPTIMIZERS) trains every pixel, with `optim` overriding its knobs;
    axes "<knob>_vs_lr" put one knob on x (log10 of 1 - knob for a decay rate).
    The result's "pixel_steps" counts the steps trained, "steps_run" each pixel's.
    """
    knobs = _check(nonlinearity, axes, batch, dtype, offset_mode, early_exit, optimizer, optim)
    backend = pick_backend(backend, device, optimizer)
    xs, ys = _axes_of(window, resolution, grid)
    nx, ny = len(xs), len(ys)
    t0 = time.perf_counter()
    todo, gx, gy = _pixels_to_train(xs, ys, known)
    _check_knob_axis(axes, gx)
    problem, lr0, lr1, offset, x = _setup(
        gx, gy, axes, n_points, steps, seed, batch, minibatch_size, dtype, device, data
    )
    knobs = pixel_knobs(knobs, axes, x)
    run = dict(nonlinearity=nonlinearity, steps=steps, offset_mode=offset_mode, tail=tail,
               early_exit=early_exit, optimizer=optimizer, knobs=knobs)  # fmt: skip
    if not todo.any():
        sums, info = _no_sums(dtype), {}
    elif backend == "triton":
        sums, info = _train_triton(problem, lr0, lr1, offset, run, triton_config, chunk_pixels)
    else:
        sums, info = _train_on_torch(problem, lr0, lr1, offset, run, device, chunk_pixels)
    trained, _ = finalise(*sums[:3], min(tail, steps))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    runtime = time.perf_counter() - t0
    values, steps_run = _assemble(trained, sums[3], todo, known, nx, ny)
    return {
        "values": values,
        "converged": values < 0,  # -sum(v) <= -1 if converged, sum(1/v) > 0 if not
        "runtime_s": runtime,
        "pixel_steps_per_s": nx * ny * steps / runtime,
        "pixel_steps": int(steps_run.sum(dtype=np.int64)),
        "trained_pixels": int(todo.sum()),
        "steps_run": steps_run,
        "backend": backend,
        "device": str(device),
        "dtype": dtype,
        "early_exit": early_exit,
        **({} if optimizer == "gd" else {"optimizer": optimizer, "optim": _plain(knobs)}),
        **info,
    }


def _axes_of(window, resolution, grid):
    """The x and y hyperparameter values of the image's columns and rows."""
    if grid is not None:
        return tuple(np.power(10.0, np.asarray(g, dtype=np.float64)) for g in grid)
    return axis_values(window, resolution)


def _pixels_to_train(xs, ys, known):
    """(todo [ny * nx] bool, x and y of the pixels to train): every pixel not `known`.
    Pixel p = iy * nx + ix, so a reshape to [ny, nx] puts y on rows."""
    nx, ny = len(xs), len(ys)
    todo = np.ones(ny * nx, dtype=bool)
    if known is not None:
        todo = ~np.asarray(known[0], dtype=bool).reshape(-1)
    return todo, np.tile(xs, ny)[todo], np.repeat(ys, nx)[todo]


def _no_sums(dtype):
    """The sums of zero pixels (every pixel was known)."""
    sums = [torch.zeros(0, dtype=getattr(torch, dtype)) for _ in range(3)]
    return sums + [torch.zeros(0, dtype=torch.int32)]


def _train_triton(problem, lr0, lr1, offset, run, triton_config, chunk_pixels):
    from fractal import triton_engine

    info = {}
    sums = triton_engine.train(
        problem, run["nonlinearity"], lr0, lr1, offset, run["steps"], run["offset_mode"],
        config=triton_config, chunk_pixels=chunk_pixels, info=info, tail=run["tail"],
        early_exit=run["early_exit"], optimizer=run["optimizer"], knobs=run["knobs"],
    )  # fmt: skip
    return sums, info


def _train_on_torch(problem, lr0, lr1, offset, run, device, chunk_pixels):
    chunk = _torch_chunk_pixels(problem, device, chunk_pixels, run["optimizer"])
    # Denormal float64 arithmetic is 10-100x slower on x86 CPUs and diverging pixels
    # pass through denormals; flushing them changes values far below the labels' scale.
    flush = torch.device(device).type == "cpu" and torch.set_flush_denormal(True)
    try:
        sums, _ = _train_torch(
            problem, run["nonlinearity"], lr0, lr1, offset, run["steps"], run["offset_mode"],
            chunk, tail=run["tail"], early_exit=run["early_exit"], optimizer=run["optimizer"],
            knobs=run["knobs"],
        )  # fmt: skip
    finally:
        if flush:
            torch.set_flush_denormal(False)
    return sums, {"chunk_pixels": chunk}


def _assemble(trained, steps_trained, todo, known, nx, ny):
    """The [ny, nx] image of values and of steps run: the trained pixels, and the known
    ones copied."""
    values = np.empty(ny * nx)
    values[todo] = trained.double().cpu().numpy()
    steps_run = np.zeros(ny * nx, dtype=np.int32)
    steps_run[todo] = steps_trained.cpu().numpy()
    if known is not None:
        values[~todo] = np.asarray(known[1], dtype=np.float64).reshape(-1)[~todo]
    return values.reshape(ny, nx), steps_run.reshape(ny, nx)


def _plain(knobs):
    """The knobs for a result file: floats, and "axis" for one on the image's x axis."""
    return {k: "axis" if torch.is_tensor(v) else v for k, v in knobs.items()}


def _check_knob_axis(axes, gx):
    k = knob_axis(axes)
    if k in DECAY_KNOBS and len(gx) and not np.max(gx) <= 1:
        raise ValueError(
            f"axes={axes!r}: x is 1 - {k}, which must lie in (0, 1]; got up to "
            f"{np.max(gx):.3g}: keep the window's x maximum <= 0 (log10)"
        )


def pixel_losses(
    *,
    nonlinearity,
    axes,
    batch,
    n_points,
    x_value,
    y_value,
    steps,
    seed,
    dtype="float64",
    minibatch_size=16,
    offset_mode="every_step",
    device="cpu",
    data=None,
    optimizer="gd",
    optim=None,
):
    """The full trajectory of losses / first loss (not sanitised) of ONE pixel, through the
    same vectorised code path as compute_image's torch backend (tests, debugging)."""
    knobs = _check(nonlinearity, axes, batch, dtype, offset_mode, "none", optimizer, optim)
    _check_knob_axis(axes, [x_value])
    problem, lr0, lr1, offset, x = _setup(
        [x_value], [y_value], axes, n_points, steps, seed, batch, minibatch_size, dtype, device,
        data,
    )  # fmt: skip
    _, traj = _train_torch(
        problem, nonlinearity, lr0, lr1, offset, steps, offset_mode, 1, record=True,
        optimizer=optimizer, knobs=pixel_knobs(knobs, axes, x),
    )  # fmt: skip
    return traj[:, 0].double().cpu().numpy()
