"""The Ray executor: the same slots-and-jobs interface as LocalExecutor, on a Ray cluster.

Each slot is a Ray actor holding a share of one GPU (1/EXEC_JOBS_PER_GPU), or one CPU
on a cluster without GPUs. An actor rather than a plain task, because an actor keeps
its GPU for life: Ray reuses a task's worker process for later tasks on other GPUs,
while CUDA stays bound to the first one, and the actor's cache (imports, tokenizer,
data) is only worth keeping on the same device. Ray sets CUDA_VISIBLE_DEVICES.

The driver sees pseudo-slots and does its own planning, resume, retries and summary.
Cells write result.json themselves (kmatrix.worker.run_job), so the results directory
must be on a filesystem every node mounts at the same path, and so must the project.

Faults: an actor whose process or node dies costs its cell, reported as "ray worker
died: ..." (EXEC_RETRY_PATTERN retries it); the slot is dropped and the cluster's
capacity, read again, decides how many slots there are. Ray's own retries are off
(max_restarts=0, max_task_retries=0) so the driver's policy is the only one. Actors
die with the driver, so a killed driver leaves no cell writing results.

The head (GCS) dying ends the run: it is checked every second, before anything asks it,
and a lost head raises HeadLost, whose message says what happened; finished cells are
kept and reported by the caller, and a private instance's processes (agents included)
are killed rather than left to Ray's own 60 s time-out and exit.
"""

import dataclasses
import logging
import os
import socket
import time
from pathlib import Path

from kmatrix.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "pip install .[ray]  (or pip install 'ray[default]>=2.9')"
REFRESH_S = 2.0  # how often the cluster's capacity is read again
START_WAIT_S = 60.0  # how long the constructor waits for the first actors to start
HEAD_CHECK_S = 1.0  # how often the head (GCS) is checked to be alive
DRIVER_CHECK_S = 0.2  # how often a worker on the driver's machine checks the driver lives


class HeadLost(RuntimeError):
    """The Ray head (GCS) stopped answering: no more cells can run or report."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "EXEC_EXECUTOR", "the Ray executor needs the ray package", INSTALL_HINT
        ) from None
    return ray


def _exit_with(host, pid):
    """Exit when the driver on this machine is gone, like kmatrix.worker's PDEATHSIG.

    On a cluster Ray kills a dead driver's actors itself; a private instance dies with
    its driver and leaves its workers to finish their cells unasked. A cell that ends
    within DRIVER_CHECK_S of the driver's death (more on a loaded machine) may still
    write its result: a finished result, which the next run keeps.
    """
    import threading

    def watch():
        while True:
            time.sleep(DRIVER_CHECK_S)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # alive (or a stranger's process reused the id): keep going

    if socket.gethostname() == host:
        threading.Thread(target=watch, daemon=True).start()


class CellWorker:
    """Runs cells one after another in one Ray worker process, keeping heavy state."""

    def __init__(self, driver_host, driver_pid):
        self.cache, self.workloads = {}, {}
        _exit_with(driver_host, driver_pid)
        # Load torch now, while the actor starts: a cell's clock (and timeout) starts
        # at submission, and must not pay for the imports.
        import torch

        import kmatrix.worker  # noqa: F401

        torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())

    def where(self):
        import ray

        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        return f"{socket.gethostname()}/" + (f"gpu{gpus}" if gpus else "cpu")

    def run(self, job):
        from kmatrix.worker import run_job

        return run_job(job, self.cache, self.workloads)


class RaySlot:
    def __init__(self, name, actor, ready):
        self.name, self.actor, self.ready = name, actor, ready
        self.up = False  # the actor has started and answered where()
        self.created = time.time()
        self.job = self.ref = None
        self.started = 0.0


def _death_reason(error):
    """One line from Ray's long actor-death text: why and where."""
    lines = [line.strip() for line in str(error).splitlines()]
    why = next((line for line in lines if "because" in line), lines[0] if lines else "")
    ip = next((line[3:].strip() for line in lines if line.startswith("ip:")), "")
    return f"ray worker died{' on ' + ip if ip else ''}: {why[:300]}"


