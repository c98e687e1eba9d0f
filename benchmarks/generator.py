"""Which generator makes melodies that pass for real without copying? Fits each variant over one trained model.

    .venv/bin/python benchmarks/generator.py [--run-dir results/default] [--samples 1000] [--variants normal ...]

For the run folder's model (``training/model.pt``), splits (``dataset/``) and fitted mixture
(``prior/mixture.npz``), each variant is a density over z; melodies are its draws decoded at
temperature 1. Every variant gets the same seeds, and its fitting is timed on this machine.

Variants:
- ``normal``: N(0, I); ``mixture``: the 32-component mixture as notebook 03 fitted it (loaded, not
  refitted); ``mixture_s0.7``: that mixture at spread 0.7 (the study's prior today);
- ``qz_s<k>``: the training windows' aggregate posterior q(z) with every sigma times k (k = 1:
  z ~ q(z|x) of a random training window; it is known to copy); ``_cap1``: no sigma widened beyond 1;
- ``pca64_gmm16``: a 16-component full-covariance mixture over the first 64 principal components
  of posterior SAMPLES of the training windows (one each), independent Gaussians over the rest;
- ``flow_pca64``: a normalizing flow (Real NVP, ``musicvae_lib.latent_flow``) fitted to posterior samples of the
  training windows in their first 64 principal components, independent Gaussians over the rest; ``_t0.8``: its
  noise times 0.8 (a lower temperature of the density, not of the decoder);
- ``between_k<k>_t<t>_s<s>``: the posterior of a random training window, its sigma times s, moved a
  share t of the way towards one of its k nearest other training windows (the study's ``prior.neighbour_blend``);
- ``lc_<base>_l<lambda>``: latent constraints (``musicvae_lib.latent_constraints``): a critic
  over z trained on posterior samples of the training windows against draws of the base variant's
  density, an actor moving base draws to where the critic says real, distance penalty weight lambda.

Each variant's figures, two sets of ``--samples`` melodies, one drawn for each split:
- valid: classifier two-sample AUC with its 95% interval against as many validation melodies
  (``two_sample.two_sample_test``), copies of a training window up to transposition and
  closer_than (P(nearest-training distance < a validation melody's)): what a knob is chosen on;
- test (report only): the AUC against test melodies, k-NN precision and recall
  (``two_sample.precision_recall``), exact copies and copies up to transposition, the median
  distance to the nearest training window and closer_than against the test melodies.
Reference rows: the validation and test melodies themselves (their copies and distances), and a
training sample (its AUC is the floor: two real sets from different tunes).

The chosen variant: the lowest validation AUC among variants whose validation draws copy no more
often than the validation melodies (up to transposition) and lie no closer to training
(closer_than <= 0.5); the lowest validation AUC overall when none qualifies.
Prints one table, asserts nothing; ``--csv`` also writes it. Use one thread on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from musicvae_lib import data, inference, latent_constraints, latent_flow, prior, runner, two_sample
from musicvae_lib.inference import LatentDensity
from musicvae_lib.latent_constraints import AggregatePosterior, ConstraintConfig, PosteriorCodes
from musicvae_lib.model import MusicVAE
from musicvae_lib.originality import copy_mask
from musicvae_lib.run_folder import PRIOR_MIXTURE
from musicvae_lib.training.checkpoint import load_model

TEMPERATURE = 1.0
COLUMNS = [  # of the printed table, after the variant
    "fit_s",
    "fit_cpu_s",
    "valid_auc",
    "valid_auc_low",
    "valid_auc_high",
    "valid_copies",
    "valid_closer",
    "test_auc",
    "test_auc_low",
    "test_auc_high",
    "test_precision",
    "test_recall",
    "test_copies_exact",
    "test_copies_transposed",
    "test_nn_median",
    "test_closer",
]


@dataclasses.dataclass
class Context:
    """What the variants are fitted from: the model, the training windows' posterior codes, the study's mixture."""

    model: MusicVAE
    codes: PosteriorCodes
    mixture: prior.LatentMixture
    config: ConstraintConfig
    seed: int
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # variant -> what its fitting reported


def latent_constraint(base_variant: str, lambda_dist: float) -> Callable[[Context, str], LatentDensity]:
    """A variant factory: the actor fitted over the density of variant ``base_variant`` with ``lambda_dist``."""

    def fit(context: Context, name: str) -> LatentDensity:
        base = VARIANTS[base_variant](context, name)
        config = dataclasses.replace(context.config, lambda_dist=lambda_dist)
        fitted = latent_constraints.fit_latent_constraint(context.codes, base, config, context.seed)
        h = fitted.history
        context.notes[name] = (
            f"critic accuracy {h.critic_accuracy_before_actor:.3f} before the actor, {h.critic_accuracy_end:.3f} at "
            f"the end; mean logit {h.logit_drawn:+.2f} drawn -> {h.logit_moved:+.2f} moved; "
            f"mean squared move {h.squared_move:.3f} per dimension"
        )
        return fitted.prior

    return fit


@dataclasses.dataclass(frozen=True)
class PcaMixture:
    """A full-covariance Gaussian mixture over the first principal components of z, independent Gaussians over the rest.

    z = mean + y @ components, y [n, z_size] the principal coordinates: y[:, :d] from ``mixture``, y[:, d:] from
    N(0, ``rest_variances``) (principal coordinates are uncorrelated over the fitted set).
    """

    mean: np.ndarray  # [z_size]
    components: np.ndarray  # [z_size, z_size], rows the principal axes
    mixture: GaussianMixture  # over the first d coordinates
    rest_variances: np.ndarray  # [z_size - d]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.mixture.means_.shape[1]
        chosen = rng.choice(len(self.mixture.weights_), size=n, p=self.mixture.weights_)
        noise = rng.standard_normal((n, d))
        cholesky = np.linalg.cholesky(self.mixture.covariances_)  # (k, d, d)
        head = self.mixture.means_[chosen] + np.einsum("nij,nj->ni", cholesky[chosen], noise)  # (n, d)
        tail = np.sqrt(self.rest_variances) * rng.standard_normal((n, len(self.rest_variances)))
        return (self.mean + np.concatenate([head, tail], axis=1) @ self.components).astype(np.float32)


def pca_mixture(dims: int, components: int) -> Callable[[Context, str], LatentDensity]:
    """A variant factory: ``PcaMixture`` fitted to one posterior SAMPLE of each training window (not to mu)."""

    def fit(context: Context, name: str) -> LatentDensity:
        samples = context.codes.sample(len(context.codes.mu), np.random.default_rng(context.seed)).astype(np.float64)
        pca = PCA(random_state=context.seed).fit(samples)
        coordinates = pca.transform(samples)
        mixture = GaussianMixture(components, covariance_type="full", max_iter=200, random_state=context.seed)
        mixture.fit(coordinates[:, :dims])
        kept = pca.explained_variance_ratio_[:dims].sum()
        context.notes[name] = f"{dims} components keep {kept:.1%} of the samples' variance"
        return PcaMixture(pca.mean_, pca.components_, mixture, coordinates[:, dims:].var(axis=0))

    return fit


def flow(dims: int, temperature: float) -> Callable[[Context, str], LatentDensity]:
    """A variant factory: ``latent_flow.fit_flow``, a Real NVP over the first ``dims`` principal components of the
    training windows' posterior samples, drawn with its noise times ``temperature``."""

    def fit(context: Context, name: str) -> LatentDensity:
        fitted = latent_flow.fit_flow(context.codes, latent_flow.FlowConfig(dims=dims), context.seed)
        h = fitted.history
        context.notes[name] = (
            f"held-out NLL {h.held_out_nll:.3f} nats a dimension against {h.gaussian_nll:.3f} for the whitened "
            f"Gaussian (training {h.train_nll_end:.3f})"
        )
        return dataclasses.replace(fitted, temperature=temperature)

    return fit


