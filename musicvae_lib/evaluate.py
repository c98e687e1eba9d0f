"""How well a MusicVAE reconstructs held-out windows (docs/evaluation.md A1-A4, and B3).

Every figure compares a decoding with the input window x, token by token on the 16th-note grid,
or note by note (A3). The decoder runs in one of three ways:

- teacher forced: the true previous token is fed in; the prediction at step t is the argmax of
  p(x_t | x_<t, z);
- free running: the decoder is fed its own previous token, chosen greedily (temperature 0) or
  sampled at temperature 1;
- Magenta's eval, the MusicVAE paper's "sampling" column: free running at temperature 1 with
  z ~ q(z|x), scoring the argmax of each step's logits (``posterior_sampling_accuracy``).

and z is one of: mu(x), the posterior mean; z ~ q(z|x) = mu + sigma * eps; the mu of another
window of the set ("shuffled"); or z ~ N(0, I), the prior. Comparing the last two with mu
shows how much the decoder relies on z (B3): a collapsed posterior makes no difference.

The accuracies are set beside the paper's Table 1 row of the run's melody length and decoder
(``paper_row``); ``decoder_comparison`` sets two models scored on the same windows side by side,
a hierarchical decoder and its flat baseline: does the conductor help?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from musicvae_lib.features import notes_of, notes_per_window
from musicvae_lib.inference import check_batch_size, inference, model_windows
from musicvae_lib.loss import NATS_PER_BIT, kl_per_dimension, reconstruction_nats
from musicvae_lib.model import MusicVAE
from musicvae_lib.representation import N_CLASSES, NO_EVENT, NOTE_OFF, STEPS_PER_BAR, check_tokens

# Roberts et al. 2018, "A Hierarchical Latent Vector Model for Learning Long-Term Structure in
# Music" (ICML), Table 1: reconstruction accuracy on their held-out test set, temperature 1, as
# (teacher forced, sampling), by melody length in bars and decoder. The 2-bar melody has a flat row only.
PAPER_ACCURACIES = {
    (2, "flat"): (0.986, 0.951),
    (16, "flat"): (0.883, 0.620),
    (16, "hierarchical"): (0.919, 0.812),
}
PAPER_SETTINGS = {
    2: "Magenta's cat-mel_2bar_big sizes: 2048-unit LSTMs and a 512-dimensional z",
    16: (
        "a 2-layer 2048-unit encoder and a 512-dimensional z "
        "(Magenta's hierdec-mel_16bar; conductor and bar decoder 1024 units)"
    ),
}
PAPER_DATA = "trained on ~1.5M MIDI files from the web, on a GPU"


@dataclass(frozen=True)
class PaperRow:
    """The row of the paper's Table 1 a run is set beside: its melody length and decoder, and its two accuracies."""

    bars: int
    decoder: str  # "flat" or "hierarchical"
    teacher_forced_accuracy: float
    sampling_accuracy: float

    @property
    def setting(self) -> str:
        row = f"Roberts et al. 2018, Table 1, {self.bars}-bar melody, {self.decoder} decoder"
        return f"{row}: {PAPER_DATA}, {PAPER_SETTINGS[self.bars]}"


def decoder_name(hierarchical: bool) -> str:
    """How the paper names a decoder: "hierarchical" (with a conductor) or "flat"."""
    return "hierarchical" if hierarchical else "flat"


def paper_row(bars: int, hierarchical: bool) -> PaperRow | None:
    """The paper's row for melodies of ``bars`` bars and this decoder; its flat row where it has no hierarchical one.

    None for a length the paper does not report (it reports 2 and 16 bars).
    """
    decoder = decoder_name(hierarchical)
    if (bars, decoder) not in PAPER_ACCURACIES:
        decoder = "flat"
    return PaperRow(bars, decoder, *PAPER_ACCURACIES[(bars, decoder)]) if (bars, decoder) in PAPER_ACCURACIES else None


