"""Matrix commands behind the Makefile: run, plan, check, estimate, summary.

Usage: python scripts/matrix.py {run|plan|check|estimate|summary|repro-check|clean-results}
       [--force] [--config config.json] [--cell ID]
"""

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmatrix import config, driver, estimate, repro  # noqa: E402
from kmatrix.errors import ConfigError  # noqa: E402

COMMANDS = {
    "run": lambda cfg, a: driver.run_matrix(cfg, force=a.force),
    "plan": lambda cfg, a: driver.print_plan(cfg, full=a.full),
    "check": lambda cfg, a: driver.check_matrix(cfg, full=a.full),
    "estimate": lambda cfg, a: estimate.estimate(cfg),
    "summary": lambda cfg, a: driver.summary_only(cfg),
    "repro-check": lambda cfg, a: repro.repro_check(cfg, cell_id=a.cell),
    "clean-results": lambda cfg, a: driver.clean_results(cfg),
}


def _interrupt(signum, frame):
    """SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C: workers stop, temp dirs go."""
    raise KeyboardInterrupt


def _sigint_caught(pid):
    """Whether process `pid` catches SIGINT (Linux /proc); None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    except (OSError, ValueError):
        return None
    return None


def _follow_make_sigint():
    """`kill -INT <make's pid>` reaches make alone: GNU make forwards SIGTERM to its
    recipe, but on SIGINT it expects the terminal to have signalled the whole process
    group, so it drops its own handler and waits for us. Watch the parent for that drop
    and stop as on Ctrl-C. (A parent that never caught SIGINT, such as a make started
    in the background, is not watched.)"""
    parent = os.getppid()
    if not _sigint_caught(parent):
        return

    def watch():
        while _sigint_caught(parent) and os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--force", action="store_true", help="reuse a results dir (FORCE=1)")
    parser.add_argument("--config", default="config.json", help="typed configuration to use")
    parser.add_argument("--cell", default=None, help="repro-check this cell (default: first)")
    parser.add_argument("--full", action="store_true", help="plan, check: every cell (FULL=1)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    _follow_make_sigint()
    args.cell = args.cell or os.environ.get("KMATRIX_ARG") or None  # make repro-check CELL=
    try:
        return COMMANDS[args.command](config.load(args.config), args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only directory: say where, keep what is done
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        print("  finished cells are kept; fix this and run the command again", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are kept; `make` resumes the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
