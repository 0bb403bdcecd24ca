"""Run a command, passing its output through, and never stay silent for long.

    python3 scripts/heartbeat.py WHAT COMMAND [ARG...]

Prints `  SETUP   still WHAT (elapsed)` whenever the command has printed nothing for
30 s (pip is silent while it unpacks and installs a large wheel such as torch). Exits
with the command's status. Standard library only: it runs before .venv exists.
"""

import subprocess
import sys
import threading
import time

QUIET_S = 30.0


def main():
    what, command = sys.argv[1], sys.argv[2:]
    start = last = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = threading.Event()

    def beat():
        nonlocal last
        while not done.wait(1.0):
            now = time.monotonic()
            if now - last >= QUIET_S:
                spent = int(now - start)
                print(f"  SETUP   still {what} ({spent // 60}m{spent % 60:02d}s)", flush=True)
                last = now

    threading.Thread(target=beat, daemon=True).start()
    for line in iter(proc.stdout.readline, b""):
        last = time.monotonic()
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    done.set()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
