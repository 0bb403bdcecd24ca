"""Progress: a live rich display on a terminal, plain log lines otherwise.

Plain output (a log file, CI, `make | tee`) is never silent for long: while cells run,
a heartbeat line (cells done, elapsed, ETA, and each running cell's own progress) is
printed whenever nothing else was printed for HEARTBEAT_S seconds.

A workload reports its progress inside a cell with `report(done, total, unit)` (steps,
pixels...); in a worker the report reaches the driver's heartbeat, elsewhere it costs
nothing.
"""

import sys
import time

HEARTBEAT_S = 30.0  # the longest silence of plain output while cells run
REPORT_EVERY_S = 1.0  # the most often a cell's progress is sent to the driver

_sink = None  # where report() sends, set by the worker while a cell runs
_last_report = 0.0


def listen(sink):
    """Send every report() to `sink(dict)` (None: drop them); the worker's hook."""
    global _sink, _last_report
    _sink, _last_report = sink, 0.0


def report(done, total, unit):
    """A running cell has done `done` of `total` `unit` (e.g. 1536 of 4096 pixels)."""
    global _last_report
    if _sink is None:
        return
    now = time.monotonic()
    if now - _last_report < REPORT_EVERY_S and done < total:
        return
    _last_report = now
    _sink({"done": int(done), "total": int(total), "unit": str(unit)})


def _fmt_eta(seconds):
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _fmt_part(part):
    if not part or not part.get("total"):
        return ""
    pct = 100 * part["done"] / part["total"]
    return f"{part['done']:,}/{part['total']:,} {part['unit']} ({pct:.0f}%)"


