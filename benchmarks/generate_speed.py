"""How fast are melodies sampled from the prior? Prints figures, asserts nothing.

    .venv/bin/python benchmarks/generate_speed.py [--model results/default/training/model.pt] [--n 1000]

Times ``inference.sample_melodies`` for ``--n`` melodies at each temperature of notebook 04 (greedy
too), on the device chosen at run time. Without a trained model at ``--model`` it times a freshly
initialised model of the study's size (the same computation). The study's goal: 1,000 melodies in
under 10 s on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from musicvae_lib import generate, inference, model, training

GOAL_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("results/default/training/model.pt"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model.exists():
        vae, origin = training.load_model(args.model), str(args.model)
    else:
        torch.manual_seed(0)
        vae, origin = model.MusicVAE(model.preset("study")), "untrained 'study' preset"
    device = next(vae.parameters()).device
    print(f"model: {origin}; device: {device}; torch threads: {torch.get_num_threads()}")
    for temperature in (0.0, *generate.DEFAULT_TEMPERATURES):
        seconds = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            inference.sample_melodies(vae, args.n, temperature, seed=repeat)
            seconds.append(time.perf_counter() - started)
        best = min(seconds)
        print(
            f"{generate.set_name(temperature):>7}: {args.n:,} melodies in {best:.2f} s (best of {args.repeats}), "
            f"{args.n / best:,.0f} melodies/s; goal {args.n:,} in < {GOAL_SECONDS:g} s: "
            f"{'met' if best < GOAL_SECONDS else 'missed'}"
        )


if __name__ == "__main__":
    main()