def neighbour_blend(k: int, t: float, sigma_scale: float) -> Callable[[Context, str], LatentDensity]:
    """A variant factory: the study's ``prior.neighbour_blend`` with one pair per training window (notebook 03 keeps
    ``blend_pairs`` of them)."""

    def fit(context: Context, name: str) -> LatentDensity:
        knobs = prior.BlendKnobs(k, t, sigma_scale)
        return prior.neighbour_blend(context.codes.mu, context.codes.sigma, knobs, len(context.codes.mu), context.seed)

    return fit


# name -> factory(context, name) -> density
VARIANTS: dict[str, Callable[[Context, str], LatentDensity]] = {
    "normal": lambda context, name: prior.standard_normal(context.codes.z_size),
    "mixture": lambda context, name: context.mixture,
    "mixture_s0.7": lambda context, name: context.mixture.with_spread(0.7),
    "qz_s1": lambda context, name: AggregatePosterior(context.codes, 1.0),
    "qz_s1.5": lambda context, name: AggregatePosterior(context.codes, 1.5),
    "qz_s1.75": lambda context, name: AggregatePosterior(context.codes, 1.75),
    "qz_s2": lambda context, name: AggregatePosterior(context.codes, 2.0),
    "qz_s2_cap1": lambda context, name: AggregatePosterior(context.codes, 2.0, max_sigma=1.0),
    "pca64_gmm16": pca_mixture(64, 16),
    "flow_pca64": flow(64, 1.0),
    "flow_pca64_t0.8": flow(64, 0.8),
    "between_k3_t0.5_s1": neighbour_blend(3, 0.5, 1.0),
    "between_k1_t0.5_s1": neighbour_blend(1, 0.5, 1.0),
    "between_k1_t0.5_s1.25": neighbour_blend(1, 0.5, 1.25),
    "lc_normal_l0.1": latent_constraint("normal", 0.1),
    "lc_normal_l1": latent_constraint("normal", 1.0),
    "lc_normal_l10": latent_constraint("normal", 10.0),
    "lc_mixture_l0.1": latent_constraint("mixture", 0.1),
    "lc_qz_s2_l1": latent_constraint("qz_s2", 1.0),
    "lc_qz_s2_cap1_l1": latent_constraint("qz_s2_cap1", 1.0),
    "lc_between_k1_t0.5_s1.25_l1": latent_constraint("between_k1_t0.5_s1.25", 1.0),
    "lc_between_k1_t0.5_s1.25_l10": latent_constraint("between_k1_t0.5_s1.25", 10.0),
}