def describe_paper_row(row: PaperRow | None, bars: int) -> str:
    """Where the paper stands, as part of a sentence: its two accuracies for this length and decoder, or none."""
    if row is None:
        return f"the paper reports no {bars}-bar melodies to compare with"
    return (
        f"the paper reports {row.teacher_forced_accuracy:.3f} and {row.sampling_accuracy:.3f} for {bars}-bar melodies "
        f"with its {row.decoder} decoder, a far larger model trained on about 1.5 million MIDI files on a GPU"
    )


def token_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Share of steps whose predicted token equals the target token; NaN if there is no step.

    predicted, target: integer arrays of the same shape (e.g. [n_windows, steps]). Magenta's
    ``metrics/accuracy`` (lstm_models.py, tf.metrics.accuracy over all steps of the set).
    """
    predicted, target = same_shape(predicted, target)
    return float(np.mean(predicted == target)) if target.size else float("nan")


def per_class_accuracy(predicted: np.ndarray, target: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Recall of each token class: float [n_classes]; NaN for a class absent from the targets.

    Entry c = #(steps with target c and prediction c) / #(steps with target c), over all steps.
    """
    predicted, target = same_shape(predicted, target)
    totals = np.bincount(target.ravel(), minlength=n_classes).astype(float)
    correct = np.bincount(target.ravel(), weights=(predicted == target).ravel(), minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, correct / totals, np.nan)


def mean_per_class_accuracy(per_class: np.ndarray) -> float:
    """Mean of per-class recalls over the classes present in the targets; NaN if none is present.

    per_class: float [n_classes] from ``per_class_accuracy`` (NaN = class absent).
    """
    present = per_class[~np.isnan(per_class)]
    return float(present.mean()) if present.size else float("nan")


def magenta_mean_per_class_accuracy(per_class: np.ndarray) -> float:
    """Mean of per-class recalls over ALL classes, an absent class counting 0; NaN if none is present.

    What Magenta logs as ``metrics/mean_per_class_accuracy``: tf.metrics.mean_per_class_accuracy
    divides with div_no_nan and averages over all ``num_classes`` (TF 1.x metrics_impl.py), so
    the 60-odd pitches a melody set never uses pull it towards 0. per_class: float [n_classes].
    """
    if np.isnan(per_class).all():
        return float("nan")
    return float(np.nan_to_num(per_class, nan=0.0).mean())


@dataclass(frozen=True)
class OnsetScores:
    """Note-level onset scores of an estimate against a reference, pooled over a set of windows."""

    precision: float  # matched / estimated notes; NaN if the estimate has no note
    recall: float  # matched / reference notes; NaN if the reference has no note
    f1: float  # 2 * matched / (reference + estimated notes); NaN if neither has a note
    n_reference: int
    n_estimate: int
    n_matched: int


def onset_f1(reference: np.ndarray, estimate: np.ndarray) -> OnsetScores:
    """Onset-only note precision, recall and F1 of ``estimate`` against ``reference``, pooled over the set.

    reference, estimate: token windows [n_windows, steps] (or one window [steps]), row i of one
    paired with row i of the other. An estimated note matches a reference note of the same window
    with the same onset step and the same pitch: on the grid the onset tolerance is zero steps,
    and offsets are ignored. A monophonic window has at most one onset per step, so each note
    matches at most once. Counts are pooled over all windows before dividing (not a mean of
    per-window F1). A side without notes gives NaN for the scores that divide by its count.
    """
    reference, estimate = same_shape(np.atleast_2d(reference), np.atleast_2d(estimate))
    steps = reference.shape[1]
    truth, guess = notes_of(reference), notes_of(estimate)
    _, truth_index, guess_index = np.intersect1d(
        truth.window * steps + truth.start_step,  # unique key of an onset position
        guess.window * steps + guess.start_step,
        assume_unique=True,
        return_indices=True,
    )
    matched = int(np.sum(truth.pitch_midi[truth_index] == guess.pitch_midi[guess_index]))
    n_reference, n_estimate = len(truth.start_step), len(guess.start_step)
    return OnsetScores(
        precision=matched / n_estimate if n_estimate else float("nan"),
        recall=matched / n_reference if n_reference else float("nan"),
        f1=2 * matched / (n_reference + n_estimate) if n_reference + n_estimate else float("nan"),
        n_reference=n_reference,
        n_estimate=n_estimate,
        n_matched=matched,
    )


