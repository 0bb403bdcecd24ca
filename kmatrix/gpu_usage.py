"""GPU usage per cell: peak memory, and utilisation, power and memory in use over time,
sampled on a thread while the cell runs (what a W&B system panel shows).

Peak memory is torch's max_memory_allocated in the worker process (tensors only, not
the caching allocator's reserve or other processes). Utilisation, power and memory in
use come from NVML (the `nvidia-ml-py` package, imported as `pynvml`; optional: without
it the result holds the peak memory alone). What NVML's utilisation cannot see: it is
the share of the last sample period (1/6 s to 1 s, the driver's choice) in which any
kernel ran, not how busy the SMs were; a GPU running one tiny kernel all the time reads
100%. A cell on several GPUs (DDP) sums power and memory over its GPUs and averages
utilisation; the peak of its rank processes is their own (the workload's metrics).
"""

import os
import threading
import time

NO_GPU = "no GPU"  # the result's gpu_usage on a CPU worker
INTERVAL_S = 0.5
MAX_SAMPLES = 2000  # past this, every other sample is dropped and the interval doubled


def _nvml():
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def visible_nvml_indices(nvml):
    """NVML's indices of the GPUs this process sees (CUDA_VISIBLE_DEVICES: indices or
    UUIDs; NVML numbers every GPU of the machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(nvml.nvmlDeviceGetCount()))
    out = []
    for item in filter(None, (v.strip() for v in visible.split(","))):
        if item.isdigit():
            out.append(int(item))
        else:
            handle = nvml.nvmlDeviceGetHandleByUUID(item)
            out.append(nvml.nvmlDeviceGetIndex(handle))
    return out


class Sampler:
    """Start before a cell, stop after it; stop() returns the cell's gpu_usage."""

    def __init__(self, device, nvml="auto", interval=INTERVAL_S):
        self.device, self.interval = device, interval
        self.nvml = _nvml() if nvml == "auto" else nvml
        self.handles, self.error = [], None
        self.samples = {"t": [], "utilization_pct": [], "power_w": [], "memory_used_mb": []}
        self.thread = None
        self.stopping = threading.Event()

    def start(self):
        if not self.device.startswith("cuda"):
            return self
        import torch

        torch.cuda.reset_peak_memory_stats()
        if self.nvml is not None:
            try:
                self.nvml.nvmlInit()
                self.handles = [
                    self.nvml.nvmlDeviceGetHandleByIndex(i) for i in visible_nvml_indices(self.nvml)
                ]
            except Exception as e:  # noqa: BLE001 - no driver access: memory only
                self.error = f"NVML: {e}"
                self.handles = []
        self.started = time.monotonic()
        if self.handles:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        nv, util, power, mem = self.nvml, [], [], 0.0
        for h in self.handles:
            util.append(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            try:
                power.append(nv.nvmlDeviceGetPowerUsage(h) / 1000)  # milliwatts
            except Exception:  # noqa: BLE001 - some GPUs do not report power
                pass
            mem += nv.nvmlDeviceGetMemoryInfo(h).used / 2**20
        power = round(sum(power), 1) if len(power) == len(util) else None
        s = self.samples
        s["t"].append(round(time.monotonic() - self.started, 3))
        s["utilization_pct"].append(sum(util) / len(util))
        s["power_w"].append(power)
        s["memory_used_mb"].append(round(mem, 1))
        if len(s["t"]) > MAX_SAMPLES:
            for key in s:
                s[key] = s[key][::2]
            self.interval *= 2

    def _loop(self):
        while True:
            try:
                self._sample()
            except Exception as e:  # noqa: BLE001 - a driver hiccup ends sampling only
                self.error = f"NVML: {e}"
                return
            if self.stopping.wait(self.interval):
                return

    def stop(self):
        """The cell's gpu_usage: NO_GPU on a CPU worker; else the peak memory and, where
        NVML answered, the means and the samples."""
        if not self.device.startswith("cuda"):
            return NO_GPU
        import torch

        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        if self.handles:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
        usage = {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
        s = self.samples
        if s["t"]:
            power = [p for p in s["power_w"] if p is not None]
            usage.update(
                gpus=len(self.handles),
                mean_utilization_pct=round(_mean(s["utilization_pct"]), 1),
                mean_power_w=round(_mean(power), 1) if power else None,
                peak_memory_used_mb=max(s["memory_used_mb"]),
                interval_s=self.interval,
                samples=s,
            )
        elif self.error or self.nvml is None:
            usage["nvml"] = self.error or "not installed (pip install nvidia-ml-py)"
        return usage


def _mean(values):
    return sum(values) / len(values)


def plot(path, usages, title="GPU usage"):
    """One figure of utilisation, power and memory in use over each cell's time (one line
    per cell): usages maps cell id -> gpu_usage. Returns False (and writes nothing) when
    no cell has samples."""
    usages = {k: u for k, u in usages.items() if isinstance(u, dict) and u.get("samples")}
    if not usages:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kmatrix.files import write_atomic

    panels = (
        ("utilization_pct", "utilisation (%)"),
        ("power_w", "power (W)"),
        ("memory_used_mb", "memory in use (MiB)"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 7.5), sharex=True)
    for cell, usage in sorted(usages.items()):
        s = usage["samples"]
        for ax, (key, _) in zip(axes, panels):
            ys = [float("nan") if v is None else v for v in s[key]]
            ax.plot(s["t"], ys, lw=1, label=cell)
    for ax, (_, label) in zip(axes, panels):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds since the cell started")
    axes[0].set_title(title)
    if len(usages) <= 12:
        axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return True