class Scorer:
    """The figures of one set of melodies per split, against fixed real samples of validation and test."""

    def __init__(self, splits: dict[str, np.ndarray], n: int, seed: int, max_reference: int | None):
        rng = np.random.default_rng(seed)
        self.train = splits["train"]
        self.real = {
            split: splits[split][np.sort(rng.choice(len(splits[split]), min(n, len(splits[split])), replace=False))]
            for split in ("valid", "test")
        }
        self.seed, self.max_reference = seed, max_reference
        self.distances = {split: self.nearest(windows) for split, windows in self.real.items()}

    def nearest(self, windows: np.ndarray) -> np.ndarray:
        return two_sample.nearest_training_distance(windows, self.train, self.seed, self.max_reference)

    def copies(self, windows: np.ndarray) -> dict[str, float]:
        return {
            "copies_exact": float(copy_mask(windows, self.train, transposition_invariant=False).mean()),
            "copies_transposed": float(copy_mask(windows, self.train).mean()),
        }

    def reference_rows(self) -> list[dict]:
        """The real melodies of each split as rows: their copies and distances (no AUC)."""
        valid, test = self.copies(self.real["valid"]), self.copies(self.real["test"])
        return [
            {"variant": "valid melodies", "valid_copies": valid["copies_transposed"], "valid_closer": 0.5},
            {
                "variant": "test melodies",
                **{"test_" + key: value for key, value in test.items()},
                "test_nn_median": float(np.median(self.distances["test"])),
                "test_closer": 0.5,
            },
        ]

    def score(self, sets: dict[str, np.ndarray]) -> dict[str, float]:
        """Figures of ``sets`` ({"valid": windows, "test": windows}) as one row (see the module docstring)."""
        row: dict[str, float] = {}
        for split, windows in sets.items():
            tested = two_sample.two_sample_test(self.real[split], windows, self.seed)
            distances = self.nearest(windows)
            row |= {
                f"{split}_auc": tested.auc,
                f"{split}_auc_low": tested.low,
                f"{split}_auc_high": tested.high,
            }
            copies = self.copies(windows)
            if split == "valid":
                row |= {"valid_copies": copies["copies_transposed"]}
            else:
                fidelity = two_sample.precision_recall(self.real[split], windows)
                row |= {
                    "test_precision": fidelity.precision,
                    "test_recall": fidelity.recall,
                    **{"test_" + key: value for key, value in copies.items()},
                    "test_nn_median": float(np.median(distances)),
                }
            row[f"{split}_closer"] = two_sample.closer_than(distances, self.distances[split])
        return row


