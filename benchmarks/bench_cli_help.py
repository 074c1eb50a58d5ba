"""Start-up time of the command line: ``distillguard --help`` with lazy command modules, next to
the eager start-up it replaced (every command module imported before the help is printed) and
to a bare interpreter (``python -c pass``: the floor that no command line can go under).

Both run as fresh interpreters, interleaved, ``--repeat`` times each; the script prints the
median, the minimum and the maximum wall time of each, the median CPU time (user + system,
less sensitive to other load on the machine), and the modules the lazy help imported.
Target: ``distillguard --help`` under 0.5 s (issue 25).

    python benchmarks/bench_cli_help.py             # 15 runs each
    python benchmarks/bench_cli_help.py --quick     # 5 runs each
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

LAZY = "import sys; from distillguard.cli.main import main; sys.exit(main(['--help']))"
EAGER = (
    "import importlib, sys\n"
    "from distillguard.cli.main import SUBCOMMANDS, main\n"
    "for m in SUBCOMMANDS: importlib.import_module('distillguard.cli.' + m)\n"
    "sys.exit(main(['--help']))"
)
BARE = "pass"
COUNT = (
    "import sys; from distillguard.cli.main import main; main(['--help']);"
    "print(len([m for m in sys.modules if m.startswith('distillguard.cli.')]), file=sys.stderr)"
)


def _time(code: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one fresh interpreter running ``code``."""
    env = {**os.environ, "COLUMNS": "100"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 runs each")
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    lazy: list[tuple[float, float]] = []
    eager: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    _time(LAZY)  # warm the file cache and the bytecode
    _time(EAGER)
    for _ in range(repeat):
        bare.append(_time(BARE))
        lazy.append(_time(LAZY))
        eager.append(_time(EAGER))
    loaded = subprocess.run(
        [sys.executable, "-c", COUNT], check=True, capture_output=True, text=True
    ).stderr.strip()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for name, runs in (
        ("python -c pass (baseline)", bare),
        ("distillguard --help eager (before)", eager),
        ("distillguard --help lazy  (now)", lazy),
    ):
        wall = [w for w, _ in runs]
        cpu = [c for _, c in runs]
        print(
            f"{name}: wall median {statistics.median(wall):.3f} s "
            f"(min {min(wall):.3f}, max {max(wall):.3f}), CPU median "
            f"{statistics.median(cpu):.3f} s over {repeat} runs"
        )
    print(f"distillguard.cli.* modules imported by the lazy help: {loaded}")
    ok = statistics.median(w for w, _ in lazy) < 0.5
    print(f"target median < 0.5 s: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
