"""Training: Adam with the thesis' schedule, Magenta's log names, checkpoints that resume bit for bit.

One call, ``train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir)``,
trains a MusicVAE into ``out_dir`` (``train_or_load`` re-uses a finished run of the same settings).
One module per concept, read in this order:

- ``config``: ``TrainConfig``, ``TrainResult``, the errors, and how a stored run is told from this call's;
- ``schedules``: learning rate (plateau, exponential, cosine), teacher forcing, the thesis' Adam;
- ``device``: device, bf16, the step path (eager or CUDA graph), DDP processes, seeds by rank;
- ``steps``: one optimiser step, eager or captured as a CUDA graph, and the bf16 timing;
- ``checkpoint``: checkpoint.pt, model.pt and done.json, written atomically, ``load_model``;
- ``logs``: steps.csv and epochs.csv, their sums, and the loss spikes read off them;
- ``clock``: the step budget spent and the time guard, agreed over DDP processes without a host sync per step;
- ``trainer``: the loop (``Trainer``, ``train``); ``reuse``: ``train_or_load``.

The names notebooks and tests use are re-exported here: ``from musicvae_lib import training``. Settings
read at run time stay in their module (``training.logs.PROGRESS_SECONDS``), where setting them takes effect.
"""

from musicvae_lib.run_folder import CHECKPOINT_FILE, DONE_FILE, EPOCHS_LOG, MODEL_FILE, STEPS_LOG, data_fingerprint
from musicvae_lib.training.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    Progress,
    atomic_save,
    atomic_write_json,
    half_precision,
    load_file,
    load_model,
    source_commit,
)
from musicvae_lib.training.clock import BudgetClock
from musicvae_lib.training.config import (
    LR_SCHEDULES,
    RESUMED_SETTINGS,
    STOP_REASONS,
    CheckpointError,
    RunFinishedError,
    TrainConfig,
    TrainResult,
    budget_steps,
    config_clashes,
    describe_stop,
    with_added_defaults,
)
from musicvae_lib.training.device import (
    bf16_supported,
    cuda_graph_obstacles,
    join_process_group,
    resolve_bf16,
    resolve_device,
    step_path,
    stream_seed,
    synchronize,
)
from musicvae_lib.training.logs import EPOCH_COLUMNS, STEP_COLUMNS, TIMING_COLUMNS, CsvLog, describe_spikes, loss_spikes
from musicvae_lib.training.reuse import raises_budget, train_or_load
from musicvae_lib.training.schedules import (
    adam,
    cosine_learning_rate,
    exponential_learning_rate,
    keep_implementation,
    plateau_schedule,
    teacher_forcing_probability,
)
from musicvae_lib.training.steps import (
    STEP_CLASSES,
    CapturedStep,
    GraphCaptureError,
    TrainingStep,
    batch_sums,
    bf16_is_faster,
)
from musicvae_lib.training.trainer import Trainer, train

__all__ = [  # the public names, as ``train.py`` offered them before it became this package
    "adam",
    "atomic_save",
    "atomic_write_json",
    "batch_sums",
    "bf16_is_faster",
    "bf16_supported",
    "BudgetClock",
    "CapturedStep",
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "config_clashes",
    "cosine_learning_rate",
    "CsvLog",
    "cuda_graph_obstacles",
    "data_fingerprint",
    "describe_spikes",
    "DONE_FILE",
    "EPOCH_COLUMNS",
    "EPOCHS_LOG",
    "exponential_learning_rate",
    "GraphCaptureError",
    "half_precision",
    "join_process_group",
    "keep_implementation",
    "load_file",
    "load_model",
    "loss_spikes",
    "LR_SCHEDULES",
    "MODEL_FILE",
    "MODEL_FORMAT",
    "plateau_schedule",
    "Progress",
    "raises_budget",
    "resolve_bf16",
    "resolve_device",
    "RESUMED_SETTINGS",
    "RunFinishedError",
    "STEP_CLASSES",
    "STEP_COLUMNS",
    "step_path",
    "STEPS_LOG",
    "stream_seed",
    "synchronize",
    "teacher_forcing_probability",
    "TIMING_COLUMNS",
    "train",
    "train_or_load",
    "TrainConfig",
    "Trainer",
    "TrainingStep",
    "TrainResult",
    "with_added_defaults",
    "budget_steps",
    "describe_stop",
    "source_commit",
    "STOP_REASONS",
]