def same_shape(predicted: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as integer arrays; ValueError if their shapes differ."""
    predicted, target = check_tokens(predicted), check_tokens(target)
    if predicted.shape != target.shape:
        raise ValueError(f"predictions and targets must have the same shape, got {predicted.shape} and {target.shape}")
    return predicted.astype(np.int64, copy=False), target.astype(np.int64, copy=False)


@dataclass(frozen=True)
class Reconstruction:
    """Reconstruction figures of a model on a set of windows. Accuracies are shares of steps in [0, 1]."""

    n_windows: int
    steps: int
    # A1, teacher forced with z = mu(x)
    teacher_forced_accuracy: float
    teacher_forced_mean_per_class_accuracy: float  # over the classes present in the targets
    teacher_forced_mean_per_class_accuracy_magenta: float  # over all 90 classes, as Magenta logs it
    per_class_accuracy: np.ndarray  # float [90], recall per token class; NaN where absent
    # A2, free running with z = mu(x)
    greedy_accuracy: float
    sampled_accuracy: float  # temperature 1, the sampled tokens scored
    # Magenta's eval (the paper's Table 1): z ~ q(z|x)
    posterior_teacher_forced_accuracy: float
    posterior_sampling_accuracy: float  # fed its own T = 1 samples, each step's argmax scored
    # float [n_windows], the same per window (its noise, for comparisons)
    posterior_sampling_window_accuracy: np.ndarray
    # A3, greedy reconstruction (z = mu) against the input
    onset: OnsetScores
    greedy_windows: np.ndarray  # uint8 [n_windows, steps], the greedy reconstructions
    # A4, the ELBO's parts; reconstruction is a one-sample estimate with z ~ q(z|x)
    reconstruction_nats: float  # cross-entropy summed over steps, mean over windows
    kl_per_dimension_bits: np.ndarray  # float [z_size], mean over windows
    kl_per_window_bits: np.ndarray  # float [n_windows], each window's KL summed over dimensions
    active_kl_bits: float  # threshold for kl_active_dimensions
    # B3, decoder reliance on z; NaN for shuffled z with fewer than 2 windows
    teacher_forced_accuracy_shuffled_z: float
    teacher_forced_accuracy_prior_z: float
    greedy_accuracy_shuffled_z: float
    greedy_accuracy_prior_z: float

    @property
    def nll_per_step_nats(self) -> float:
        """Teacher-forced negative log-likelihood per step, nats (z ~ q(z|x))."""
        return self.reconstruction_nats / self.steps

    @property
    def kl_bits(self) -> float:
        """KL(q(z|x) || N(0, I)) summed over dimensions, mean over windows, bits."""
        return float(self.kl_per_dimension_bits.sum())

    @property
    def kl_nats(self) -> float:
        return self.kl_bits * NATS_PER_BIT

    @property
    def elbo_nats(self) -> float:
        """Evidence lower bound per window, nats: -(reconstruction + KL); log p(x) >= ELBO."""
        return -(self.reconstruction_nats + self.kl_nats)

    @property
    def kl_active_dimensions(self) -> int:
        """Dimensions whose mean KL exceeds ``active_kl_bits`` (B1 counts active units by Var(mu) instead)."""
        return int(np.sum(self.kl_per_dimension_bits > self.active_kl_bits))

    def table(self) -> pd.DataFrame:
        """One row per scalar figure: metric, value, unit and its docs/evaluation.md id."""
        rows = [
            ("teacher-forced accuracy (z = mu)", self.teacher_forced_accuracy, "share of steps", "A1"),
            (
                "teacher-forced mean per-class accuracy (present classes)",
                self.teacher_forced_mean_per_class_accuracy,
                "mean recall",
                "A1",
            ),
            (
                "teacher-forced mean per-class accuracy (Magenta, all 90 classes)",
                self.teacher_forced_mean_per_class_accuracy_magenta,
                "mean recall",
                "A1",
            ),
            ("greedy accuracy (z = mu)", self.greedy_accuracy, "share of steps", "A2"),
            ("sampled accuracy (z = mu, T = 1)", self.sampled_accuracy, "share of steps", "A2"),
            ("teacher-forced accuracy (z ~ q)", self.posterior_teacher_forced_accuracy, "share of steps", "A1"),
            (
                "sampling accuracy (z ~ q, T = 1, Magenta's eval)",
                self.posterior_sampling_accuracy,
                "share of steps",
                "A2",
            ),
            ("onset precision (greedy)", self.onset.precision, "share of notes", "A3"),
            ("onset recall (greedy)", self.onset.recall, "share of notes", "A3"),
            ("onset F1 (greedy)", self.onset.f1, "share of notes", "A3"),
            ("NLL per step", self.nll_per_step_nats, "nats", "A4"),
            ("reconstruction", self.reconstruction_nats, "nats per window", "A4"),
            ("KL", self.kl_bits, "bits per window", "A4"),
            ("KL", self.kl_nats, "nats per window", "A4"),
            ("ELBO", self.elbo_nats, "nats per window", "A4"),
            (f"dimensions with KL > {self.active_kl_bits:g} bits", self.kl_active_dimensions, "dimensions", "A4"),
            ("teacher-forced accuracy (shuffled z)", self.teacher_forced_accuracy_shuffled_z, "share of steps", "B3"),
            ("teacher-forced accuracy (prior z)", self.teacher_forced_accuracy_prior_z, "share of steps", "B3"),
            ("greedy accuracy (shuffled z)", self.greedy_accuracy_shuffled_z, "share of steps", "B3"),
            ("greedy accuracy (prior z)", self.greedy_accuracy_prior_z, "share of steps", "B3"),
        ]
        return pd.DataFrame(rows, columns=["metric", "value", "unit", "evaluation_id"])


@dataclass(frozen=True)
class Decodings:
    """Per-window outputs of every decoding of a set: tokens int64 [n, steps], nats [n], KL nats [n, z]."""

    teacher_forced: np.ndarray  # argmax, z = mu
    teacher_forced_posterior: np.ndarray  # argmax, z ~ q
    teacher_forced_shuffled: np.ndarray
    teacher_forced_prior: np.ndarray
    greedy: np.ndarray
    greedy_shuffled: np.ndarray
    greedy_prior: np.ndarray
    sampled: np.ndarray  # T = 1 samples, z = mu
    posterior_sampling: np.ndarray  # argmax of the logits along a T = 1 trajectory, z ~ q
    reconstruction_nats: np.ndarray  # teacher forced, z ~ q
    kl_per_dimension_nats: np.ndarray


def evaluate(
    model: MusicVAE,
    windows: np.ndarray,
    batch_size: int = 256,
    seed: int = 0,
    active_kl_bits: float = 0.01,
) -> Reconstruction:
    """All reconstruction figures of ``model`` on ``windows`` (uint8 [n_windows, steps]).

    Runs under ``inference.inference`` (eval mode, no gradients, on the model's device, its mode
    restored after). The random draws (eps of z ~ q, prior z, the shuffle, temperature-1 samples)
    come from one torch.Generator seeded with ``seed`` on the model's device: the same seed,
    batch size and device give the same numbers.
    """
    tokens = model_windows(windows, model.config.steps)
    check_batch_size(batch_size)
    with inference(model) as device:
        generator = torch.Generator(device=device).manual_seed(seed)
        decodings = decode_set(model, tokens, device, batch_size, generator)
    return summarise(tokens.numpy(), decodings, active_kl_bits)


def cyclic_partner(n: int, generator: torch.Generator) -> Tensor:
    """For each of n windows another window's index: one random cycle through all, so none is its own (n >= 2)."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def decode_set(
    model: MusicVAE, tokens: Tensor, device: torch.device, batch_size: int, generator: torch.Generator
) -> Decodings:
    """Every decoding of ``tokens`` [n, steps] in batches. All z are drawn first: shuffling needs every mu."""
    mus, sigmas = zip(*(model.encode(batch.to(device)) for batch in tokens.split(batch_size)))
    mu, sigma = torch.cat(mus), torch.cat(sigmas)  # (n, z)
    z_posterior = mu + sigma * torch.randn(mu.shape, device=device, generator=generator)
    z_prior = torch.randn(mu.shape, device=device, generator=generator)
    z_shuffled = mu[cyclic_partner(len(mu), generator)]
    parts: dict[str, list[Tensor]] = {field.name: [] for field in fields(Decodings)}
    for rows in torch.arange(len(tokens)).split(batch_size):
        x = tokens[rows].to(device)
        zs = [mu[rows], z_posterior[rows], z_shuffled[rows], z_prior[rows]]
        # one decoder call per mode for all z of the batch: fewer, larger LSTM steps
        logits = model.decode_teacher_forced(torch.cat(zs), x.repeat(len(zs), 1)).chunk(len(zs))
        names = ("teacher_forced", "teacher_forced_posterior", "teacher_forced_shuffled", "teacher_forced_prior")
        for name, step_logits in zip(names, logits):
            parts[name].append(step_logits.argmax(-1))
        parts["reconstruction_nats"].append(reconstruction_nats(logits[1], x))
        greedy = model.decode(torch.cat([zs[0], zs[2], zs[3]]), temperature=0.0)[0].chunk(3)
        for name, decoded in zip(("greedy", "greedy_shuffled", "greedy_prior"), greedy):
            parts[name].append(decoded)
        sampled, sampled_logits = model.decode(torch.cat(zs[:2]), temperature=1.0, generator=generator)
        parts["sampled"].append(sampled.chunk(2)[0])
        parts["posterior_sampling"].append(sampled_logits.chunk(2)[1].argmax(-1))
        parts["kl_per_dimension_nats"].append(kl_per_dimension(mu[rows], sigma[rows]))
    return Decodings(**{name: torch.cat(values).cpu().numpy() for name, values in parts.items()})


