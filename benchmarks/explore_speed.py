"""How fast does the explorer (notebook 08) answer a change? Prints figures, asserts nothing.

    .venv/bin/python benchmarks/explore_speed.py [--run-dir results/default] [--rounds 5] [--busy 2]

Builds ``explore.ExplorerPanel`` on the run's model and moves its controls as a user would (``panel.moves``: melody A,
melody B, A -> B, temperature, seed, each attribute slider), away and back ``--rounds`` times, timing each
change from the control's move to the drawn result (``panel.seconds``: decoding, notation, piano
roll, audio, attribute table, and for a new A or B its own view). ``--busy N`` starts N processes
that spin for the whole run, so that the figures are those of a loaded machine (the issue's
setting: 2 loaded cores). For contrast it times one decode of the same point with torch's default
thread count, where the explorer uses ``explore.DECODE_THREADS``. The goal: a change in <= 0.3 s
on 2 loaded cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from musicvae_lib import explore

GOAL_SECONDS = 0.3


def spin(seconds: float) -> None:
    """Keep one core busy for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("results/default"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, help="processes that spin while the benchmark runs")
    parser.add_argument("--attribute-windows", type=int, default=2000)
    args = parser.parse_args()
    explorer = explore.load_explorer(args.run_dir, args.attribute_windows)
    panel = explore.ExplorerPanel(explorer)  # never keeps: the default keep folder is not written
    print(
        f"run: {args.run_dir}; CPU: {cpu_name()}, {multiprocessing.cpu_count()} cores; busy processes: {args.busy}; "
        f"torch threads: {torch.get_num_threads()} by default, {explore.DECODE_THREADS} while the explorer decodes"
    )
    spinners = [multiprocessing.Process(target=spin, args=(3600.0,), daemon=True) for _ in range(args.busy)]
    for process in spinners:
        process.start()
    try:
        time.sleep(0.5 if spinners else 0.0)
        seconds: dict[str, list[float]] = {}
        for round_number in range(args.rounds):  # away, back, away, ...: every move changes its control
            latency = panel.time_moves(panel.moves(away=round_number % 2 == 0))
            for label, milliseconds in zip(latency["control"], latency["milliseconds"]):
                seconds.setdefault(label, []).append(milliseconds / 1000)
        everything = [s for values in seconds.values() for s in values]
        for label, values in seconds.items():
            print(
                f"{label:>36}: median {statistics.median(values) * 1000:6.0f} ms, slowest {max(values) * 1000:6.0f} ms"
            )
        median = statistics.median(everything)
        print(
            f"one change: median {median:.3f} s, slowest {max(everything):.3f} s over {len(everything)} changes; "
            f"goal <= {GOAL_SECONDS} s: {'met' if median <= GOAL_SECONDS else 'missed'} (median)"
        )
        z = panel.decoded.z
        for threads in (torch.get_num_threads(), explore.DECODE_THREADS):
            times = []
            for repeat in range(args.rounds):
                with explore.torch_threads(threads):
                    started = time.perf_counter()
                    explore.inference.decode_latents(explorer.model, np.asarray(z)[None], 0.5, repeat)
                    times.append(time.perf_counter() - started)
            print(
                f"one decode alone on {threads} torch thread(s): median {statistics.median(times) * 1000:.0f} ms, "
                f"slowest {max(times) * 1000:.0f} ms"
            )
    finally:
        for process in spinners:
            process.terminate()


if __name__ == "__main__":
    main()
