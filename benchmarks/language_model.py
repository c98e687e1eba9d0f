"""How realistic are melodies from a model with no z at all? The baseline of the generator frontier.

    .venv/bin/python benchmarks/language_model.py [--run-dir results/default] [--steps 13203] [--score-at 3000 6000]

Trains ``musicvae_lib.language_model.MelodyLanguageModel`` (the study's decoder, 2 x 256 units,
without the latent) on the run folder's training windows with the VAE's budget: the same steps
(the default profile's ``max_steps``), batch size, learning rate and cosine schedule. At each
``--score-at`` step and at the end it samples ``--samples`` melodies at T = 1 for each of the
validation and test splits and scores them exactly as ``benchmarks/generator.py`` scores a density
over z (its ``Scorer``: two-sample AUC, precision and recall, copies, nearest-neighbour novelty),
beside the validation NLL per step. Prints one row per scored step and the training time on this
machine; asserts nothing; ``--csv`` also writes the table. Use one thread on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from generator import (
    COLUMNS,
    TEMPERATURE,
    Scorer,
    add_scoring_options,
    load_splits,
    machine,
    show_table,
)  # benchmarks/, beside this

from musicvae_lib import language_model
from musicvae_lib.language_model import LanguageModelConfig, MelodyLanguageModel

DEFAULT_STEPS = 13_203  # profiles/default.toml: the VAE's max_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--score-at", type=int, nargs="*", default=[3000, 6000], help="steps scored before the end")
    add_scoring_options(parser)
    args = parser.parse_args()
    splits = load_splits(args)
    config = LanguageModelConfig(steps=args.steps)
    print(
        f"{machine(args, splits)}; {config}; {args.samples} melodies a set at T = {TEMPERATURE:g}",
        flush=True,
    )
    scorer = Scorer(splits, args.samples, args.seed, args.max_reference)
    rows: list[dict] = []
    started = time.perf_counter()
    scoring_s = 0.0
    score_at = {step for step in args.score_at if 0 < step < args.steps} | {args.steps}

    def score(step: int, model: MelodyLanguageModel) -> None:
        nonlocal scoring_s
        if step not in score_at:
            return
        scoring_started = time.perf_counter()
        sets = {
            split: language_model.sample_language_model(model, args.samples, TEMPERATURE, args.seed + offset)
            for offset, split in ((1, "valid"), (2, "test"))
        }
        row = {
            "variant": f"language model, {step} steps",
            "fit_s": scoring_started - started - scoring_s,
            "valid_nll": language_model.evaluate_nll(model, splits["valid"]),
            **scorer.score(sets),
        }
        rows.append(row)
        scoring_s += time.perf_counter() - scoring_started
        print(
            f"step {step}: {row['fit_s'] / 60:.1f} training minutes, valid NLL {row['valid_nll']:.3f} nats a step, "
            f"valid AUC {row['valid_auc']:.3f}, test AUC {row['test_auc']:.3f} "
            f"({row['test_auc_low']:.3f}-{row['test_auc_high']:.3f}), copies {row['test_copies_transposed']:.1%}, "
            f"closer {row['test_closer']:.3f}",
            flush=True,
        )

    language_model.train_language_model(splits["train"], config, args.seed, show_progress=False, after_step=score)
    table = pd.DataFrame(rows, columns=["variant", "valid_nll", *COLUMNS]).drop(columns=["fit_cpu_s"])
    table = table.set_index("variant")
    show_table(table, args.csv)


if __name__ == "__main__":
    main()