def summarise(windows: np.ndarray, decodings: Decodings, active_kl_bits: float) -> Reconstruction:
    """The figures of a Reconstruction from the input windows [n, steps] and their decodings."""
    per_class = per_class_accuracy(decodings.teacher_forced, windows)
    nan = float("nan")
    has_partner = len(windows) >= 2
    return Reconstruction(
        n_windows=len(windows),
        steps=windows.shape[1],
        teacher_forced_accuracy=token_accuracy(decodings.teacher_forced, windows),
        teacher_forced_mean_per_class_accuracy=mean_per_class_accuracy(per_class),
        teacher_forced_mean_per_class_accuracy_magenta=magenta_mean_per_class_accuracy(per_class),
        per_class_accuracy=per_class,
        greedy_accuracy=token_accuracy(decodings.greedy, windows),
        sampled_accuracy=token_accuracy(decodings.sampled, windows),
        posterior_teacher_forced_accuracy=token_accuracy(decodings.teacher_forced_posterior, windows),
        posterior_sampling_accuracy=token_accuracy(decodings.posterior_sampling, windows),
        posterior_sampling_window_accuracy=(decodings.posterior_sampling == windows).mean(axis=1),
        onset=onset_f1(windows, decodings.greedy),
        greedy_windows=decodings.greedy.astype(np.uint8),
        reconstruction_nats=float(decodings.reconstruction_nats.mean()),
        kl_per_dimension_bits=decodings.kl_per_dimension_nats.mean(0) / NATS_PER_BIT,
        kl_per_window_bits=decodings.kl_per_dimension_nats.sum(1) / NATS_PER_BIT,
        active_kl_bits=active_kl_bits,
        teacher_forced_accuracy_shuffled_z=token_accuracy(decodings.teacher_forced_shuffled, windows)
        if has_partner
        else nan,
        teacher_forced_accuracy_prior_z=token_accuracy(decodings.teacher_forced_prior, windows),
        greedy_accuracy_shuffled_z=token_accuracy(decodings.greedy_shuffled, windows) if has_partner else nan,
        greedy_accuracy_prior_z=token_accuracy(decodings.greedy_prior, windows),
    )