def draw_sets(model: MusicVAE, density: LatentDensity, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` melodies at T = 1 for each split, from seeds seed + 1 (valid) and seed + 2 (test)."""
    return {
        split: inference.sample_melodies(model, n, TEMPERATURE, seed + offset, prior=density)
        for offset, split in ((1, "valid"), (2, "test"))
    }


def chosen(table: pd.DataFrame, generators: list[str]) -> tuple[str, bool]:
    """The variant chosen on validation (module docstring) and whether it met the copy and distance conditions."""
    rows = table.loc[generators]
    limit = table.loc["valid melodies", "valid_copies"]
    eligible = rows[(rows["valid_copies"] <= limit) & (rows["valid_closer"] <= 0.5)]
    if len(eligible):
        return str(eligible["valid_auc"].idxmin()), True
    return str(rows["valid_auc"].idxmin()), False


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """The options every generator benchmark shares: the run folder, the sets' size and seed, threads, --csv."""
    parser.add_argument("--run-dir", type=Path, default=Path("results/default"))
    parser.add_argument("--samples", type=int, default=1000, help="melodies per set (generated and real)")
    parser.add_argument("--max-reference", type=int, default=None, help="training windows searched for novelty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=None)


def show_table(table: pd.DataFrame, csv: Path | None) -> None:
    """Print a benchmark's table (three decimals, wide) and write it to ``csv`` when given."""
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(float_format=lambda value: f"{value:.3f}"))
    if csv:
        table.to_csv(csv)


def machine(args: argparse.Namespace, splits: dict[str, np.ndarray]) -> str:
    """This machine's CPU, torch and its threads, the run folder and its training windows: every benchmark's head."""
    return (
        f"{runner.cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.run_dir}: "
        f"{len(splits['train'])} training windows"
    )


def load_splits(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The run folder's train, valid and test windows, after setting torch's threads from ``args``."""
    torch.set_num_threads(args.threads)
    return {split: data.load_split(args.run_dir, split) for split in ("train", "valid", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--critic-steps", type=int, default=ConstraintConfig.critic_steps)
    parser.add_argument("--actor-steps", type=int, default=ConstraintConfig.actor_steps)
    add_scoring_options(parser)
    args = parser.parse_args()
    splits = load_splits(args)
    model_path = args.run_dir / "training" / "model.pt"
    model = load_model(model_path, "cpu")
    started = time.perf_counter()
    codes = PosteriorCodes(*prior.training_codes(args.run_dir, model, splits["train"]))  # cached in the run folder
    encoding_s = time.perf_counter() - started
    config = ConstraintConfig(critic_steps=args.critic_steps, actor_steps=args.actor_steps)
    context = Context(model, codes, prior.load_latent_mixture(args.run_dir / PRIOR_MIXTURE), config, args.seed)
    print(
        f"{machine(args, splits)} encoded (or read from prior/codes.npz) in {encoding_s:.0f} s "
        f"(sigma_bar {codes.sigma_bar:.3f}); "
        f"{args.samples} melodies a set at T = {TEMPERATURE:g}; {config}",
        flush=True,
    )
    scorer = Scorer(splits, args.samples, args.seed, args.max_reference)
    rows = scorer.reference_rows()
    rng = np.random.default_rng(args.seed)
    training_sample = splits["train"][rng.choice(len(splits["train"]), args.samples, replace=False)]
    rows.append({"variant": "training sample", **scorer.score({"valid": training_sample, "test": training_sample})})
    for name in args.variants:
        started, cpu_started = time.perf_counter(), time.process_time()
        density = VARIANTS[name](context, name)
        fit_s, fit_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        row = {
            "variant": name,
            "fit_s": fit_s,
            "fit_cpu_s": fit_cpu_s,
            **scorer.score(draw_sets(model, density, args.samples, args.seed)),
        }
        rows.append(row)
        note = f" [{context.notes[name]}]" if name in context.notes else ""
        print(
            f"{name}: fitted in {fit_s:.0f} s ({fit_cpu_s:.0f} CPU s), "
            f"total {time.perf_counter() - started:.0f} s{note}",
            flush=True,
        )
    table = pd.DataFrame(rows, columns=["variant", *COLUMNS]).set_index("variant")
    show_table(table, args.csv)
    name, qualified = chosen(table, args.variants)
    row = table.loc[name]
    print(
        f"chosen on validation: {name} (valid AUC {row['valid_auc']:.3f}"
        + ("" if qualified else "; no variant copies as little as the validation melodies: lowest AUC overall")
        + f"); its test AUC {row['test_auc']:.3f} ({row['test_auc_low']:.3f}-{row['test_auc_high']:.3f}), "
        f"copies {row['test_copies_exact']:.1%} exact, {row['test_copies_transposed']:.1%} up to transposition, "
        f"closer_than_test {row['test_closer']:.3f}"
    )


if __name__ == "__main__":
    main()
