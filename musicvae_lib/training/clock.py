"""The training clock: time summed over a run's sessions (what the ``max_minutes`` guard limits), and the budget spent.

One process reads its own clock at every call. Processes under DDP must agree on it (when to stop, the
cosine schedule's rate), and agreeing is an all-reduce whose result the host must read: a wait for the
device, which a step must not have. So they agree only about every ``AGREE_SECONDS``, at steps every
process computes alike from the last agreed time and pace, and in between extrapolate from them: the
same number on every process, without a device round trip.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from musicvae_lib.training.checkpoint import Progress
from musicvae_lib.training.config import TrainConfig, budget_steps

AGREE_SECONDS = 5.0  # under DDP, about how often the processes agree on the time spent


class BudgetClock:
    """Adds wall time to a run's ``Progress``, says how much of its step budget is spent and whether the time
    guard (``max_minutes``) is reached.

    The budget is steps (``config.budget_steps``): what is spent is a function of the step alone, so the
    same seed gives the same run on any machine unless the guard stops it.
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int, device: torch.device, world_size: int):
        self.budget_seconds = 60.0 * config.max_minutes
        self.budget_steps = budget_steps(config, steps_per_epoch)
        self.device, self.world_size = device, world_size
        self.last_tick = time.monotonic()
        self.agreed_step, self.agreed_seconds = -1, 0.0  # the last agreement (none yet)
        self.pace = 0.0  # agreed seconds per step between the last two agreements; 0: not known yet
        self.next_agreement = 0  # the step at which the processes agree next

    def tick(self, progress: Progress) -> None:
        """Add the time since the last tick to the run's and the epoch's clocks."""
        now = time.monotonic()
        progress.elapsed_seconds += now - self.last_tick
        progress.epoch_seconds += now - self.last_tick
        self.last_tick = now

    def elapsed(self, progress: Progress, agree_now: bool = False) -> float:
        """Training seconds spent, alike on every process: this one's clock alone; under DDP see the module docstring.

        ``agree_now``: agree at this call whatever the step (every process must make the call).
        """
        self.tick(progress)
        if self.world_size == 1:
            return progress.elapsed_seconds
        if agree_now or progress.step >= self.next_agreement:
            slowest = torch.tensor([progress.elapsed_seconds], device=self.device)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            seconds = float(slowest.item())
            if 0 <= self.agreed_step < progress.step:
                self.pace = (seconds - self.agreed_seconds) / (progress.step - self.agreed_step)
            self.agreed_step, self.agreed_seconds = progress.step, seconds
            steps = int(AGREE_SECONDS / self.pace) if self.pace > 0 else 1
            self.next_agreement = progress.step + max(steps, 1)
            return seconds
        return self.agreed_seconds + (progress.step - self.agreed_step) * self.pace

    def budget_spent(self, progress: Progress) -> float:
        """Share of the step budget used."""
        return progress.step / self.budget_steps

    def steps_are_up(self, progress: Progress) -> bool:
        """Whether the step budget is spent."""
        return progress.step >= self.budget_steps

    def time_is_up(self, progress: Progress, agree_now: bool = False) -> bool:
        """Whether the max_minutes guard is reached (never without one); under DDP all processes agree."""
        if self.budget_seconds == 0:
            return False
        return self.elapsed(progress, agree_now) >= self.budget_seconds