def paper_comparison(result: Reconstruction, hierarchical: bool) -> pd.DataFrame:
    """Our teacher-forced and sampling accuracies beside the MusicVAE paper's Table 1 row of this length and decoder.

    Both ours are computed as Magenta's eval does, with z ~ q(z|x); the paper's come from a far
    larger model and data set (``PaperRow.setting``), so they are a ceiling, not a target. The
    row is chosen by ``paper_row``; a length the paper does not report gets NaN.
    """
    row = paper_row(result.steps // STEPS_PER_BAR, hierarchical)
    nan = float("nan")
    rows = [
        (
            "teacher-forced accuracy",
            result.posterior_teacher_forced_accuracy,
            row.teacher_forced_accuracy if row else nan,
            "argmax p(x_t | x_<t, z) with z ~ q(z|x), true previous tokens",
        ),
        (
            "sampling accuracy",
            result.posterior_sampling_accuracy,
            row.sampling_accuracy if row else nan,
            "argmax of each step's logits with z ~ q(z|x), fed its own samples at T = 1",
        ),
    ]
    table = pd.DataFrame(rows, columns=["metric", "ours", "paper", "definition"])
    table["paper_setting"] = row.setting if row else describe_paper_row(None, result.steps // STEPS_PER_BAR)
    return table


Z_USE_MIN = 0.05  # greedy accuracy with the own z above a shuffled z by less: the decoder barely reads z (B3)


@dataclass(frozen=True)
class ScoredModel:
    """One column of ``decoder_comparison``: a trained model's name (its preset), decoder and test figures."""

    name: str
    hierarchical: bool
    scores: Reconstruction

    @property
    def label(self) -> str:
        return f"{self.name} ({decoder_name(self.hierarchical)})"

    @property
    def z_use(self) -> float:
        """Greedy accuracy with the own z minus with a shuffled z: how much the decoder reads z (B3)."""
        return self.scores.greedy_accuracy - self.scores.greedy_accuracy_shuffled_z


def comparable(models: Sequence[ScoredModel]) -> int:
    """The bars of the models' test windows; ValueError unless there are two or more scored on the same windows."""
    if len(models) < 2:
        raise ValueError(f"need two or more models to compare, got {len(models)}")
    shapes = {(model.scores.n_windows, model.scores.steps) for model in models}
    if len(shapes) > 1:
        raise ValueError(f"the models must be scored on the same test windows, got (windows, steps) {sorted(shapes)}")
    return models[0].scores.steps // STEPS_PER_BAR


def decoder_comparison(models: Sequence[ScoredModel]) -> pd.DataFrame:
    """The models' test figures side by side, the paper's Table 1 rows of their length beside the two it reports.

    One row per figure: Magenta's eval (teacher-forced and sampling accuracy, z ~ q), greedy accuracy
    with the own z and with a shuffled one and their difference (how much each uses z), onset F1
    of the greedy reconstructions, teacher-forced recall of no-event steps, note-offs and note-ons
    (the mean over the pitches present), and the KL. A column per model (``ScoredModel.label``),
    then "paper, flat" and "paper, hierarchical" where the paper reports that decoder at this length.
    """
    bars = comparable(models)
    figures = {
        "teacher-forced accuracy (z ~ q)": lambda m: m.scores.posterior_teacher_forced_accuracy,
        "sampling accuracy (z ~ q, T = 1, Magenta's eval)": lambda m: m.scores.posterior_sampling_accuracy,
        "greedy accuracy (own z = mu)": lambda m: m.scores.greedy_accuracy,
        "greedy accuracy (shuffled z)": lambda m: m.scores.greedy_accuracy_shuffled_z,
        "use of z: greedy, own minus shuffled z": lambda m: m.z_use,
        "onset F1 (greedy)": lambda m: m.scores.onset.f1,
        "recall of no-event steps (teacher forced, z = mu)": lambda m: m.scores.per_class_accuracy[NO_EVENT],
        "recall of note-offs (teacher forced, z = mu)": lambda m: m.scores.per_class_accuracy[NOTE_OFF],
        "recall of note-ons, mean over pitches (teacher forced, z = mu)": lambda m: mean_per_class_accuracy(
            m.scores.per_class_accuracy[NOTE_OFF + 1 :]
        ),
        "KL, bits per window": lambda m: m.scores.kl_bits,
    }
    table = pd.DataFrame({"metric": list(figures)})
    for model in models:
        table[model.label] = [float(figure(model)) for figure in figures.values()]
    for decoder in ("flat", "hierarchical"):
        if (bars, decoder) in PAPER_ACCURACIES:
            table[f"paper, {decoder}"] = [*PAPER_ACCURACIES[(bars, decoder)], *[float("nan")] * (len(figures) - 2)]
    return table


def paired_difference(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Mean of ``first - second`` over paired windows and two standard errors of it (NaN for fewer than 2 windows)."""
    difference = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    error = 2 * difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) >= 2 else float("nan")
    return float(difference.mean()), float(error)


def describe_decoder_comparison(models: Sequence[ScoredModel]) -> str:
    """Whether the conductor helps (or which of two models reconstructs better),
    from Magenta's eval on the same windows.

    The difference in sampling accuracy counts only beyond two standard errors of its mean over
    the paired test windows; a model that barely reads z (``Z_USE_MIN``) decodes an average
    melody, so two such models show nothing about their decoders. One training seed each: the
    seeds' spread is not in the error.
    """
    bars = comparable(models)
    if len(models) != 2:
        raise ValueError(f"describes two models, got {len(models)}")
    first, second = models
    if second.hierarchical and not first.hierarchical:
        first, second = second, first  # the hierarchical first: the difference reads as what the conductor adds
    conductor = first.hierarchical != second.hierarchical
    mean, error = paired_difference(
        first.scores.posterior_sampling_window_accuracy, second.scores.posterior_sampling_window_accuracy
    )
    question = (
        f"Does the conductor help on {bars} bars?"
        if conductor
        else f"Does {first.name} reconstruct better than {second.name}?"
    )
    numbers = (
        f"In Magenta's eval (sampling accuracy, z ~ q) {first.label} scores "
        f"{first.scores.posterior_sampling_accuracy:.3f} and {second.label} "
        f"{second.scores.posterior_sampling_accuracy:.3f}, a difference of {mean:+.3f} (two standard errors over the "
        f"{first.scores.n_windows:,} test windows: {error:.3f})."
    )
    paper = ""
    if conductor and {(bars, "flat"), (bars, "hierarchical")} <= set(PAPER_ACCURACIES):
        hierarchical, flat = PAPER_ACCURACIES[(bars, "hierarchical")][1], PAPER_ACCURACIES[(bars, "flat")][1]
        paper = (
            f" The paper's hierarchical and flat decoders score {hierarchical:.3f} and {flat:.3f} on {bars}-bar "
            f"melodies ({hierarchical - flat:+.3f})."
        )
    if max(first.z_use, second.z_use) < Z_USE_MIN:
        verdict = (
            f"Neither model reads z (greedy with its own z beats a shuffled z by {first.z_use:.3f} and "
            f"{second.z_use:.3f}, under {Z_USE_MIN}): both decode an average melody, so this budget cannot show what "
            "the decoders do."
        )
    elif not np.isfinite(error) or abs(mean) <= error:
        verdict = (
            "The difference lies within what these test windows can tell apart: at this budget neither model "
            "is shown better."
        )
    elif not conductor:
        verdict = f"{(first if mean > 0 else second).name} reconstructs better, beyond the test windows' noise."
    elif mean > 0:
        verdict = "Yes: the hierarchical decoder reconstructs better, beyond the test windows' noise."
    else:
        verdict = "No: the flat decoder reconstructs better, beyond the test windows' noise."
    seeds = "Each model was trained with one seed; the spread between seeds is not measured."
    return f"{question} {numbers}{paper} {verdict} {seeds}"


ONSET_BIN_EDGES = (0, 5, 10, 14, 18)  # onsets per 2-bar window: bins 0-4, 5-9, 10-13, 14-17, 18 and more


def onset_bin_edges(steps: int) -> tuple[int, ...]:
    """``ONSET_BIN_EDGES`` scaled from 2-bar windows to windows of ``steps`` steps:
    a 16-bar window plays 8 times the notes."""
    scale = steps / (2 * STEPS_PER_BAR)
    return tuple(sorted({round(edge * scale) for edge in ONSET_BIN_EDGES}))


def accuracy_by_onsets(
    windows: np.ndarray, reconstructions: np.ndarray, edges: tuple[int, ...] | None = None
) -> pd.DataFrame:
    """Token accuracy of ``reconstructions`` against ``windows`` (both [n, steps]), by the windows' number of onsets.

    Dense melodies need more information in z; binning shows where a model runs short. ``edges``
    are the lower ends of the bins, increasing from 0, the last bin open; None: ``onset_bin_edges``
    of the windows' length. One row per bin: onsets ("5-9", "18+"), windows, share of windows,
    accuracy (NaN for an empty bin).
    """
    reconstructions, windows = same_shape(reconstructions, windows)
    edges = onset_bin_edges(windows.shape[1]) if edges is None else edges
    if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"`edges` must increase from 0, got {edges}")
    onsets = notes_per_window(windows)
    bins = np.searchsorted(np.asarray(edges), onsets, side="right") - 1
    correct = (windows == reconstructions).mean(axis=1)
    labels = [f"{low}-{high - 1}" if high - 1 > low else str(low) for low, high in zip(edges, edges[1:])] + [
        f"{edges[-1]}+"
    ]
    rows = []
    for index, label in enumerate(labels):
        inside = bins == index
        rows.append(
            {
                "onsets": label,
                "windows": int(inside.sum()),
                "share of windows": float(inside.mean()) if len(windows) else float("nan"),
                "accuracy": float(correct[inside].mean()) if inside.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def describe_accuracy_by_onsets(table: pd.DataFrame) -> str:
    """A sentence on the sparsest and the densest bin that hold windows (``accuracy_by_onsets``' table)."""
    filled = table[table["windows"] > 0]
    if filled.empty:
        return "No window to bin."
    sparse, dense = filled.iloc[0], filled.iloc[-1]
    if len(filled) == 1:
        return f"Every window has {sparse['onsets']} onsets; greedy accuracy {sparse['accuracy']:.3f}."
    change = "falls" if dense["accuracy"] < sparse["accuracy"] else "rises"
    return (
        f"Greedy accuracy {change} from {sparse['accuracy']:.3f} on windows with {sparse['onsets']} onsets "
        f"({sparse['share of windows']:.0%} of the windows) to {dense['accuracy']:.3f} on those with "
        f"{dense['onsets']} ({dense['share of windows']:.0%})."
    )


def describe_kl_spread(kl_bits: np.ndarray) -> str:
    """How evenly the windows spend their KL: median and central 80% in bits, and the spread relative to the median."""
    kl_bits = np.asarray(kl_bits, dtype=np.float64)
    if kl_bits.ndim != 1 or not len(kl_bits):
        raise ValueError(f"need a non-empty 1-D array of KL per window, got shape {kl_bits.shape}")
    low, median, high = np.percentile(kl_bits, [10, 50, 90])
    evenly = "nearly the same" if high - low < 0.2 * median else "very different"
    return (
        f"The median window spends {median:.1f} bits of KL; 80% spend between {low:.1f} and {high:.1f} bits "
        f"({(high - low) / median:.0%} of the median): the windows spend {evenly} amounts of information."
    )