class RayExecutor:
    """Runs jobs on Ray actors: the executor interface of kmatrix/executor.py."""

    def __init__(
        self,
        address=None,
        jobs_per_gpu=1,
        timeout=0,
        env=None,
        cpu_only=False,
        start_timeout=0,
        gpus_per_cell=1,
    ):
        ray = self.ray = import_ray()
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            # An empty address joins the cluster this machine is part of (`ray start`) or
            # starts a private one; cell output goes to each cell's log.txt, not here.
            ray.init(
                address=address or None,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        self.jobs_per_gpu = max(1, jobs_per_gpu or 1)
        self.gpus_per_cell = max(1, gpus_per_cell or 1)  # a DDP cell's actor holds N GPUs
        self.timeout = timeout or 0
        self.start_timeout = start_timeout or 0  # an actor that never comes up is replaced
        self.cpu_only = cpu_only
        # Workers import the project from the same path as here (a shared filesystem).
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {**(env or {}), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        self.slots, self.count, self.checked = [], 0, 0.0
        self.start_error, self.start_failures = None, 0
        self.head, self.head_checked, self.head_lost = _gcs_address(ray), 0.0, False
        self.family = _descendants() if self.owns_ray else set()  # the private instance
        self._refresh(force=True)
        deadline = time.time() + START_WAIT_S
        while any(not s.up for s in self.slots) and time.time() < deadline:
            self._check_started(timeout=0.5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- capacity: one slot per share of a GPU (or per CPU), read from the cluster

    def capacity(self):
        total = self.ray.cluster_resources()
        gpus = 0 if self.cpu_only else int(total.get("GPU", 0))
        if gpus:
            return gpus // self.gpus_per_cell * self.jobs_per_gpu
        return int(total.get("CPU", 0))

    def _options(self):
        gpus = 0 if self.cpu_only else int(self.ray.cluster_resources().get("GPU", 0))
        if gpus:
            # The GPU is what is scheduled; the CPUs of a GPU node are the cell's to use.
            share = self.gpus_per_cell / self.jobs_per_gpu
            return dict(num_gpus=share, num_cpus=0, env=self.env)
        return dict(num_gpus=0, num_cpus=1, env={**self.env, "CUDA_VISIBLE_DEVICES": ""})

    def _refresh(self, force=False):
        """Add slots when the cluster grew (or a slot died); drop idle ones if it shrank."""
        if not force and time.time() - self.checked < REFRESH_S:
            return
        self.checked = time.time()
        target = self.capacity()
        idle = sorted((s for s in self.slots if s.job is None), key=lambda s: s.up)
        for slot in idle[: max(0, len(self.slots) - target)]:  # not yet started ones first
            self._drop(slot)
        if self.start_failures >= 3:
            return  # actors fail to start: _check_started raises once none is left
        opts = self._options()
        actor_class = self.ray.remote(CellWorker).options(
            num_gpus=opts["num_gpus"],
            num_cpus=opts["num_cpus"],
            max_restarts=0,
            max_task_retries=0,
            runtime_env={"env_vars": opts["env"]},
        )
        while len(self.slots) < target:
            actor = actor_class.remote(socket.gethostname(), os.getpid())
            self.slots.append(RaySlot(f"ray{self.count}", actor, actor.where.remote()))
            self.count += 1

    def _drop(self, slot):
        self.slots.remove(slot)
        self.ray.kill(slot.actor)

    def _check_started(self, timeout=0.0):
        """Name slots whose actor answered; drop those whose actor could not start."""
        pending = {s.ready: s for s in self.slots if not s.up}
        if not pending:
            return
        ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        now = time.time()
        for ref in set(pending) - set(ready):
            slot = pending[ref]
            if self.start_timeout and now - slot.created > self.start_timeout:
                self.start_error = f"a worker did not start within {self.start_timeout} s"
                self.start_failures += 1
                self._drop(slot)
        for ref in ready:
            slot = pending[ref]
            try:
                slot.name = f"{slot.name}:{self.ray.get(ref)}"
                slot.up, self.start_failures = True, 0
            except self.ray.exceptions.RayError as e:
                self.start_error = e
                self.start_failures += 1
                self._drop(slot)
        if not self.slots and self.start_error is not None:
            raise ConfigError(
                "EXEC_EXECUTOR_RAY",
                f"Ray workers could not start ({str(self.start_error)[:300]})",
                f"every node needs this project at {ROOT} and the same Python environment",
            )

    # -- the executor interface (kmatrix/executor.py)

    @property
    def cpu(self):
        return self.cpu_only or not self.ray.cluster_resources().get("GPU", 0)

    def _check_head(self):
        """Raise HeadLost when the head no longer takes connections (asked at most once
        a second; every Ray call after its death would block, then exit the process)."""
        if self.head is None or time.time() - self.head_checked < HEAD_CHECK_S:
            return
        self.head_checked = time.time()
        if self.owns_ray:
            self.family |= _descendants()
        try:
            socket.create_connection(self.head, timeout=5).close()
        except OSError as e:
            self.head_lost = True
            raise HeadLost(
                f"the Ray head at {self.head[0]}:{self.head[1]} is gone ({e.strerror or e}); "
                f"the {sum(s.job is not None for s in self.slots)} running cell(s) are lost"
            ) from None

    def free_slots(self):
        self._check_head()
        self._refresh()
        self._check_started()
        return [s for s in self.slots if s.up and s.job is None]

    def busy(self):
        return any(s.job is not None for s in self.slots)

    def running(self):
        return {s.name: s.job.id for s in self.slots if s.job is not None}

    def cell_progress(self):
        return {}  # a Ray actor's cells report no progress: the heartbeat shows their time

    def submit(self, slot, job):
        # Workers have another working directory (and machine): paths must be absolute.
        job = dataclasses.replace(job, slot=slot.name, root=str(Path(job.root).resolve()))
        slot.job, slot.started = job, time.time()
        slot.ref = slot.actor.run.remote(job)

    def _fail(self, slot, reason):
        job, slot.job, slot.ref = slot.job, None, None
        self._drop(slot)  # a fresh actor takes its place at the next refresh
        self.checked = 0.0
        return job, job.lost(reason)

    def poll(self, timeout=0.5):
        """Wait up to `timeout` seconds; return the jobs that ended as (job, replies)."""
        self._check_head()
        busy = {s.ref: s for s in self.slots if s.job is not None}
        if not busy:
            time.sleep(min(timeout, 0.05))
            return []
        ray, done = self.ray, []
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=timeout)
        if ready:  # collect every other one that has also finished
            ready, _ = ray.wait(list(busy), num_returns=len(busy), timeout=0)
        for ref in ready:
            slot = busy[ref]
            try:
                reply = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                done.append(self._fail(slot, _death_reason(e)))
                continue
            except ray.exceptions.RayError as e:  # e.g. the job could not be sent
                done.append(self._fail(slot, f"ray error: {str(e).splitlines()[0][:300]}"))
                continue
            done.append((slot.job, reply))
            slot.job = slot.ref = None
        now = time.time()
        for slot in [s for s in self.slots if s.job is not None]:
            if self.timeout and now - slot.started > self.timeout:
                # ray.kill ends the actor's process, and with it the cell.
                done.append(self._fail(slot, f"timeout: cell ran longer than {self.timeout} s"))
        return done

    def close(self):
        if self.head_lost:  # asking the dead head anything blocks: end what we started
            if self.owns_ray:
                _kill(self.family | _descendants())
            return
        for slot in list(self.slots):
            self._drop(slot)
        if self.owns_ray:
            self.ray.shutdown()


def _gcs_address(ray):
    """(host, port) of the head's GCS, or None when it cannot be told."""
    try:
        host, port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
        return host, int(port)
    except Exception:  # noqa: BLE001 - an older Ray: no head check, as before
        return None


def _stat(pid):
    """(parent pid, start time) of a process from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _descendants():
    """(pid, start time) of every descendant of this process (Linux /proc; empty
    elsewhere): the start time tells a process from a later one that reuses its id."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        stat = _stat(entry) if entry.isdigit() else None
        if stat:
            children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def _kill(pids):
    """SIGKILL the processes of a private Ray instance whose head died (raylet, agents,
    workers): collected while they were still our descendants, as some outlive it."""
    import signal

    for pid, started in pids:
        stat = _stat(pid)
        if pid != os.getpid() and stat and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