class Progress:
    """done/total, failures, the cell running on each slot and an ETA.

    The ETA counts only cells finished in this run (not those a resume found done) and
    only their own run time (not the workers' start-up): the mean run time of this run's
    cells, times the cells left, shared among the slots. A slot's first cell pays the
    worker's one-time warm-up (first model build, lazy imports, compilation), so it
    counts only until some slot has finished a second. Before any cell has finished, the
    running cells' own progress (steps, pixels) gives the ETA.
    """

    def __init__(
        self, total, already_done=0, title="matrix", live=None, slots=1, clock=None, quiet=False
    ):
        self.total, self.done, self.failed = total, already_done, 0
        self.title, self.slots = title, max(1, slots)
        self.clock = clock or time.monotonic
        self.start = self.last_output = self.clock()
        self.runtimes = []  # run time of each cell finished in this run, after a slot's first
        self.first_runtimes = []  # each slot's first cell: includes the worker's warm-up
        self._slots_seen = set()
        self.running = {}  # slot -> job id (one cell's id, or a batch's)
        self.sizes = {}  # job id -> its number of cells, where more than one
        self.parts = {}  # slot -> the running cell's last report: done, total, unit
        self.first_part = {}  # slot -> (when, done, cell id) of the cell's first report
        self.since = {}  # slot -> (cell id, when this driver first saw it running)
        self.quiet = quiet  # count, but print nothing (probes, checks that print their own)
        self.live = not quiet and (sys.stdout.isatty() if live is None else live)
        self._rich = None

    def _cell_eta(self):
        """Before any cell finished: the running cells' remaining time, from their own
        progress, plus the cells not started at the mean projected run time."""
        now, projected, left = self.clock(), [], []
        for slot, part in self.parts.items():
            if slot in self.since and part.get("done") and part.get("total"):
                spent = now - self.since[slot][1]
                rate = part["done"] / spent
                seen = self.first_part.get(slot)
                if seen and part["done"] > seen[1]:  # from the first report on: no start-up
                    rate = (part["done"] - seen[1]) / max(now - seen[0], 1e-9)
                left.append((part["total"] - part["done"]) / rate)
                projected.append((spent + left[-1]) / self.sizes.get(self.running[slot], 1))
        if not left:
            return None
        running = sum(self.sizes.get(job, 1) for job in self.running.values())
        waiting = max(0, self.total - self.done - running)
        return max(left) + sum(projected) / len(projected) * waiting / self.slots

    def eta(self):
        runtimes = self.runtimes or self.first_runtimes
        if not runtimes:
            return self._cell_eta()
        mean = sum(runtimes) / len(runtimes)
        return mean * (self.total - self.done) / min(self.slots, max(1, self.total - self.done))

    def __enter__(self):
        if self.live:
            from rich.live import Live

            self._rich = Live(self._render(), refresh_per_second=4, transient=False)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.update(self._render())
            self._rich.__exit__(*exc)

    def _render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        head = Text.assemble(
            (f"{self.title} ", "bold"),
            f"{self.done}/{self.total} done  ",
            (f"{self.failed} failed  ", "red" if self.failed else "dim"),
            f"elapsed {_fmt_eta(self.clock() - self.start)}  ETA {_fmt_eta(self.eta())}",
        )
        table = Table.grid(padding=(0, 2))
        for slot, cell in sorted(self.running.items()):
            table.add_row(Text(slot, "cyan"), cell, _fmt_part(self.parts.get(slot)))
        return Group(head, ProgressBar(total=max(self.total, 1), completed=self.done), table)

    def set_running(self, running, parts=None, sizes=None):
        """The jobs running now ({slot: job id}), their last reports ({slot: part}) and
        the number of cells of each batch ({job id: n})."""
        now = self.clock()
        self.running, self.sizes = dict(running), dict(sizes or {})
        self.since = {
            slot: self.since[slot] if self.since.get(slot, ("",))[0] == cell else (cell, now)
            for slot, cell in self.running.items()
        }
        self.parts = {s: p for s, p in (parts or {}).items() if s in self.running}
        for slot, part in self.parts.items():  # a cell's rate counts from its first report
            first = self.first_part.get(slot)
            if first is None or first[2] != self.running[slot]:
                self.first_part[slot] = (now, part["done"], self.running[slot])
        self.first_part = {s: f for s, f in self.first_part.items() if s in self.parts}
        if self._rich is not None:
            self._rich.update(self._render())
        elif self.running and not self.quiet and now - self.last_output >= HEARTBEAT_S:
            self._print(self.heartbeat())

    def heartbeat(self):
        """One line: cells done, elapsed, ETA, then each running cell and its progress."""
        now = self.clock()
        cells = []
        for slot, cell in sorted(self.running.items()):
            spent = now - self.since.get(slot, (cell, now))[1]
            part = _fmt_part(self.parts.get(slot))
            cells.append(f"{slot} {cell}" + (f" {part}" if part else "") + f", {spent:.0f} s")
        return (
            f"  ...     {self.title}: {self.done}/{self.total} cells done, elapsed "
            f"{_fmt_eta(now - self.start)}, ETA {_fmt_eta(self.eta())}; running: "
            + "; ".join(cells)
        )

    def _print(self, line):
        self.last_output = self.clock()
        if self._rich is not None:
            self._rich.console.print(line, highlight=False)
        else:
            print(line, flush=True)

    def finished(self, cell_id, status, runtime_s, slot, note="", share=1):
        """A cell ended after `runtime_s`; `share`: how many cells trained together in
        that time (a batch), so the ETA counts each cell's share of its slot's time."""
        if slot in self._slots_seen:
            self.runtimes.append(runtime_s / share)
        else:
            self._slots_seen.add(slot)
            self.first_runtimes.append(runtime_s / share)
        if status != "retry":
            self.done += 1
        self.failed += status == "failed"
        if self.quiet:
            return
        line = (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {status:<8} {cell_id}"
            f"  {runtime_s:.1f}s  ({slot})  ETA {_fmt_eta(self.eta())}{note}"
        )
        self._print(line)
        if self._rich is not None:
            self._rich.update(self._render())
