"""How a run is configured, what it returns, the errors it raises, and how a stored run is told from this call's."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Collection, Mapping

from musicvae_lib.budgets import STOP_REASONS, describe_stop  # noqa: F401 (re-exported)
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import ModelConfig, MusicVAE

LR_SCHEDULES = ("plateau", "exponential", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How a MusicVAE is trained. Defaults: the thesis' (Adam 1e-3, batch 64, L2 1e-6, plateau, early stop)."""

    learning_rate: float = 1e-3  # thesis and Magenta
    batch_size: int = 64  # thesis; global over DDP processes; an epoch's last incomplete batch is dropped
    weight_decay: float = 1e-6  # thesis' L2 penalty, added to the gradient by Adam (not AdamW's decoupled decay)
    # "plateau": the thesis' ReduceLROnPlateau; "exponential": Magenta's decay; "cosine": from learning_rate
    # down to min_learning_rate over the step budget (``budget_steps``)
    lr_schedule: str = "plateau"
    plateau_factor: float = 0.5  # thesis: halve the learning rate ...
    plateau_patience: int = (
        2  # ... after MORE than 2 epochs without a lower validation loss (torch's rule; Keras cuts after 2)
    )
    min_learning_rate: float = 1e-5  # floor of every schedule; plateau from 1e-3 reaches it after 7 halvings
    decay_rate: float = 0.9999  # Magenta: lr_t = (lr - min_lr) * decay_rate**step + min_lr
    early_stopping_patience: int = 5  # thesis: stop after 5 epochs without a lower validation loss
    grad_clip: float = 1.0  # global-norm clipping, Magenta's grad_clip
    max_epochs: int = 100  # a ceiling; early stopping or max_steps usually end the run first
    max_steps: int = 0  # the budget in optimiser steps, summed over resumed sessions; 0 = max_epochs' steps
    # a guard, not a budget: the run stops when its training time summed over resumed sessions reaches this, and
    # done.json says so (stopped "max_minutes"; its numbers then depend on the machine's speed); 0 = no guard
    max_minutes: float = 0.0
    transpose_semitones: int = 0  # augmentation: shift each window by up to +-N semitones; 0 = off
    sampling_rate: float = 0.0  # scheduled sampling, Magenta's inverse-sigmoid rate k; 0 = teacher forcing
    # Bowman et al. 2016's word dropout: each teacher-forced decoder input (the previous token's one-hot) is blanked
    # with this probability, so the decoder must lean on z; training only; 0 = off
    decoder_input_dropout: float = 0.0
    # autocast to bfloat16; "auto": where the device has native bf16 kernels and, on CUDA, a timing of a few
    # steps each way at the start finds it faster (``resolve_bf16``); a resumed run keeps its first choice
    bf16: str | bool = "auto"
    # the teacher-forced step as one CUDA graph (no launch overhead); "auto": where step_path allows it. Off by
    # default: the capture has not yet passed its test on a GPU (README "On a GPU")
    cuda_graphs: str | bool = False
    valid_batch_size: int = 512  # validation has no gradients: larger batches only save time
    checkpoint_every_steps: int = 200  # besides the checkpoint after every epoch
    seed: int = 0  # weights, batch order, augmentation and latent noise all derive from it

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"`lr_schedule` must be one of {', '.join(map(repr, LR_SCHEDULES))}, got {self.lr_schedule!r}"
            )
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
            "max_steps",
            "sampling_rate",
            "plateau_patience",
            "early_stopping_patience",
            "transpose_semitones",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.decoder_input_dropout < 1:
            raise ValueError(f"`decoder_input_dropout` must be in [0, 1), got {self.decoder_input_dropout}")
        if self.decoder_input_dropout and self.sampling_rate:
            raise ValueError(
                "`decoder_input_dropout` blanks teacher-forced inputs; with scheduled sampling (`sampling_rate` > 0) "
                "the inputs are partly the model's own samples: set one of them to 0"
            )
        if not 0 < self.plateau_factor < 1 or not 0 < self.decay_rate <= 1 or self.grad_clip <= 0:
            raise ValueError(
                "need 0 < plateau_factor < 1, 0 < decay_rate <= 1 and grad_clip > 0, got "
                f"{self.plateau_factor}, {self.decay_rate}, {self.grad_clip}"
            )


def budget_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The run's step budget: ``max_steps``, or ``max_epochs`` x ``steps_per_epoch`` if that is fewer or none is set."""
    ceiling = config.max_epochs * steps_per_epoch
    return min(config.max_steps, ceiling) if config.max_steps else ceiling


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What ``train`` returns; ``done.json`` holds the same numbers."""

    model: MusicVAE = field(repr=False)  # best-validation weights, eval mode, on the training device
    out_dir: Path
    stopped: str  # one of STOP_REASONS
    epochs: int  # epochs run; one cut short by max_steps or max_minutes counts
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


# TrainConfig fields a resumed or re-used run may change: none alters the trajectory up to where the run
# stands (a longer budget, how often it checkpoints, how its steps are launched on a GPU, not what they
# compute). Named as config_clashes names them.
RESUMED_SETTINGS = frozenset(
    {
        "train_config.max_epochs",
        "train_config.max_steps",
        "train_config.max_minutes",
        "train_config.checkpoint_every_steps",
        "train_config.cuda_graphs",
    }
)


def config_clashes(
    stored: Mapping[str, Any],
    wanted: Mapping[str, Any],
    ignore: Collection[str] = (),
    stored_as: str = "there",
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
    for key, config_class in (
        ("model_config", ModelConfig),
        ("loss_config", LossConfig),
        ("train_config", TrainConfig),
    ):
        if isinstance(stored.get(key), dict):
            defaults = {spec.name: spec.default for spec in fields(config_class) if spec.default is not MISSING}
            filled[key] = defaults | stored[key]
    return filled
