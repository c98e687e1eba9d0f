"""Training: Adam with the thesis' schedule, Magenta's log names, checkpoints that resume bit for bit.

One call, ``train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir)``,
trains a MusicVAE and writes into ``out_dir``:

- ``steps.csv``: one row per optimiser step (loss, ``losses/r_loss``, ``losses/kl_bits``,
  ``global_norm`` before clipping, ``learning_rate``), so that a notebook can mark the sudden jumps
  the thesis saw in its loss curve. Rows are written in chunks (at each progress-bar update,
  checkpoint, epoch end): a step's values stay on the device, so no step waits for the GPU;
- ``epochs.csv``: one row per epoch, training means and validation values side by side;
- ``checkpoint.pt``: everything needed to go on (weights, optimiser, schedule, random generators,
  the epoch's batch order and the position in it, log sizes), written every
  ``checkpoint_every_steps`` steps and after each epoch, atomically;
- ``model.pt``: the best-validation weights with their configs (``load_model`` reads it);
- ``done.json``: why and where the run stopped. Its presence marks the folder as finished.

A run killed at any moment and started again with the same arguments resumes from its last
checkpoint and, on CPU, ends with the same weights and logs as a run never interrupted: every
random draw comes from generators whose states the checkpoint holds.

Under ``torchrun`` (RANK and WORLD_SIZE set) the model is wrapped in DistributedDataParallel, each
process takes its share of every batch, and only rank 0 writes files.

On one GPU the teacher-forced step (forward, loss, backward, clipping, fused Adam) is captured as one
CUDA graph and replayed (``step_path``, ``CapturedStep``): at the study's sizes an eager GPU step waits
on kernel launches. bf16="auto" there times a few steps each way before choosing (``bf16_is_faster``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import random
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, TextIO

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from musicvae_lib.loss import NATS_PER_BIT, LossConfig, LossParts, vae_loss
from musicvae_lib.model import MusicVAE, ModelConfig
from musicvae_lib.representation import FIRST_PITCH_TOKEN, N_CLASSES, check_tokens

CHECKPOINT_FORMAT = "musicvae-notebooks checkpoint 1"
MODEL_FORMAT = "musicvae-notebooks model 1"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
DONE_FILE = "done.json"
STEPS_LOG = "steps.csv"
EPOCHS_LOG = "epochs.csv"

# Magenta's summary names (base_model.py, music_vae_train.py) wherever Magenta logs the quantity.
STEP_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "losses/r_loss",
    "losses/kl_bits",
    "losses/kl_beta",
    "metrics/accuracy",
    "global_norm",  # before clipping, as Magenta's
    "learning_rate",
    "teacher_probability",  # scheduled sampling: chance that a decoder input is the true token
)
EPOCH_COLUMNS = (
    "epoch",
    "step",
    "train/loss",
    "train/losses/r_loss",
    "train/losses/kl_bits",
    "train/losses/kl_beta",
    "train/metrics/accuracy",
    "valid/loss",
    "valid/losses/r_loss",
    "valid/losses/kl_bits",
    "valid/losses/kl_beta",
    "valid/metrics/accuracy",
    "learning_rate",  # of the epoch's last step; a plateau cut shows in the next row
    "global_norm/mean",
    "global_norm/max",
    "seconds",  # wall time of the epoch, validation included
    "sequences_per_second",  # training throughput, validation excluded
)
TIMING_COLUMNS = ("seconds", "sequences_per_second")

# TrainConfig fields a resumed or re-used run may change: none alters the trajectory up to where the run
# stands (a longer budget). Named as config_clashes names them.
RESUMED_SETTINGS = frozenset({"train_config.max_epochs", "train_config.max_minutes", "train_config.checkpoint_every_steps"})

# between progress-bar updates (the runner keeps only a bar's last state); steps.csv gets the steps since
# the last update then too, so that a step never waits for the device to hand back its values
PROGRESS_SECONDS = 10.0

# Independent random streams drawn from the one seed (numpy SeedSequence entropy [seed, stream, rank]).
DATA_STREAM, NOISE_STREAM, VALID_STREAM = 0, 1, 2


LR_SCHEDULES = ("plateau", "exponential", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How a MusicVAE is trained. Defaults: the thesis' (Adam 1e-3, batch 64, L2 1e-6, plateau, early stop)."""

    learning_rate: float = 1e-3  # thesis and Magenta
    batch_size: int = 64  # thesis; global over DDP processes; an epoch's last incomplete batch is dropped
    weight_decay: float = 1e-6  # thesis' L2 penalty, added to the gradient by Adam (not AdamW's decoupled decay)
    # "plateau": the thesis' ReduceLROnPlateau; "exponential": Magenta's decay; "cosine": from learning_rate
    # down to min_learning_rate over the budget (max_minutes, else max_epochs)
    lr_schedule: str = "plateau"
    plateau_factor: float = 0.5  # thesis: halve the learning rate ...
    plateau_patience: int = 2  # ... after MORE than 2 epochs without a lower validation loss (torch's rule; Keras cuts after 2)
    min_learning_rate: float = 1e-5  # floor of both schedules; 1e-3 reaches it after 7 halvings
    decay_rate: float = 0.9999  # Magenta: lr_t = (lr - min_lr) * decay_rate**step + min_lr
    early_stopping_patience: int = 5  # thesis: stop after 5 epochs without a lower validation loss
    grad_clip: float = 1.0  # global-norm clipping, Magenta's grad_clip
    max_epochs: int = 100  # a ceiling; early stopping usually ends the run first
    max_minutes: float = 0.0  # training time summed over resumed sessions; 0 = no budget
    transpose_semitones: int = 0  # augmentation: shift each window by up to +-N semitones; 0 = off
    sampling_rate: float = 0.0  # scheduled sampling, Magenta's inverse-sigmoid rate k; 0 = teacher forcing
    # autocast to bfloat16; "auto": where the device has native bf16 kernels and, on CUDA, a timing of a few
    # steps each way at the start finds it faster (``resolve_bf16``); a resumed run keeps its first choice
    bf16: str | bool = "auto"
    # the teacher-forced step as one CUDA graph (no launch overhead); "auto": where step_path allows it
    cuda_graphs: str | bool = "auto"
    valid_batch_size: int = 512  # validation has no gradients: larger batches only save time
    checkpoint_every_steps: int = 200  # besides the checkpoint after every epoch
    seed: int = 0  # weights, batch order, augmentation and latent noise all derive from it

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"`lr_schedule` must be one of {', '.join(map(repr, LR_SCHEDULES))}, got {self.lr_schedule!r}")
        for name in ("bf16", "cuda_graphs"):
            if getattr(self, name) not in ("auto", True, False):
                raise ValueError(f"`{name}` must be 'auto', True or False, got {getattr(self, name)!r}")
        for name in ("batch_size", "valid_batch_size", "max_epochs", "checkpoint_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in (
            "learning_rate",
            "weight_decay",
            "min_learning_rate",
            "max_minutes",
            "sampling_rate",
            "plateau_patience",
            "early_stopping_patience",
            "transpose_semitones",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not 0 < self.plateau_factor < 1 or not 0 < self.decay_rate <= 1 or self.grad_clip <= 0:
            raise ValueError(
                "need 0 < plateau_factor < 1, 0 < decay_rate <= 1 and grad_clip > 0, got "
                f"{self.plateau_factor}, {self.decay_rate}, {self.grad_clip}"
            )


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What ``train`` returns; ``done.json`` holds the same numbers."""

    model: MusicVAE = field(repr=False)  # best-validation weights, eval mode, on the training device
    out_dir: Path
    stopped: str  # "early_stopping", "max_epochs" or "max_minutes"
    epochs: int  # epochs run; one cut short by max_minutes counts
    steps: int
    best_epoch: int
    best_valid_loss: float
    bf16: bool
    resumed: bool  # whether this call went on from a checkpoint
    step_path: str = "eager"  # how the training steps ran: "eager" or "cuda_graph" (``step_path``)


class CheckpointError(Exception):
    """A checkpoint or model file that cannot be used: unreadable, not ours, or of another run."""


class RunFinishedError(FileExistsError):
    """``train`` was called on a folder whose run has finished (it holds ``done.json``)."""


# ---------------------------------------------------------------------------------------------
# Schedules and augmentation


def teacher_forcing_probability(step: int, sampling_rate: float) -> float:
    """Chance that a decoder input is the true previous token at ``step``: k / (k + exp(step / k)).

    Magenta's inverse-sigmoid schedule (lstm_models.py, sampling_probability = 1 minus this),
    after Bengio et al. 2015; k = ``sampling_rate``. 1.0 (pure teacher forcing) when k is 0.
    """
    if sampling_rate == 0:
        return 1.0
    exponent = step / sampling_rate
    if exponent > 700:  # exp would overflow a float; the probability is 0 to double precision
        return 0.0
    return sampling_rate / (sampling_rate + math.exp(exponent))


def exponential_learning_rate(config: TrainConfig, step: int) -> float:
    """Magenta's per-step decay (base_model.py): (lr - min_lr) * decay_rate**step + min_lr."""
    return (config.learning_rate - config.min_learning_rate) * config.decay_rate**step + config.min_learning_rate


def cosine_learning_rate(config: TrainConfig, budget_spent: float) -> float:
    """Half a cosine from ``learning_rate`` (nothing spent) to ``min_learning_rate`` (the whole budget spent).

    Spending the budget this way ends a time-boxed run at a low rate, where the plateau rule may
    never cut it; ``budget_spent`` is clipped to [0, 1].
    """
    spent = min(max(budget_spent, 0.0), 1.0)
    return config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * 0.5 * (1 + math.cos(math.pi * spent))


def transpose_windows(windows: np.ndarray, max_semitones: int, rng: np.random.Generator) -> np.ndarray:
    """Each window [n, steps] shifted by its own random whole number of semitones in -N..N.

    A window's shift is drawn uniformly from the shifts that keep all its pitch tokens in
    2..89 (MIDI 21..108), so no note is lost; 0 (NO_EVENT) and 1 (NOTE_OFF) stay as they are.
    One draw per window, even for windows without a note, so the generator advances the same way
    whatever the data.
    """
    tokens = np.asarray(windows)
    is_pitch = tokens >= FIRST_PITCH_TOKEN
    lowest = np.where(is_pitch, tokens, N_CLASSES).min(axis=1).astype(np.int64)  # (n,) N_CLASSES if no note
    highest = np.where(is_pitch, tokens, 0).max(axis=1).astype(np.int64)  # (n,) 0 if no note
    low = np.maximum(-max_semitones, FIRST_PITCH_TOKEN - lowest)
    high = np.minimum(max_semitones, N_CLASSES - 1 - highest)
    shifts = rng.integers(low, high, endpoint=True)  # (n,)
    shifted = tokens.astype(np.int64) + is_pitch * shifts[:, None]
    return shifted.astype(tokens.dtype)


def adam(parameters: Iterable[nn.Parameter], config: TrainConfig, graph_device: torch.device | None = None) -> torch.optim.Adam:
    """The thesis' Adam with the fused kernel: one launch for all parameters on CUDA, and on CPU a step
    about 7x faster than the default multi-tensor one (20 -> 2.7 ms at the study's sizes, 1 thread).

    With ``graph_device``, capturable in a CUDA graph there: its step count and learning rate live on that
    device (a graph replays the kernels it captured, so a new rate must be written into the same tensor).
    """
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    keep_implementation(optimizer, graph_device)
    return optimizer


def keep_implementation(optimizer: torch.optim.Optimizer, graph_device: torch.device | None) -> None:
    """Fused Adam, capturable with its learning rate a tensor on ``graph_device`` if given, keeping the rate's value.

    Also after ``load_state_dict``, which takes every group setting from the checkpoint (``fused``, ``foreach``,
    a learning-rate tensor loaded onto the CPU): a checkpoint of an older version would otherwise go on with
    that version's kernels, unlike a run never stopped.
    """
    for group in optimizer.param_groups:
        rate = float(group["lr"])
        capturable = graph_device is not None
        group.update(fused=True, foreach=None, capturable=capturable)
        group["lr"] = torch.tensor(rate, device=graph_device) if capturable else rate


def plateau_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The thesis' schedule: multiply the rate by ``plateau_factor`` after more than ``plateau_patience`` epochs
    without a lower validation loss, never below ``min_learning_rate``.

    threshold 0: an epoch improves when its validation loss is lower at all, the rule early stopping uses too.
    """
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        factor=config.plateau_factor,
        patience=config.plateau_patience,
        threshold=0.0,
        min_lr=config.min_learning_rate,
    )


# ---------------------------------------------------------------------------------------------
# Devices, precision, processes


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA (this process' LOCAL_RANK GPU under torchrun) when available, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16 kernels: a bf16 GPU (Ampere on), or a CPU oneDNN runs bf16 on (AVX512)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_bf16(setting: str | bool, device: torch.device, faster: Callable[[], bool] | None = None) -> bool:
    """The ``bf16`` setting as a bool. "auto": on where ``bf16_supported(device)``; on CUDA only if ``faster()``
    also says so (a timing, ``bf16_is_faster``), since there bf16 can be slower at small sizes.

    On a CPU the rule alone decides: oneDNN's bf16 kernels were faster on both CPUs measured
    (benchmarks/train_throughput.py), and a timing there would cost seconds of a short run.
    """
    if setting == "auto":
        return bf16_supported(device) and (device.type != "cuda" or faster is None or faster())
    if setting is True and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"`bf16=True` but {torch.cuda.get_device_name(device)} has no bfloat16 support; use bf16='auto'")
    return bool(setting)


def cuda_graph_obstacles(device: torch.device, config: TrainConfig, world_size: int) -> list[str]:
    """Why the training step cannot be captured as one CUDA graph here (empty: it can)."""
    obstacles = []
    if device.type != "cuda":
        obstacles.append(f"the device is {device.type}, not CUDA")
    if config.sampling_rate > 0:
        obstacles.append("scheduled sampling (`sampling_rate` > 0) decodes step by step with a new probability each step")
    if world_size > 1:
        obstacles.append(f"{world_size} DDP processes all-reduce their gradients between the step's kernels")
    return obstacles


def step_path(device: torch.device, config: TrainConfig, world_size: int = 1) -> str:
    """How training steps run: "cuda_graph" (the teacher-forced step captured whole, replayed each step) or "eager".

    ``config.cuda_graphs`` "auto": the graph wherever ``cuda_graph_obstacles`` finds none, since at the study's
    sizes an eager CUDA step is bound by kernel launches, not by the GPU; True: the graph, ValueError naming the
    obstacles if there are any.
    """
    obstacles = cuda_graph_obstacles(device, config, world_size)
    if config.cuda_graphs is True and obstacles:
        raise ValueError(f"`cuda_graphs=True` but {'; '.join(obstacles)}: use cuda_graphs='auto' or False")
    return "cuda_graph" if config.cuda_graphs is not False and not obstacles else "eager"


def tokens_on(windows: np.ndarray, device: torch.device) -> Tensor:
    """``windows`` (uint8) as int64 tokens on ``device``. On CUDA through pinned memory without waiting: a copy
    from pageable memory would wait for every step queued before it, a host sync per step."""
    tokens = torch.from_numpy(np.ascontiguousarray(windows))
    if device.type == "cuda":
        tokens = tokens.pin_memory()
    return tokens.to(device, non_blocking=True).long()


def stream_seed(seed: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed for one random stream of one process, derived from the run's ``seed``."""
    return int(np.random.SeedSequence([seed, stream, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def join_process_group(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world_size, joined_here): joins torchrun's group (gloo on CPU, nccl on CUDA) if not joined yet."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl binds each process to its own GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


# ---------------------------------------------------------------------------------------------
# Files


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_json(obj: Any, path: Path) -> None:
    """JSON to a temporary file beside ``path``, then rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporaries of ``atomic_save`` left by a process killed while writing."""
    for name in (CHECKPOINT_FILE, MODEL_FILE, DONE_FILE):
        for stale in out_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def load_file(path: Path, expected_format: str) -> dict[str, Any]:
    """A checkpoint or model file read with ``weights_only=True``; CheckpointError naming ``path`` if unusable."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{path} cannot be read ({type(error).__name__}: {error}); it is damaged or not a torch file: "
            "delete it to start this run over"
        ) from error
    found = content.get("format") if isinstance(content, dict) else type(content).__name__
    if found != expected_format:
        raise CheckpointError(f"{path} is not a {expected_format!r} file (found {found!r})")
    return content


def half_precision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Floating-point weights as float16 for ``model.pt``: half the bytes of a committed model.

    Loading copies them back into the float32 model; the rounding (relative 5e-4) moves accuracies
    far less than a different seed does. Checkpoints keep float32, since a resumed run must go on exactly.
    """
    return {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def load_model(path: str | Path, device: str | torch.device | None = None) -> MusicVAE:
    """The MusicVAE in ``model.pt`` (written by ``train``), in eval mode on ``device`` (default: as ``resolve_device``).

    Its float16 weights (``half_precision``) become the float32 parameters of the returned model.
    """
    content = load_file(Path(path), MODEL_FORMAT)
    model = MusicVAE(ModelConfig(**content["model_config"]))
    model.load_state_dict(content["state_dict"])
    return model.to(resolve_device(device)).eval()


def data_fingerprint(train_windows: np.ndarray, valid_windows: np.ndarray) -> str:
    """sha256 over both sets' shapes and bytes: a checkpoint only resumes on the data it was trained on."""
    digest = hashlib.sha256()
    for windows in (train_windows, valid_windows):
        digest.update(repr(windows.shape).encode())
        digest.update(windows.tobytes())
    return digest.hexdigest()


def training_set(windows: np.ndarray, name: str, steps: int) -> np.ndarray:
    """``windows`` as contiguous uint8 [n >= 1, steps] after checking classes and shape; ValueError naming ``name``."""
    array = check_tokens(windows)
    if array.ndim != 2 or array.shape[1] != steps or array.shape[0] == 0:
        raise ValueError(f"`{name}` must have shape [n >= 1, {steps}] (the model's steps), got {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def config_clashes(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], ignore: Collection[str] = (), stored_as: str = "there",
    prefix: str = "",
) -> list[str]:
    """'name: X there, Y here' for every setting where a stored config differs from the wanted one.

    The one comparison of "the run (or study) on disk against this call": nested dicts are
    compared entry by entry and named ``outer.inner``; a setting missing on one side counts as
    None. ``ignore`` holds such dotted names that may differ (e.g. a longer time budget);
    ``stored_as`` says where the stored values come from ("there", "in the study").
    """
    clashes = []
    for name in sorted(stored.keys() | wanted.keys()):
        key = prefix + name
        there, here = stored.get(name), wanted.get(name)
        if key in ignore:
            continue
        if isinstance(there, dict) and isinstance(here, dict):
            clashes += config_clashes(there, here, ignore, stored_as, f"{key}.")
        elif there != here:
            clashes.append(f"{key}: {there!r} {stored_as}, {here!r} here")
    return clashes


def with_added_defaults(stored: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` settings with the config fields added since they were written filled in with their defaults.

    Each new field's default keeps the behaviour from before it existed (e.g. ``LossConfig.free_bits_over``
    = "sequence"), so a run written then still counts as a run of those settings.
    """
    filled = dict(stored)
    for key, config_class in (("model_config", ModelConfig), ("loss_config", LossConfig), ("train_config", TrainConfig)):
        if isinstance(stored.get(key), dict):
            defaults = {spec.name: spec.default for spec in fields(config_class) if spec.default is not MISSING}
            filled[key] = defaults | stored[key]
    return filled


class CsvLog:
    """A CSV file written a row at a time; on resume cut back to the size the checkpoint recorded."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_size: int | None):
        self.path, self.columns = path, columns
        if resume_size is None:
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(columns)
        else:
            self._truncate(resume_size)
        self.file: TextIO = open(path, "a", newline="")
        self.writer = csv.writer(self.file)

    def _truncate(self, size: int) -> None:
        actual = self.path.stat().st_size if self.path.exists() else -1
        if actual < size:
            raise CheckpointError(
                f"{self.path} holds {max(actual, 0)} bytes but the checkpoint recorded {size}: the log was "
                "changed or deleted after the checkpoint; restore it or start the run over in a new folder"
            )
        with open(self.path, "r+b") as file:
            file.truncate(size)
        with open(self.path, newline="") as file:
            header = tuple(next(csv.reader(file), ()))
        if header != self.columns:
            raise CheckpointError(f"{self.path} has columns {header}, expected {self.columns}")

    def write(self, rows: Iterable[dict[str, float | int]]) -> None:
        """Append ``rows`` and flush, so a notebook can follow a run as it trains."""
        self.writer.writerows([row[column] for column in self.columns] for row in rows)
        self.file.flush()

    def flush(self) -> int:
        """Flush to the OS (enough to survive a killed process) and return the file size in bytes."""
        self.file.flush()
        return os.fstat(self.file.fileno()).st_size

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------------------------------------
# The training pass and where a run stands


@dataclass
class Progress:
    """Where a run stands, besides weights, optimiser and generators; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    position: int = 0  # batches done in the current epoch
    order: Tensor | None = None  # the current epoch's permutation of the training windows [n_train]
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    elapsed_seconds: float = 0.0  # training time summed over sessions: what max_minutes limits
    epoch_seconds: float = 0.0
    sessions: int = 0  # processes that worked on this run
    sums: dict[str, float] = field(default_factory=dict)  # the current epoch's running sums for epochs.csv


def batch_sums(parts: LossParts, logits: Tensor, tokens: Tensor) -> Tensor:
    """float64 [6]: sequences, and sums over them of loss, r_loss, KL nats, correct tokens, tokens.

    logits [B, T, C], tokens [B, T]; accuracy is Magenta's: argmax against the true token at every step.
    Device kernels only (no tensor from a host value), so a CUDA graph can capture it.
    """
    n = tokens.shape[0]
    weighted = torch.stack([parts.loss, parts.r_loss, parts.kl]).detach() * n  # float32 products, then widened
    correct = (logits.argmax(-1) == tokens).sum()
    sequences, all_tokens = (weighted.new_full((1,), count, dtype=torch.float64) for count in (n, tokens.numel()))
    return torch.cat([sequences, weighted.double(), correct.double()[None], all_tokens])


@dataclass
class PendingStep:
    """A step whose logged values are still on the device: they are read many steps at a time
    (``Trainer.write_pending``), since reading them at once would make every step wait for the device."""

    step: int
    epoch: int
    sums: Tensor  # ``batch_sums``, added over processes
    global_norm: Tensor  # before clipping
    beta: float
    learning_rate: float
    teacher_probability: float
    seconds: float = 0.0  # wall time of the step, batch preparation included


def per_sequence_means(sums: list[float], beta: float) -> dict[str, float]:
    """Per-sequence means of ``batch_sums`` under Magenta's names."""
    sequences, loss, r_loss, kl, correct, tokens = sums
    return {
        "loss": loss / sequences,
        "losses/r_loss": r_loss / sequences,
        "losses/kl_bits": kl / sequences / NATS_PER_BIT,
        "losses/kl_beta": beta,
        "metrics/accuracy": correct / tokens,
    }


# ---------------------------------------------------------------------------------------------
# The training step: eager, or one CUDA graph; bf16 where it is faster

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as PyTorch's whole-network example
BF16_TIMING_STEPS = 5  # timed steps each way (after one untimed) when bf16="auto" asks the device which is faster


class GraphCaptureError(RuntimeError):
    """The training step could not be captured as a CUDA graph (the weights, Adam and noise are as before)."""


class TrainingStep:
    """One optimiser step, kernel by kernel: forward, loss, backward, clipping, Adam.

    ``training_pass`` is ``vae`` or its DDP wrapper; ``noise`` the generator of the latent noise.
    """

    autocast_cache = True  # autocast's cache of bf16 weight copies (a CUDA graph must do without)

    def __init__(
        self, vae: MusicVAE, optimizer: torch.optim.Optimizer, loss_config: LossConfig, grad_clip: float,
        bf16: bool, noise: torch.Generator, training_pass: nn.Module | None = None,
    ):
        self.vae, self.optimizer, self.loss_config, self.grad_clip = vae, optimizer, loss_config, grad_clip
        self.bf16, self.noise = bf16, noise
        self.training_pass = vae if training_pass is None else training_pass

    def __call__(self, tokens: Tensor, step: int, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """The step on ``tokens`` [B, T] at training step ``step``: ``batch_sums`` and the global norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        return self.update(tokens, self.loss_config.beta_at(step), teacher_probability)

    def update(self, tokens: Tensor, beta: float | Tensor, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """Forward, loss, backward (into zeroed or unset gradients), clipping and Adam."""
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=self.autocast_cache):
            logits, mu, sigma = self.training_pass(tokens, self.noise, teacher_probability)
        parts = vae_loss(logits, tokens, mu, sigma, self.loss_config, beta=beta)
        parts.loss.backward()
        global_norm = nn.utils.clip_grad_norm_(self.vae.parameters(), self.grad_clip)
        self.optimizer.step()
        return batch_sums(parts, logits, tokens), global_norm


class CapturedStep(TrainingStep):
    """The teacher-forced step captured as one CUDA graph and replayed: one launch instead of hundreds.

    At the study's sizes an eager step on a GPU waits on the launches of its small kernels. Captured at the
    first call, after warm-up steps whose effects on the weights, Adam's state and the noise generator are
    undone, so the run takes the same steps as an eager one. Each call copies the batch into the static
    input and beta into a static tensor (Magenta's annealing changes it every step); the learning rate is
    Adam's device tensor (``adam`` with ``graph_device``). The noise generator is registered with the graph:
    each replay draws new latent noise and advances it as an eager step would.
    """

    autocast_cache = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.tokens = self.beta = None
        self.outputs: tuple[Tensor, ...] = ()

    def __call__(self, tokens: Tensor, step: int, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """The replay on a batch of the first call's size; copies of its outputs (the next replay overwrites them)."""
        if self.graph is None:
            self.capture(tokens)
        self.tokens.copy_(tokens)
        self.beta.fill_(self.loss_config.beta_at(step))
        self.graph.replay()
        sums, global_norm = (output.clone() for output in self.outputs)
        return sums, global_norm

    def capture(self, tokens: Tensor) -> None:
        """Warm up on a side stream, undo the warm-up, capture ``update`` (PyTorch's "whole network capture")."""
        self.tokens, self.beta = tokens.clone(), torch.zeros((), device=tokens.device)
        saved = self.state()
        side, main = torch.cuda.Stream(tokens.device), torch.cuda.current_stream(tokens.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):  # also creates Adam's state, which the graph must find in place
                self.optimizer.zero_grad(set_to_none=True)
                self.update(self.tokens, self.beta)
        main.wait_stream(side)
        self.restore(saved)
        self.optimizer.zero_grad(set_to_none=True)  # backward in the capture allocates the gradients from the graph's pool
        graph = torch.cuda.CUDAGraph()
        try:
            graph.register_generator_state(self.noise)
            with torch.cuda.graph(graph):
                self.outputs = self.update(self.tokens, self.beta)
        except RuntimeError as error:
            self.restore(saved)
            raise GraphCaptureError(f"{type(error).__name__}: {error}") from error
        self.graph = graph

    def state(self) -> tuple[list[Tensor], dict[Tensor, dict[str, Tensor]], Tensor]:
        """Copies of the weights, Adam's state and the noise generator's state."""
        weights = [parameter.detach().clone() for parameter in self.vae.parameters()]
        adam_state = {parameter: {key: value.clone() for key, value in state.items()} for parameter, state in self.optimizer.state.items()}
        return weights, adam_state, self.noise.get_state()

    @torch.no_grad()
    def restore(self, saved: tuple[list[Tensor], dict[Tensor, dict[str, Tensor]], Tensor]) -> None:
        """Back to ``state``'s copies, in the same tensors; Adam's state made since is zeroed, as Adam creates it."""
        weights, adam_state, noise_state = saved
        for parameter, weight in zip(self.vae.parameters(), weights):
            parameter.copy_(weight)
        for parameter, state in self.optimizer.state.items():
            for key, value in state.items():
                if parameter in adam_state:
                    value.copy_(adam_state[parameter][key])
                else:
                    value.zero_()
        self.noise.set_state(noise_state)


STEP_CLASSES: dict[str, type[TrainingStep]] = {"eager": TrainingStep, "cuda_graph": CapturedStep}  # by ``step_path``


def bf16_is_faster(
    vae: MusicVAE, loss_config: LossConfig, config: TrainConfig, device: torch.device, path: str, world_size: int = 1,
    steps: int = BF16_TIMING_STEPS,
) -> bool:
    """Whether bf16 autocast trains ``vae``'s sizes faster than fp32 on ``device``, timed on copies.

    Steps of ``path`` (``step_path``) on a copy of the model with its own Adam, on random tokens of this
    process' batch size, fp32 and bf16 taking turns; the medians decide. The model, its optimiser and every
    random generator are left as they were. On a GPU bf16 is no sure gain at small sizes: issue 13 measured
    it 0.91x at the study's (its casts add kernels to a launch-bound step).
    """
    batch = config.batch_size // world_size
    tokens = torch.randint(
        0, vae.config.n_classes, (batch, vae.config.steps), device=device, generator=torch.Generator(device).manual_seed(0)
    )
    graph_device = device if path == "cuda_graph" else None
    runs = {}
    for bf16 in (False, True):
        model = copy.deepcopy(vae)
        for module in model.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()  # a copy's LSTM weights lie apart: cuDNN would gather them every call
        optimizer = adam(model.parameters(), config, graph_device)
        runs[bf16] = STEP_CLASSES[path](model, optimizer, loss_config, config.grad_clip, bf16, torch.Generator(device).manual_seed(0))
        try:
            runs[bf16](tokens, 0)  # untimed: first-call costs (kernel selection, Adam's state, the capture)
        except GraphCaptureError:  # the run will fall back to eager steps too
            return bf16_is_faster(vae, loss_config, config, device, "eager", world_size, steps)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps):
        for bf16, run in runs.items():
            synchronize(device)
            started = time.perf_counter()
            run(tokens, 0)
            synchronize(device)
            seconds[bf16].append(time.perf_counter() - started)
    return bool(np.median(seconds[True]) < np.median(seconds[False]))


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` to finish its queued work (a timing's bounds); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """One training run in one folder; ``train`` is the entry point."""

    def __init__(
        self,
        model_config: ModelConfig,
        loss_config: LossConfig,
        config: TrainConfig,
        train_windows: np.ndarray,
        valid_windows: np.ndarray,
        out_dir: Path,
        device: torch.device,
        rank: int,
        world_size: int,
    ):
        self.model_config, self.loss_config, self.config = model_config, loss_config, config
        self.out_dir, self.device, self.rank, self.world_size = out_dir, device, rank, world_size
        self.train_windows = training_set(train_windows, "train_windows", model_config.steps)
        self.valid_windows = training_set(valid_windows, "valid_windows", model_config.steps)
        if config.batch_size % world_size:
            raise ValueError(f"`batch_size` ({config.batch_size}) must be a multiple of the {world_size} processes")
        if len(self.train_windows) < config.batch_size:
            raise ValueError(
                f"{len(self.train_windows)} training windows make no full batch of `batch_size` {config.batch_size}"
            )
        if len(self.valid_windows) < world_size:
            raise ValueError(f"{len(self.valid_windows)} validation windows cannot be shared by {world_size} processes")
        self.batches_per_epoch = len(self.train_windows) // config.batch_size
        self.fingerprint = data_fingerprint(self.train_windows, self.valid_windows)

        with torch.random.fork_rng(devices=[]):  # initial weights from the seed, the caller's generator untouched
            torch.manual_seed(config.seed)
            self.vae = MusicVAE(model_config)
        self.vae.to(device)
        training_pass: nn.Module = self.vae
        if world_size > 1:
            device_ids = [device.index] if device.type == "cuda" else None
            training_pass = nn.parallel.DistributedDataParallel(training_pass, device_ids=device_ids)
        self.training_pass = training_pass
        self.step_path = step_path(device, config, world_size)
        self.graph_device = device if self.step_path == "cuda_graph" else None
        self.optimizer = adam(self.vae.parameters(), config, self.graph_device)
        self.scheduler = plateau_schedule(self.optimizer, config) if config.lr_schedule == "plateau" else None
        self.data_rng = np.random.default_rng(stream_seed(config.seed, DATA_STREAM))  # same on every process
        self.noise = torch.Generator(device).manual_seed(stream_seed(config.seed, NOISE_STREAM, rank))
        self.progress = Progress()
        self.best_state: dict[str, Tensor] | None = None
        self.checkpoint_path = out_dir / CHECKPOINT_FILE
        self.resumed = self.checkpoint_path.exists()
        checkpoint = load_file(self.checkpoint_path, CHECKPOINT_FORMAT) if self.resumed else None
        self.bf16 = self.choose_bf16(checkpoint)
        self.last_tick = time.monotonic()
        log_sizes = self.resume(checkpoint) if checkpoint is not None else {STEPS_LOG: None, EPOCHS_LOG: None}
        self.progress.sessions += 1
        self.learning_rate = float(self.optimizer.param_groups[0]["lr"])  # kept here: reading a device tensor waits
        self.steps = self.training_steps()
        self.pending: list[PendingStep] = []
        self.last_written = time.monotonic()
        self.steps_log = self.epochs_log = None
        if rank == 0:
            self.steps_log = CsvLog(out_dir / STEPS_LOG, STEP_COLUMNS, log_sizes[STEPS_LOG])
            self.epochs_log = CsvLog(out_dir / EPOCHS_LOG, EPOCH_COLUMNS, log_sizes[EPOCHS_LOG])

    # --- checkpoints -------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """What must match between a checkpoint and this call for a resume to be the same run."""
        return {
            "model_config": asdict(self.model_config),
            "loss_config": asdict(self.loss_config),
            "train_config": asdict(self.config),
            "bf16": self.bf16,
            "device_type": self.device.type,
            "world_size": self.world_size,
            "data_sha256": self.fingerprint,
        }

    def check_same_run(self, checkpoint: dict[str, Any]) -> None:
        """CheckpointError listing every setting where ``checkpoint`` differs from this call."""
        stored = with_added_defaults({key: checkpoint.get(key) for key in self.identity()})
        clashes = config_clashes(stored, self.identity(), RESUMED_SETTINGS)
        if clashes:
            raise CheckpointError(
                f"{self.checkpoint_path} belongs to another run: " + "; ".join(clashes)
                + ". Train into a new folder, or call train with the checkpoint's settings to resume"
            )

    def training_steps(self) -> TrainingStep:
        """The step of this run's ``step_path``, on its model, Adam, loss, precision and noise."""
        return STEP_CLASSES[self.step_path](
            self.vae, self.optimizer, self.loss_config, self.config.grad_clip, self.bf16, self.noise, self.training_pass
        )

    def choose_bf16(self, checkpoint: dict[str, Any] | None) -> bool:
        """The run's precision: ``resolve_bf16``, on CUDA timing a few steps each way (``bf16_is_faster``; under DDP
        rank 0's choice). A resumed run keeps its checkpoint's choice: it never re-times."""
        if checkpoint is not None and self.config.bf16 == "auto" and isinstance(checkpoint.get("bf16"), bool):
            return checkpoint["bf16"]
        choice = resolve_bf16(
            self.config.bf16, self.device,
            lambda: bf16_is_faster(self.vae, self.loss_config, self.config, self.device, self.step_path, self.world_size),
        )
        if self.world_size > 1:
            shared = [choice]
            dist.broadcast_object_list(shared, src=0)
            choice = shared[0]
        return choice

    def resume(self, checkpoint: dict[str, Any]) -> dict[str, int]:
        """Restore everything from ``checkpoint`` (this run's checkpoint.pt); returns the log sizes it recorded."""
        self.check_same_run(checkpoint)
        try:
            self.vae.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            keep_implementation(self.optimizer, self.graph_device)
            if self.scheduler is not None:
                self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.progress = Progress(**checkpoint["progress"])
            self.best_state = checkpoint["best_model"]
            rng = checkpoint["rng"]
            self.data_rng.bit_generator.state = rng["data"]
            self.noise.set_state(rng["noise"][self.rank])
            torch.set_rng_state(rng["torch"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"][self.rank], self.device)
            np.random.set_state(("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), *rng["numpy"]["rest"]))
            random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
            log_sizes = dict(checkpoint["log_bytes"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{self.checkpoint_path} is incomplete or inconsistent ({type(error).__name__}: {error})") from error
        if self.rank == 0:
            print(
                f"Resuming {self.out_dir} from {self.checkpoint_path}: epoch {self.progress.epoch + 1}, "
                f"batch {self.progress.position} of {self.batches_per_epoch}, step {self.progress.step}"
            )
        return log_sizes

    def gathered(self, local: Tensor) -> list[Tensor]:
        """``local`` of every process, by rank (a list of one without DDP)."""
        if self.world_size == 1:
            return [local]
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, local)
        return states

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (rank 0), after logging the pending steps and flushing the logs whose
        sizes it records."""
        self.write_pending()
        self.tick()
        noise_states = self.gathered(self.noise.get_state())
        cuda_states = self.gathered(torch.cuda.get_rng_state(self.device)) if self.device.type == "cuda" else None
        if self.rank != 0:
            return
        # the global generators too, though training draws only from its own: code that adds implicit
        # randomness (dropout, say) then still resumes exactly
        numpy_state = np.random.get_state()
        python_state = random.getstate()
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            **self.identity(),
            "model": self.vae.state_dict(),
            "best_model": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "progress": vars(self.progress),
            "rng": {
                "data": self.data_rng.bit_generator.state,
                "noise": noise_states,
                "torch": torch.get_rng_state(),
                "cuda": cuda_states,
                "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "rest": numpy_state[2:]},
                "python": (python_state[0], list(python_state[1]), python_state[2]),
            },
            "log_bytes": {STEPS_LOG: self.steps_log.flush(), EPOCHS_LOG: self.epochs_log.flush()},
        }
        atomic_save(checkpoint, self.checkpoint_path)

    # --- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Add the time since the last tick to the run's and the epoch's clocks."""
        now = time.monotonic()
        self.progress.elapsed_seconds += now - self.last_tick
        self.progress.epoch_seconds += now - self.last_tick
        self.last_tick = now

    def budget_spent(self) -> float:
        """Share of the training budget used: of max_minutes (all processes agree), else of max_epochs' steps.

        A time budget makes the schedule depend on the machine's speed; with max_minutes = 0 it is
        a function of the step alone, so the same seed gives the same run.
        """
        if self.config.max_minutes == 0:
            return self.progress.step / (self.config.max_epochs * self.batches_per_epoch)
        self.tick()
        elapsed = self.progress.elapsed_seconds
        if self.world_size > 1:  # the only device round trip of the budget: one process reads the clock alone
            slowest = torch.tensor([elapsed], device=self.device)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            elapsed = float(slowest.item())
        return elapsed / (60.0 * self.config.max_minutes)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Into Adam's groups; a tensor rate (a CUDA graph reads it) is overwritten in place."""
        self.learning_rate = learning_rate
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(learning_rate)
            else:
                group["lr"] = learning_rate

    def time_is_up(self) -> bool:
        """Whether the max_minutes budget is spent; under DDP all processes agree (any one's clock suffices)."""
        if self.config.max_minutes == 0:
            return False
        self.tick()
        up = self.progress.elapsed_seconds >= 60.0 * self.config.max_minutes
        if self.world_size > 1:
            flag = torch.tensor([float(up)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            up = bool(flag.item())
        return up

    # --- training ------------------------------------------------------------------------------

    def stop_reason(self) -> str | None:
        """Why the run should stop now, or None to train another epoch."""
        if self.progress.epochs_without_improvement >= self.config.early_stopping_patience:
            return "early_stopping"
        if self.progress.epoch >= self.config.max_epochs:
            return "max_epochs"
        if self.time_is_up():
            return "max_minutes"
        return None

    def summed(self, sums: Tensor) -> Tensor:
        """``sums`` added over processes, on the device."""
        if self.world_size > 1:
            dist.all_reduce(sums)
        return sums

    def train_step(self, batch: np.ndarray) -> PendingStep:
        """One optimiser step on this process' share of ``batch`` (uint8 [batch_size, steps]).

        Nothing in it waits for the device: its logged values stay there until ``write_pending``.
        """
        step = self.progress.step
        tokens = tokens_on(batch[self.rank :: self.world_size], self.device)  # (B / world, T)
        if self.config.lr_schedule == "exponential":
            self.set_learning_rate(exponential_learning_rate(self.config, step))
        elif self.config.lr_schedule == "cosine":
            self.set_learning_rate(cosine_learning_rate(self.config, self.budget_spent()))
        teacher_probability = teacher_forcing_probability(step, self.config.sampling_rate)
        try:
            sums, global_norm = self.steps(tokens, step, teacher_probability)
        except GraphCaptureError as error:
            if self.config.cuda_graphs is True:
                raise
            print(f"CUDA graph capture failed ({error}); training on with eager steps")
            self.step_path = "eager"
            self.steps = self.training_steps()
            sums, global_norm = self.steps(tokens, step, teacher_probability)
        return PendingStep(
            step + 1, self.progress.epoch + 1, self.summed(sums), global_norm, self.loss_config.beta_at(step),
            self.learning_rate, teacher_probability,
        )

    def write_pending(self) -> dict[str, float] | None:
        """Read the pending steps' values off the device in one go, log them and add them to the epoch's sums.

        Returns the last row (None if nothing was pending). FloatingPointError at the first step whose loss
        is not finite, after logging the steps before it: a chunk is written before every checkpoint, so the
        last checkpoint precedes that step.
        """
        pending, self.pending = self.pending, []
        self.last_written = time.monotonic()
        if not pending:
            return None
        sums = torch.stack([record.sums for record in pending]).tolist()
        norms = torch.stack([record.global_norm for record in pending]).tolist()
        rows = []
        for record, step_sums, global_norm in zip(pending, sums, norms):
            row = {
                "step": record.step,
                "epoch": record.epoch,
                **per_sequence_means(step_sums, record.beta),
                "global_norm": global_norm,
                "learning_rate": record.learning_rate,
                "teacher_probability": record.teacher_probability,
            }
            if not math.isfinite(row["loss"]):
                self.log_steps(rows)
                raise FloatingPointError(
                    f"loss is {row['loss']} at step {record.step} (epoch {record.epoch}) of {self.out_dir}; "
                    f"{self.checkpoint_path} precedes it: lower `learning_rate` or set bf16=False"
                )
            self.accumulate(row, self.config.batch_size, record.seconds)
            rows.append(row)
        self.log_steps(rows)
        return rows[-1]

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        """Append ``rows`` to steps.csv (rank 0 writes the files)."""
        if self.rank == 0:
            self.steps_log.write(rows)

    def accumulate(self, row: dict[str, float], sequences: int, seconds: float) -> None:
        """Add a step's row to the epoch's running sums."""
        sums = self.progress.sums
        for name, value in (
            ("sequences", sequences),
            ("loss", row["loss"] * sequences),
            ("r_loss", row["losses/r_loss"] * sequences),
            ("kl_bits", row["losses/kl_bits"] * sequences),
            ("beta", row["losses/kl_beta"]),
            ("accuracy", row["metrics/accuracy"]),
            ("global_norm", row["global_norm"]),
            ("steps", 1),
            ("train_seconds", seconds),
        ):
            sums[name] = sums.get(name, 0.0) + value
        sums["global_norm_max"] = max(sums.get("global_norm_max", 0.0), row["global_norm"])
        sums["learning_rate"] = row["learning_rate"]

    def run_epoch(self) -> None:
        """Train on the rest of the current epoch's batches (all of them unless resuming or out of time), then end it."""
        progress, size = self.progress, self.config.batch_size
        if progress.order is None:
            progress.order = torch.from_numpy(self.data_rng.permutation(len(self.train_windows)))
        bar = tqdm(
            total=self.batches_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch + 1}",
            unit="batch",
            mininterval=PROGRESS_SECONDS,
            leave=False,  # gone when the epoch ends: a long run would leave a line per epoch (epochs.csv has them)
            **({"disable": True} if self.rank else {}),  # rank 0's bar only; an explicit False would override TQDM_DISABLE
        )
        while progress.position < self.batches_per_epoch:
            started = time.monotonic()
            indices = progress.order[progress.position * size : (progress.position + 1) * size].numpy()
            batch = self.train_windows[indices]  # (B, T)
            if self.config.transpose_semitones:
                batch = transpose_windows(batch, self.config.transpose_semitones, self.data_rng)
            record = self.train_step(batch)
            progress.step += 1
            progress.position += 1
            record.seconds = time.monotonic() - started
            self.pending.append(record)
            if time.monotonic() - self.last_written >= PROGRESS_SECONDS and (row := self.write_pending()):
                # refresh=False: shown at the bar's next timed update, not one line per batch
                bar.set_postfix(loss=f"{row['loss']:.2f}", r_loss=f"{row['losses/r_loss']:.2f}", refresh=False)
            bar.update()
            mid_epoch = progress.position < self.batches_per_epoch
            if mid_epoch and progress.step % self.config.checkpoint_every_steps == 0:
                self.save_checkpoint()
            if mid_epoch and self.time_is_up():
                break
        bar.close()
        self.end_epoch()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Teacher-forced validation means; the same latent noise every epoch, so epochs compare fairly."""
        self.vae.eval()
        generator = torch.Generator(self.device).manual_seed(stream_seed(self.config.seed, VALID_STREAM, self.rank))
        windows = self.valid_windows[self.rank :: self.world_size]
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)
        for start in range(0, len(windows), self.config.valid_batch_size):
            tokens = torch.from_numpy(windows[start : start + self.config.valid_batch_size]).to(self.device).long()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, mu, sigma = self.vae(tokens, generator)
            parts = vae_loss(logits, tokens, mu, sigma, self.loss_config, self.progress.step)
            sums += batch_sums(parts, logits, tokens)
        self.vae.train()
        return per_sequence_means(self.summed(sums).tolist(), self.loss_config.beta_at(self.progress.step))

    def end_epoch(self) -> None:
        """Validate, update best weights, schedule and early-stopping count, log the epoch, checkpoint."""
        self.write_pending()
        progress, sums = self.progress, self.progress.sums
        valid = self.evaluate()
        if valid["loss"] < progress.best_valid_loss:
            progress.best_valid_loss, progress.best_epoch = valid["loss"], progress.epoch + 1
            progress.epochs_without_improvement = 0
            self.best_state = {name: tensor.detach().clone() for name, tensor in self.vae.state_dict().items()}
        else:
            progress.epochs_without_improvement += 1
        if self.scheduler is not None:
            self.scheduler.step(valid["loss"])
            self.learning_rate = float(self.optimizer.param_groups[0]["lr"])
        self.tick()
        steps, sequences = sums["steps"], sums["sequences"]
        row = {
            "epoch": progress.epoch + 1,
            "step": progress.step,
            "train/loss": sums["loss"] / sequences,
            "train/losses/r_loss": sums["r_loss"] / sequences,
            "train/losses/kl_bits": sums["kl_bits"] / sequences,
            "train/losses/kl_beta": sums["beta"] / steps,
            "train/metrics/accuracy": sums["accuracy"] / steps,
            **{f"valid/{name}": value for name, value in valid.items()},
            "learning_rate": sums["learning_rate"],
            "global_norm/mean": sums["global_norm"] / steps,
            "global_norm/max": sums["global_norm_max"],
            "seconds": progress.epoch_seconds,
            "sequences_per_second": sequences / sums["train_seconds"],
        }
        if self.rank == 0:
            self.epochs_log.write([row])
        progress.epoch += 1
        progress.position, progress.order, progress.epoch_seconds, progress.sums = 0, None, 0.0, {}
        self.save_checkpoint()

    def finish(self, stopped: str) -> TrainResult:
        """Write model.pt (best weights) and then done.json; return the best model."""
        progress = self.progress
        kept = half_precision(self.best_state)
        if self.rank == 0:
            atomic_save(
                {
                    "format": MODEL_FORMAT,
                    "model_config": asdict(self.model_config),
                    "loss_config": asdict(self.loss_config),
                    "train_config": asdict(self.config),
                    "state_dict": kept,
                    "epoch": progress.best_epoch,
                    "valid_loss": progress.best_valid_loss,
                },
                self.out_dir / MODEL_FILE,
            )
            summary = {
                "stopped": stopped,
                "epochs": progress.epoch,
                "steps": progress.step,
                "best_epoch": progress.best_epoch,
                "best_valid_loss": progress.best_valid_loss,
                "training_seconds": progress.elapsed_seconds,
                "sessions": progress.sessions,
                "bf16": self.bf16,
                "step_path": self.step_path,
                "device": str(self.device),
                "world_size": self.world_size,
                "identity": self.identity(),  # lets train_or_load tell this run from another
            }
            atomic_write_json(summary, self.out_dir / DONE_FILE)
            print(
                f"Stopped by {stopped} after {progress.epoch} epochs ({progress.step} steps); best epoch "
                f"{progress.best_epoch}, validation loss {progress.best_valid_loss:.3f}: {self.out_dir / MODEL_FILE}"
            )
        self.vae.load_state_dict(kept)  # the model returned now is the one load_model gives later
        return TrainResult(
            self.vae.eval(),
            self.out_dir,
            stopped,
            progress.epoch,
            progress.step,
            progress.best_epoch,
            progress.best_valid_loss,
            self.bf16,
            self.resumed,
            self.step_path,
        )

    def run(self) -> TrainResult:
        """Train epochs until a stop reason holds, then finish."""
        try:
            while (stopped := self.stop_reason()) is None:
                self.run_epoch()
        finally:
            for log in (self.steps_log, self.epochs_log):
                if log is not None:
                    log.close()
        return self.finish(stopped)


def train(
    model_config: ModelConfig,
    loss_config: LossConfig,
    train_config: TrainConfig,
    train_windows: np.ndarray,
    valid_windows: np.ndarray,
    out_dir: str | Path,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train a MusicVAE on ``train_windows`` (uint8 [n, steps]), validating on ``valid_windows`` after each epoch.

    Writes steps.csv, epochs.csv, checkpoint.pt, model.pt and done.json into ``out_dir`` (see the
    module docstring). Goes on from ``out_dir/checkpoint.pt`` if there is one, after checking it
    belongs to the same configs and data (CheckpointError otherwise). RunFinishedError if
    ``out_dir`` holds a finished run. ``device``: default CUDA if available, else CPU.
    """
    out_dir = Path(out_dir)
    done = out_dir / DONE_FILE
    if done.exists():
        raise RunFinishedError(
            f"{done} exists: the run in {out_dir} has finished. Train into a new folder, or delete {out_dir} to train again"
        )
    resolved = resolve_device(device)
    rank, world_size, joined_here = join_process_group(resolved)
    try:
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out_dir)
        if world_size > 1:
            dist.barrier()
        trainer = Trainer(
            model_config, loss_config, train_config, train_windows, valid_windows, out_dir, resolved, rank, world_size
        )
        return trainer.run()
    finally:
        if joined_here:
            dist.destroy_process_group()


def raises_budget(summary: Mapping[str, Any], config: TrainConfig) -> bool:
    """Whether ``config`` gives a run that its budget stopped (``done.json``'s ``summary``) more of that budget."""
    stored = summary["identity"]["train_config"]
    if summary["stopped"] == "max_minutes":
        return (config.max_minutes or math.inf) > stored["max_minutes"]  # 0 minutes: no time budget
    return summary["stopped"] == "max_epochs" and config.max_epochs > stored["max_epochs"]


def train_or_load(
    model_config: ModelConfig,
    loss_config: LossConfig,
    train_config: TrainConfig,
    train_windows: np.ndarray,
    valid_windows: np.ndarray,
    out_dir: str | Path,
    device: str | torch.device | None = None,
) -> TrainResult:
    """``train``, or, when ``out_dir`` holds a finished run of exactly these settings and data, that run.

    Re-running a notebook then re-uses its model instead of failing or training again; a finished
    run of other settings raises RunFinishedError naming what differs (it is never overwritten). A
    run stopped by its time or epoch budget goes on from its last checkpoint when this call raises
    that budget (``raises_budget``): the grid search's successive halving continues its best points.
    """
    out_dir = Path(out_dir)
    done = out_dir / DONE_FILE
    if not done.exists():
        return train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir, device)
    summary = json.loads(done.read_text())
    stored = summary.get("identity", {})
    wanted = {
        "model_config": asdict(model_config),
        "loss_config": asdict(loss_config),
        "train_config": asdict(train_config),
        "data_sha256": data_fingerprint(train_windows, valid_windows),
    }
    clashes = config_clashes(with_added_defaults({key: stored.get(key) for key in wanted}), wanted, RESUMED_SETTINGS)
    if clashes:
        raise RunFinishedError(
            f"{done}: a finished run with other settings is in {out_dir} ({'; '.join(clashes)}). "
            "Use another run folder, or delete this one to train again"
        )
    if raises_budget(summary, train_config):
        done.unlink()  # checkpoint.pt holds the run where it stopped: train goes on from there
        return train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir, device)
    print(f"{out_dir} holds a finished run of these settings: loading its model instead of training again")
    return TrainResult(
        load_model(out_dir / MODEL_FILE, device),
        out_dir,
        summary["stopped"],
        summary["epochs"],
        summary["steps"],
        summary["best_epoch"],
        summary["best_valid_loss"],
        summary["bf16"],
        resumed=False,
        step_path=summary.get("step_path", "eager"),  # runs finished before the graph path existed ran eagerly
    )


# ---------------------------------------------------------------------------------------------
# Reading the logs: the loss spikes the thesis saw

SPIKE_WINDOW = 100  # previous steps whose median a step is compared with
SPIKE_RATIO = 1.2  # a spike lies at least 20 % above that median
RECOVERED_RATIO = 1.2  # a next step below this many times the median: the loss came straight back


def loss_spikes(steps: pd.DataFrame) -> pd.DataFrame:
    """Rows of steps.csv whose loss lies ``SPIKE_RATIO`` times above the median of the steps just before it.

    The median of the ``SPIKE_WINDOW`` previous steps (at least half of them) follows the falling
    trend from behind, so a falling loss never counts as a spike, the fast fall at the start
    included. Adds ``running_median``, ``ratio`` and ``next_ratio`` (the following step's loss
    over the same median: how fast the loss comes back).
    """
    loss = steps["loss"]
    median = loss.shift(1).rolling(SPIKE_WINDOW, min_periods=SPIKE_WINDOW // 2).median()
    spikes = steps.assign(running_median=median, ratio=loss / median, next_ratio=loss.shift(-1) / median)
    return spikes[(loss > SPIKE_RATIO * median).fillna(False)].reset_index(drop=True)


def describe_spikes(steps: pd.DataFrame, spikes: pd.DataFrame, grad_clip: float) -> str:
    """Sentences on what the logs say about the spikes: how many, recovery, gradient norms, learning rate."""
    clipped_overall = (steps["global_norm"] > grad_clip).mean()
    clipping = (
        f"The gradient norm exceeds the clipping threshold of {grad_clip:g} on {clipped_overall:.0%} of all steps "
        f"(median norm {steps['global_norm'].median():.1f}), so clipping caps every update's size rather than "
        "reacting to spikes. "
        if clipped_overall > 0.9
        else f"The gradient norm exceeds the clipping threshold of {grad_clip:g} on {clipped_overall:.0%} of steps. "
    )
    if spikes.empty:
        return f"No loss spikes in {len(steps):,} steps (none {SPIKE_RATIO:g}x above the recent median). " + clipping
    recovery = spikes["next_ratio"].median()
    return (
        f"{len(spikes)} spikes in {len(steps):,} steps; the median spike is {spikes['ratio'].median():.2f}x the "
        f"median loss of the {SPIKE_WINDOW} steps before it, and the next step is at {recovery:.2f}x: "
        + ("the loss comes straight back, so a spike is one hard batch, not a divergence. "
           if recovery < RECOVERED_RATIO else "the loss stays up for more than one step. ")
        + f"At spikes the gradient norm is {spikes['global_norm'].median() / steps['global_norm'].median():.1f}x the "
        f"typical one. " + clipping
        + f"Spikes fall at learning rates {spikes['learning_rate'].min():.2g}..{spikes['learning_rate'].max():.2g} "
        f"(the run used {steps['learning_rate'].min():.2g}..{steps['learning_rate'].max():.2g})."
    )
