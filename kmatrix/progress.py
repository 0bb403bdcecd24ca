"""Progress: a live rich display on a terminal, plain log lines otherwise."""

import sys
import time


def _fmt_eta(seconds):
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """done/total, failures, the cell running on each slot and an ETA.

    The ETA counts only cells finished in this run (not those a resume found done) and
    only their own run time (not the workers' start-up): the mean run time of this run's
    cells, times the cells left, shared among the slots. A slot's first cell pays the
    worker's one-time warm-up (first model build, lazy imports, compilation), so it
    counts only until some slot has finished a second.
    """

    def __init__(self, total, already_done=0, title="matrix", live=None, slots=1, quiet=False):
        self.total, self.done, self.failed = total, already_done, 0
        self.title, self.slots = title, max(1, slots)
        self.start = time.time()
        self.runtimes = []  # run time of each cell finished in this run, after a slot's first
        self.first_runtimes = []  # each slot's first cell: includes the worker's warm-up
        self._slots_seen = set()
        self.running = {}
        self.quiet = quiet  # count, but print nothing (probes, checks that print their own)
        self.live = not quiet and (sys.stdout.isatty() if live is None else live)
        self._rich = None

    def eta(self):
        runtimes = self.runtimes or self.first_runtimes
        if not runtimes:
            return None
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
            f"elapsed {_fmt_eta(time.time() - self.start)}  ETA {_fmt_eta(self.eta())}",
        )
        table = Table.grid(padding=(0, 2))
        for slot, cell in sorted(self.running.items()):
            table.add_row(Text(slot, "cyan"), cell)
        return Group(head, ProgressBar(total=max(self.total, 1), completed=self.done), table)

    def set_running(self, running):
        self.running = dict(running)
        if self._rich is not None:
            self._rich.update(self._render())

    def finished(self, cell_id, status, runtime_s, slot, note=""):
        if slot in self._slots_seen:
            self.runtimes.append(runtime_s)
        else:
            self._slots_seen.add(slot)
            self.first_runtimes.append(runtime_s)
        if status != "retry":
            self.done += 1
        self.failed += status == "failed"
        if self.quiet:
            return
        line = (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {status:<8} {cell_id}"
            f"  {runtime_s:.1f}s  ({slot})  ETA {_fmt_eta(self.eta())}{note}"
        )
        if self._rich is not None:
            self._rich.console.print(line, highlight=False)
            self._rich.update(self._render())
        else:
            print(line, flush=True)

    def message(self, text):
        if self._rich is not None:
            self._rich.console.print(text, highlight=False)
        else:
            print(text, flush=True)
