import socket

import pytest
import torch
import torch.distributed as dist

from musicvae_lib.training import BudgetClock, Progress, TrainConfig
from musicvae_lib.training.clock import AGREE_SECONDS


def test_one_process_reads_its_own_clock_at_every_call_and_spends_its_budget_in_steps():
    clock, progress = BudgetClock(TrainConfig(max_minutes=1.0, max_epochs=4), 10, torch.device("cpu"), 1), Progress()
    progress.elapsed_seconds, progress.step = 30.0, 10
    assert not clock.time_is_up(progress)
    assert clock.budget_spent(progress) == 0.25  # the guard's minutes spend no budget: steps do
    progress.elapsed_seconds = 61.0
    assert clock.time_is_up(progress) and clock.budget_spent(progress) == 0.25
    steps = BudgetClock(TrainConfig(max_epochs=4, max_steps=25), 10, torch.device("cpu"), 1)  # fewer than 4 x 10
    assert steps.budget_steps == 25 and steps.budget_spent(progress) == 0.4 and not steps.time_is_up(progress)
    assert not steps.steps_are_up(progress)
    progress.step = 25
    assert steps.steps_are_up(progress)
    assert BudgetClock(TrainConfig(max_epochs=2, max_steps=25), 10, torch.device("cpu"), 1).budget_steps == 20


@pytest.fixture
def process_group():
    """A real one-process gloo group: its all-reduce is the agreement a DDP clock makes."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_processes_agree_every_few_seconds_and_extrapolate_alike_between(process_group):
    clock, progress = BudgetClock(TrainConfig(max_minutes=10.0), 100, torch.device("cpu"), 2), Progress()
    assert clock.elapsed(progress) == pytest.approx(0.0, abs=0.1)  # step 0: the first agreement
    progress.step, progress.elapsed_seconds = 1, 1.0  # one step took a second
    assert clock.elapsed(progress) == pytest.approx(1.0, abs=0.1)  # the pace is not known yet: agree again
    assert clock.next_agreement == 1 + int(AGREE_SECONDS / clock.pace)
    progress.step, progress.elapsed_seconds = 3, 100.0  # this process' own clock, between agreements
    assert clock.elapsed(progress) == pytest.approx(3.0, abs=0.2)  # the agreed time and pace, not this clock
    assert clock.elapsed(progress, agree_now=True) == pytest.approx(100.0, abs=0.1)
    progress.step = clock.next_agreement
    assert clock.elapsed(progress) == pytest.approx(100.0, abs=0.1)  # the scheduled agreement reads the clocks
