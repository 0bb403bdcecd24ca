"""The local executor: one persistent worker process per GPU slot (or CPU worker).

The driver hands a job to a free slot; the slot's worker runs it and answers on a pipe.
A worker that dies (segfault, OOM kill, os._exit) or overruns the cell timeout costs
only its current job: the slot reports its cells failed with the reason and starts a
fresh worker for the next one.

The executor interface (LocalExecutor here, RayExecutor in ray_executor.py; the
scheduler, kmatrix/schedule.py, uses nothing else):

  slots          list of slots, each with a `name` ("cpu0", "gpu1.0", "ray3:host/gpu0")
  cpu            True when every slot runs on a CPU (no GPU anywhere)
  free_slots()   the slots ready for a job now
  submit(slot, job)   hand a kmatrix.job.Job to a free slot; returns at once
  poll(timeout)  wait up to `timeout` s; return [(job, replies)] for the jobs that ended,
                 one reply per cell of the job: {"id", "status", "error", "runtime_s",
                 ...}; a job whose worker died or overran gets job.lost(reason) (replies
                 with "lost": True, whose result.json the scheduler writes)
  busy()         whether any job is running
  running()      {slot name: job id} of the running jobs, for progress displays
  cell_progress()  {slot name: the running cell's last report (done, total, unit)}, for
                 the heartbeat ({} where the workers report none)
  close()        stop every worker (also on `with executor:` exit)
"""

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def detect_gpus(requested):
    """GPU indices from EXEC_GPUS: ["auto"] (every GPU torch sees), ["none"], or ids."""
    if requested in (None, [], ["auto"]):
        import torch

        return list(range(torch.cuda.device_count()))
    if requested == ["none"]:
        return []
    return [int(g) for g in requested]


def local_slots(cfg, gpus=None, cpu_only=False, max_cells=None):
    """(name, extra environment) per worker slot; CPU workers share the cores' threads,
    and never outnumber the cells to run (one cell gets every core). A workload whose
    cells train on N GPUs each (gpt2's GPT2_DDP_GPUS) gets slots of N GPUs ("gpu0+1")."""
    from kmatrix.workloads import gpus_per_cell

    gpus = [] if cpu_only else (detect_gpus(cfg.get("exec_gpus")) if gpus is None else gpus)
    if gpus:
        jobs = max(1, cfg.get("exec_jobs_per_gpu") or 1)
        per = gpus_per_cell(cfg)
        groups = [gpus[k : k + per] for k in range(0, len(gpus) - per + 1, per)]
        return [
            (
                "gpu" + "+".join(map(str, g)) + (f".{k}" if jobs > 1 else ""),
                {"CUDA_VISIBLE_DEVICES": ",".join(map(str, g))},
            )
            for g in groups
            for k in range(jobs)
        ]
    cores = os.cpu_count() or 1
    n = (cfg.get("exec_cpu_workers") or cores) if not cpu_only else cores
    n = max(1, min(n, max_cells or n))
    threads = str(max(1, cores // n))
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return [(f"cpu{k}", dict(env)) for k in range(n)]


def _exit_reason(code):
    if code is None:
        return "worker stopped answering"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if code == -9 else ""
        return f"worker killed by {name}{hint}"
    return f"worker exited with status {code}"


class Slot:
    def __init__(self, name, env):
        self.name, self.env = name, env
        self.proc = self.reply = None
        self.job = None  # the job running now
        self.submitted = None  # when the job was handed over
        self.started = None  # when the worker began the current cell
        self.progress = None  # the current cell's last progress report
        self.buffer = b""

    def spawn(self, base_env):
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **base_env, **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kmatrix.worker", str(write_fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        os.close(write_fd)
        self.reply = read_fd
        self.buffer = b""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.reply is not None:
            os.close(self.reply)
        self.proc = self.reply = None


class LocalExecutor:
    """Runs jobs on persistent local workers (the interface above)."""

    def __init__(self, slots, timeout=0, env=None, start_timeout=0):
        self.slots = [Slot(name, slot_env) for name, slot_env in slots]
        # local_slots() hides every GPU from a CPU worker
        self.cpu = all(s.env.get("CUDA_VISIBLE_DEVICES") == "" for s in self.slots)
        self.timeout = timeout or 0
        self.start_timeout = start_timeout or 0  # submit -> "started", a hung start-up
        self.env = env or {}

    def __enter__(self):
        """Start every worker now: they import torch while the driver reads results."""
        for slot in self.slots:
            if slot.proc is None:
                slot.spawn(self.env)
        return self

    def __exit__(self, *exc):
        self.close()

    def free_slots(self):
        return [s for s in self.slots if s.job is None]

    def busy(self):
        return any(s.job is not None for s in self.slots)

    def running(self):
        return {s.name: s.job.id for s in self.slots if s.job is not None}

    def cell_progress(self):
        """{slot: the running cell's last report (done, total, unit)}, for the heartbeat."""
        return {s.name: s.progress for s in self.slots if s.job is not None and s.progress}

    def submit(self, slot, job):
        if slot.proc is None or slot.proc.poll() is not None:
            slot.kill()
            slot.spawn(self.env)
        job = dataclasses.replace(job, slot=slot.name)
        slot.job, slot.progress = job, None
        slot.started = None  # the clock starts when the worker says so
        slot.submitted = time.time()
        try:
            slot.proc.stdin.write((json.dumps(job.to_dict()) + "\n").encode())
            slot.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died at start: poll() reports it

    def _fail(self, slot, reason):
        job, slot.job = slot.job, None
        slot.kill()
        return job, job.lost(reason)

    def poll(self, timeout=0.5):
        """Wait up to `timeout` seconds; return the jobs that ended as (job, replies)."""
        done = []
        busy = {s.reply: s for s in self.slots if s.job is not None}
        ready = select.select(list(busy), [], [], timeout)[0] if busy else []
        if not busy:
            time.sleep(min(timeout, 0.05))
        for fd in ready:
            slot = busy[fd]
            chunk = os.read(fd, 65536)
            if not chunk:  # EOF: the worker died mid-cell
                slot.proc.wait()
                done.append(self._fail(slot, _exit_reason(slot.proc.returncode)))
                continue
            slot.buffer += chunk
            while b"\n" in slot.buffer and slot.job is not None:
                line, slot.buffer = slot.buffer.split(b"\n", 1)
                message = json.loads(line)
                if "started" in message:
                    slot.started = time.time()
                    continue
                if "progress" in message:
                    slot.progress = message
                    continue
                done.append((slot.job, message["replies"]))
                slot.job = None
        now = time.time()
        for slot in self.slots:
            if slot.job is None:
                continue
            if slot.started is None:
                if self.start_timeout and now - slot.submitted > self.start_timeout:
                    reason = f"worker did not start the cell within {self.start_timeout} s"
                    done.append(self._fail(slot, reason))
            elif self.timeout and now - slot.started > self.timeout:
                done.append(self._fail(slot, f"timeout: cell ran longer than {self.timeout} s"))
        return done

    def close(self):
        for slot in self.slots:
            if slot.proc is not None:
                try:
                    slot.proc.stdin.close()
                except OSError:
                    pass
            slot.kill()
