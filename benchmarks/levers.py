"""Which training lever makes the study's generator pass for real? Trains each at equal steps and scores both sides.

    .venv/bin/python benchmarks/levers.py [--run-dir results/default] [--steps 3000] [--variants study transpose5 ...]

Every variant is notebook 03's training as ``--profile`` sets it (sizes, recipe, schedule: ``train_study``), from the
same seed (the profile's, or ``--training-seed``: a second seed measures the training's own noise) on the run
folder's training split, with ``max_steps = --steps`` for all (equal budgets; the default
profile's own budget is 13,203) and the variant's lever on top:

- ``study``: none; ``transpose<N>``: every training batch shifted by up to +-N semitones (``transpose_semitones``);
- ``input_dropout<p>``: Bowman et al. 2016's word dropout, each decoder input blanked with probability p
  (``decoder_input_dropout``): the decoder has to lean on z;
- ``beta<b>``: Magenta's annealed KL weight ending at b instead of 0.2 (annealed as (1 - 0.99999^step) * b, so it
  reaches only 3% of b by step 3,000 and 12% by the default budget's end);
- ``fixedbeta<b>``: Magenta's form with the KL weight b from the first step (no annealing);
- ``thesis<n>``: the thesis' form, beta 1 * max(KL, lambda) with lambda = n bits per window: the KL held near n bits.
  These three are the KL / accuracy trade-off itself.

Trained variants are kept in ``--out/<variant>`` (resumable; a finished one is loaded). Each is then scored:

- reconstruction on the first ``--eval-windows`` test windows: greedy accuracy (z = mu), Magenta's evaluation
  accuracy (z sampled from q(z|x), the paper's column) and the KL in bits per window;
- its generator as the study makes it: the neighbour blend over its own training posteriors, the knobs chosen on
  ``--choice-melodies`` validation melodies among the profile's candidates (``prior_choice.choose_blend``);
- that generator's melodies at T = 1 scored as ``benchmarks/generator.py`` scores a density (its ``Scorer``):
  two-sample AUC against validation and test melodies, precision and recall, copies, nearest-neighbour novelty.

One row per variant: a point of the frontier (two-sample AUC against reconstruction accuracy and novelty). Prints one
table with this machine's CPU, asserts nothing; ``--csv`` also writes it. One thread by default (a shared machine).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from generator import (
    COLUMNS,
    Scorer,
    add_scoring_options,
    draw_sets,
    load_splits,
    machine,
    show_table,
)  # benchmarks/, beside this

from musicvae_lib import evaluate, prior, prior_choice, train_study
from musicvae_lib.loss_config import NATS_PER_BIT
from musicvae_lib.training import train_or_load

LEVERS: dict[str, Callable[[str], dict[str, Any]]] = {  # name pattern -> notebook 03 parameters from its number
    r"transpose(\d+)": lambda n: {"transpose_semitones": int(n)},
    r"input_dropout([\d.]+)": lambda p: {"decoder_input_dropout": float(p)},
    r"beta([\d.]+)": lambda b: {"beta": float(b)},
    r"fixedbeta([\d.]+)": lambda b: {"beta": float(b), "beta_rate": 0.0},
    r"thesis([\d.]+)": lambda bits: {
        "recipe": "thesis",
        "beta": 1.0,
        "free_nats": float(bits) * NATS_PER_BIT,
        "kl_form": "thesis",
    },
}
DEFAULT_VARIANTS = ["study", "transpose5", "input_dropout0.25"]


def lever(name: str) -> dict[str, Any]:
    """The notebook 03 parameters variant ``name`` sets over the profile's; ValueError for a name of no lever."""
    if name == "study":
        return {}
    for pattern, parameters in LEVERS.items():
        if match := re.fullmatch(pattern, name):
            return parameters(match.group(1))
    raise argparse.ArgumentTypeError(f"{name!r} is no variant: 'study', or one of {', '.join(LEVERS)}")


