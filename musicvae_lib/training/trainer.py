"""The training loop: epochs of steps, validation, best weights, early stopping, checkpoints; ``train`` runs it.

``train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir)`` trains a
MusicVAE and writes into ``out_dir`` steps.csv and epochs.csv (``logs``), checkpoint.pt every
``checkpoint_every_steps`` steps and after each epoch, model.pt and done.json (``checkpoint``).

A run killed at any moment and started again with the same arguments resumes from its last
checkpoint and, on CPU, ends with the same weights and logs as a run never interrupted: every
random draw comes from generators whose states the checkpoint holds.

Under ``torchrun`` (RANK and WORLD_SIZE set) the model is wrapped in DistributedDataParallel, each
process takes its share of every batch, and only rank 0 writes files.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from musicvae_lib.data import transpose_windows
from musicvae_lib.loss import LossConfig, vae_loss
from musicvae_lib.model import ModelConfig, MusicVAE
from musicvae_lib.representation import check_windows
from musicvae_lib.run_folder import EPOCHS_LOG, STEPS_LOG, data_fingerprint
from musicvae_lib.training import logs
from musicvae_lib.training.checkpoint import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    DONE_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    Progress,
    atomic_save,
    atomic_write_json,
    check_same_run,
    half_precision,
    load_file,
    random_states,
    remove_stale_temporaries,
    restore_random_states,
    source_commit,
)
from musicvae_lib.training.clock import BudgetClock
from musicvae_lib.training.config import (
    CheckpointError,
    RunFinishedError,
    TrainConfig,
    TrainResult,
    describe_stop,
)
from musicvae_lib.training.device import (
    DATA_STREAM,
    NOISE_STREAM,
    VALID_STREAM,
    join_process_group,
    resolve_bf16,
    resolve_device,
    step_path,
    stream_seed,
    tokens_on,
)
from musicvae_lib.training.logs import (
    EPOCH_COLUMNS,
    STEP_COLUMNS,
    CsvLog,
    PendingStep,
    add_to_epoch_sums,
    epoch_row,
    per_sequence_means,
    step_row,
)
from musicvae_lib.training.schedules import (
    adam,
    cosine_learning_rate,
    exponential_learning_rate,
    keep_implementation,
    plateau_schedule,
    teacher_forcing_probability,
)
from musicvae_lib.training.steps import STEP_CLASSES, GraphCaptureError, TrainingStep, batch_sums, bf16_is_faster


class Trainer:
    """One training run in one folder: the loop of epochs and steps; ``train`` is the entry point."""

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
        self.train_windows, self.valid_windows = (  # contiguous uint8 [n, steps]
            np.ascontiguousarray(check_windows(windows, model_config.steps, name, allow_empty=False), dtype=np.uint8)
            for windows, name in ((train_windows, "train_windows"), (valid_windows, "valid_windows"))
        )
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
            torch.default_generator.manual_seed(config.seed)  # (torch.manual_seed would reseed CUDA's too, unrestored)
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
        self.clock = BudgetClock(config, self.batches_per_epoch, device, world_size)
        log_sizes = self.resume(checkpoint) if checkpoint is not None else {STEPS_LOG: None, EPOCHS_LOG: None}
        self.progress.sessions += 1
        self.progress.session_commits.append({**source_commit(), "from_step": self.progress.step})
        self.learning_rate = float(self.optimizer.param_groups[0]["lr"])  # kept here: reading a device tensor waits
        self.steps = self.training_steps()
        self.pending: list[PendingStep] = []
        self.last_written = time.monotonic()
        self.steps_log = self.epochs_log = None
        if rank == 0:
            self.steps_log = CsvLog(out_dir / STEPS_LOG, STEP_COLUMNS, log_sizes[STEPS_LOG])
            self.epochs_log = CsvLog(out_dir / EPOCHS_LOG, EPOCH_COLUMNS, log_sizes[EPOCHS_LOG])

    # --- setting up: precision, steps, resuming ---------------------------------------------------

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

    def training_steps(self) -> TrainingStep:
        """The step of this run's ``step_path``, on its model, Adam, loss, precision and noise."""
        return STEP_CLASSES[self.step_path](
            self.vae,
            self.optimizer,
            self.loss_config,
            self.config.grad_clip,
            self.bf16,
            self.noise,
            self.training_pass,
            self.config.decoder_input_dropout,
        )

    def choose_bf16(self, checkpoint: dict[str, Any] | None) -> bool:
        """The run's precision: ``resolve_bf16``, on CUDA timing a few steps each way (``bf16_is_faster``; under DDP
        rank 0's choice). A resumed run keeps its checkpoint's choice: it never re-times."""
        if checkpoint is not None and self.config.bf16 == "auto" and isinstance(checkpoint.get("bf16"), bool):
            return checkpoint["bf16"]
        choice = resolve_bf16(
            self.config.bf16,
            self.device,
            lambda: bf16_is_faster(
                self.vae, self.loss_config, self.config, self.device, self.step_path, self.world_size
            ),
        )
        if self.world_size > 1:
            shared = [choice]
            dist.broadcast_object_list(shared, src=0)
            choice = shared[0]
        return choice

    def resume(self, checkpoint: dict[str, Any]) -> dict[str, int]:
        """Restore everything from ``checkpoint`` (this run's checkpoint.pt); returns the log sizes it recorded."""
        check_same_run(checkpoint, self.identity(), self.checkpoint_path)
        try:
            self.vae.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            keep_implementation(self.optimizer, self.graph_device)
            if self.scheduler is not None:
                self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.progress = Progress(**checkpoint["progress"])
            self.best_state = checkpoint["best_model"]
            restore_random_states(checkpoint["rng"], self.data_rng, self.noise, self.rank, self.device)
            log_sizes = dict(checkpoint["log_bytes"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{self.checkpoint_path} is incomplete or inconsistent ({type(error).__name__}: {error})"
            ) from error
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
        self.clock.tick(self.progress)
        noise_states = self.gathered(self.noise.get_state())
        cuda_states = self.gathered(torch.cuda.get_rng_state(self.device)) if self.device.type == "cuda" else None
        if self.rank != 0:
            return
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            **self.identity(),
            "model": self.vae.state_dict(),
            "best_model": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "progress": vars(self.progress),
            "rng": random_states(self.data_rng, noise_states, cuda_states),
            "log_bytes": {STEPS_LOG: self.steps_log.flush(), EPOCHS_LOG: self.epochs_log.flush()},
        }
        atomic_save(checkpoint, self.checkpoint_path)

    # --- the loop ------------------------------------------------------------------------------

    def set_learning_rate(self, learning_rate: float) -> None:
        """Into Adam's groups; a tensor rate (a CUDA graph reads it) is overwritten in place."""
        self.learning_rate = learning_rate
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(learning_rate)
            else:
                group["lr"] = learning_rate

    def stop_reason(self) -> str | None:
        """Why the run should stop now, or None to train another epoch."""
        if self.progress.epochs_without_improvement >= self.config.early_stopping_patience:
            return "early_stopping"
        if self.config.max_steps and self.clock.steps_are_up(self.progress):
            return "max_steps"
        if self.progress.epoch >= self.config.max_epochs:
            return "max_epochs"
        if self.clock.time_is_up(self.progress, agree_now=True):
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
            self.set_learning_rate(cosine_learning_rate(self.config, self.clock.budget_spent(self.progress)))
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
            step + 1,
            self.progress.epoch + 1,
            self.summed(sums),
            global_norm,
            self.loss_config.beta_at(step),
            self.learning_rate,
            teacher_probability,
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
            row = step_row(record, step_sums, global_norm)
            if not math.isfinite(row["loss"]):
                self.log_steps(rows)
                raise FloatingPointError(
                    f"loss is {row['loss']} at step {record.step} (epoch {record.epoch}) of {self.out_dir}; "
                    f"{self.checkpoint_path} precedes it: lower `learning_rate` or set bf16=False"
                )
            add_to_epoch_sums(self.progress.sums, row, self.config.batch_size, record.seconds)
            rows.append(row)
        self.log_steps(rows)
        return rows[-1]

    def log_steps(self, rows: list[dict[str, float]]) -> None:
        """Append ``rows`` to steps.csv (rank 0 writes the files)."""
        if self.rank == 0:
            self.steps_log.write(rows)

    def run_epoch(self) -> None:
        """Train on the rest of the current epoch's batches (all of them unless resuming or out of time),
        then end it."""
        progress, size = self.progress, self.config.batch_size
        if progress.order is None:
            progress.order = torch.from_numpy(self.data_rng.permutation(len(self.train_windows)))
        bar = tqdm(
            total=self.batches_per_epoch,
            initial=progress.position,
            desc=f"epoch {progress.epoch + 1}",
            unit="batch",
            mininterval=logs.PROGRESS_SECONDS,
            leave=False,  # gone when the epoch ends: a long run would leave a line per epoch (epochs.csv has them)
            # rank 0's bar only; an explicit False would override TQDM_DISABLE
            **({"disable": True} if self.rank else {}),
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
            if time.monotonic() - self.last_written >= logs.PROGRESS_SECONDS and (row := self.write_pending()):
                # refresh=False: shown at the bar's next timed update, not one line per batch
                bar.set_postfix(loss=f"{row['loss']:.2f}", r_loss=f"{row['losses/r_loss']:.2f}", refresh=False)
            bar.update()
            mid_epoch = progress.position < self.batches_per_epoch
            if mid_epoch and progress.step % self.config.checkpoint_every_steps == 0:
                self.save_checkpoint()
            if mid_epoch and (self.clock.steps_are_up(progress) or self.clock.time_is_up(progress)):
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
        progress = self.progress
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
        self.clock.tick(progress)
        if self.rank == 0:
            self.epochs_log.write(
                [epoch_row(progress.epoch + 1, progress.step, progress.sums, valid, progress.epoch_seconds)]
            )
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
                "budget_steps": self.clock.budget_steps,
                "best_epoch": progress.best_epoch,
                "best_valid_loss": progress.best_valid_loss,
                "training_seconds": progress.elapsed_seconds,
                "sessions": progress.sessions,
                "session_commits": progress.session_commits,  # which code took the run from which step
                "bf16": self.bf16,
                "step_path": self.step_path,
                "device": str(self.device),
                "world_size": self.world_size,
                "identity": self.identity(),  # lets train_or_load tell this run from another
                **source_commit(),  # the code that trained it: git_commit, git_dirty
            }
            atomic_write_json(summary, self.out_dir / DONE_FILE)
            print(
                f"Stopped by {describe_stop(stopped, progress.step, self.clock.budget_steps, self.config.max_minutes)}"
                f" after {progress.epoch} epochs ({progress.step} steps); best epoch "
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
            f"{done} exists: the run in {out_dir} has finished. Train into a new folder, or delete {out_dir} to train "
            "again"
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
