"""Provenance: manifest.json per cell and one environment snapshot per matrix.

No environment variable whose name contains KEY, TOKEN, SECRET or PASSWORD is ever
written: `redact` is applied to everything taken from the environment.
"""

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from kmatrix.files import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
ENV_RECORDED = (
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "PYTHONHASHSEED",
    "WANDB_MODE",
    "NCCL_NVLS_ENABLE",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST",
)


def redact(env):
    """Drop every variable whose name looks like it holds a credential."""
    return {k: v for k, v in env.items() if not any(w in k.upper() for w in SECRET_WORDS)}


def _git(*args):
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_info():
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "sha": _git("rev-parse", "HEAD"),
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


@functools.cache  # once per worker: nvidia-smi alone can take a second
def torch_info(device):
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": None,
        "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "driver": nvidia_smi("--query-gpu=driver_version", "--format=csv,noheader"),
        }
        try:
            info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:  # noqa: BLE001 - NCCL is optional
            pass
    return info


def nvidia_smi(*args):
    """nvidia-smi's output for these arguments, or None (no GPU, no driver, a hang)."""
    try:
        out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write(out_dir, cell, job, knobs, device):
    """manifest.json for one cell: code, software, hardware, seeds, knobs, data."""
    env = redact(dict(os.environ))
    manifest = {
        "cell": cell.id,
        "config_hash": job.config_hash,
        "environment_snapshot": job.environment_hash,
        "git": job.git or git_info(),
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        **torch_info(device),
        "device": device,
        "env": {k: env.get(k) for k in ENV_RECORDED if k in env},
        "seed": cell.point.get("seed"),
        "run_seed": cell.run_seed,
        "knobs": knobs,
        "params": cell.params,
    }
    write_json_atomic(Path(out_dir) / "manifest.json", manifest)
    return manifest


def add_knobs(out_dir, knobs):
    """Merge the knobs a workload resolved while running (precision, autocast dtype,
    attention backend, compile, dataset identity...) into the cell's manifest."""
    path = Path(out_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["knobs"] = {**manifest.get("knobs", {}), **knobs}
    write_json_atomic(path, manifest)


def add(out_dir, **fields):
    """Add top-level fields known only once the cell ran (what it ran with) to its manifest."""
    path = Path(out_dir) / "manifest.json"
    write_json_atomic(path, {**json.loads(path.read_text()), **fields})


def write_environment_snapshot(root):
    """Installed packages (what `pip freeze` lists, read from their metadata in ~50 ms
    rather than pip's seconds), python, platform and nvidia-smi, once per run of a
    matrix; returns its hash."""
    from importlib import metadata

    freeze = sorted(
        {
            f"{d.metadata['Name']}=={d.version}"
            for d in metadata.distributions()
            if d.metadata["Name"]
        },
        key=str.lower,
    )
    snapshot = {
        "python": sys.version,
        "platform": platform.platform(),
        "pip_freeze": freeze,
        "nvidia_smi": nvidia_smi(),
    }
    blob = json.dumps(snapshot, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    write_json_atomic(Path(root) / f"environment-{digest}.json", snapshot)
    return digest


def provenance(device=None):
    """Where a benchmark number came from: the machine and device, the versions that
    shape it, the commit (and whether the tree had uncommitted changes), date and argv."""
    from datetime import datetime, timezone
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for package in ("torch", "triton", "numpy", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    gpus = nvidia_smi("--query-gpu=name", "--format=csv,noheader")
    cpu = f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "git": git_info(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": f"{gpus.replace(chr(10), ', ')}; {cpu}" if gpus else cpu,
        "device": device,
        "versions": versions,
    }


def write_bench_result(path, report, device=None):
    """Write a benchmark's report as JSON with its provenance stamp under "provenance"
    (every script under bench/ writes through this: one call). A report that is not a
    dict (a list of rows) goes under "rows". Returns what was written."""
    body = report if isinstance(report, dict) else {"rows": report}
    stamped = {"provenance": provenance(device), **body}
    write_json_atomic(path, stamped)
    return stamped