def variant_name(name: str) -> str:
    """``name`` if it names a variant (argparse's check of --variants)."""
    lever(name)
    return name


def variant_parameters(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Notebook 03's parameters for variant ``name``: the profile's, the equal step budget, the lever."""
    overrides = [f"max_steps={args.steps}", "max_minutes=0.0"]
    if args.training_seed is not None:
        overrides.append(f"seed={args.training_seed}")
    overrides += [f"{key}={value!r}" for key, value in lever(name).items()]
    parameters = train_study.profile_parameters(args.profile, overrides, Path("notebooks"), Path("results/local"))
    return parameters | {"run_dir": str(args.run_dir)}  # the configs read the run folder's dataset (window length)


def score_variant(args: argparse.Namespace, name: str, splits: dict, scorer: Scorer) -> dict[str, Any]:
    """Train (or load) variant ``name`` and return its row (module docstring)."""
    parameters = variant_parameters(args, name)
    model_config, loss_config, train_config, _ = train_study.parameter_configs(parameters)
    folder = args.out / name
    started = time.perf_counter()
    result = train_or_load(model_config, loss_config, train_config, splits["train"], splits["valid"], folder, "cpu")
    model = result.model
    reconstruction = evaluate.evaluate(model, splits["test"][: args.eval_windows], seed=args.seed)
    mu, sigma = prior.training_codes(folder, model, splits["train"])
    candidates = prior_choice.candidate_knobs(
        parameters["blend_neighbours"], parameters["blend_shares"], parameters["blend_scales"]
    )
    pairs = parameters["blend_pairs"] or len(mu)
    choice = prior_choice.choose_blend(
        model, mu, sigma, splits["train"], splits["valid"], candidates, pairs, args.choice_melodies, args.seed
    )
    row = {
        "variant": name,
        "steps": result.steps,
        "greedy": reconstruction.greedy_accuracy,
        "magenta_eval": reconstruction.posterior_sampling_accuracy,
        "kl_bits": reconstruction.kl_bits,
        "generator": choice.knobs.label(),
        **scorer.score(draw_sets(model, choice.blend, args.samples, args.seed)),
    }
    print(
        f"{name}: {result.steps} steps, greedy {row['greedy']:.3f}, Magenta eval {row['magenta_eval']:.3f}, "
        f"KL {row['kl_bits']:.0f} bits; {row['generator']}: valid AUC {row['valid_auc']:.3f}, test AUC "
        f"{row['test_auc']:.3f} ({row['test_auc_low']:.3f}-{row['test_auc_high']:.3f}), copies "
        f"{row['test_copies_transposed']:.1%} ({(time.perf_counter() - started) / 60:.1f} min)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", help="the profile whose notebook 03 training each variant is")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps, the same for every variant")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, type=variant_name)
    parser.add_argument("--eval-windows", type=int, default=2000, help="test windows reconstructed")
    parser.add_argument("--choice-melodies", type=int, default=1000, help="validation melodies the blend is chosen on")
    parser.add_argument(
        "--training-seed", type=int, default=None, help="notebook 03's seed (weights, batches); default the profile's"
    )
    parser.add_argument("--out", type=Path, default=Path("results/local/levers"))
    add_scoring_options(parser)
    args = parser.parse_args()
    splits = load_splits(args)
    print(
        f"{machine(args, splits)}; profile {args.profile}, {args.steps} steps a variant, training seed "
        f"{variant_parameters(args, 'study')['seed']}; "
        f"{args.samples} melodies a set at T = 1",
        flush=True,
    )
    scorer = Scorer(splits, args.samples, args.seed, args.max_reference)
    rows = scorer.reference_rows()
    rows += [score_variant(args, name, splits, scorer) for name in args.variants]
    columns = ["variant", "steps", "greedy", "magenta_eval", "kl_bits", "generator", *COLUMNS[2:]]
    table = pd.DataFrame(rows, columns=columns).set_index("variant")
    show_table(table, args.csv)


if __name__ == "__main__":
    main()
