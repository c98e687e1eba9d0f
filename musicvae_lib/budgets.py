"""Why a training run ended, in words: read from done.json without torch (the report uses it).

A run's budget is steps (``TrainConfig.max_steps``, else ``max_epochs``' steps); ``max_minutes`` is a time
guard that stops a run on a machine far slower than planned, and says so.
"""

from __future__ import annotations

from typing import Any, Mapping

# why a run ends, checked in this order after every epoch (max_steps and max_minutes also within one)
STOP_REASONS = ("early_stopping", "max_steps", "max_epochs", "max_minutes")


def describe_stop(stopped: str, steps: int, budget: int | None, max_minutes: float) -> str:
    """Why a run ended, in words, e.g. "the time guard (25 minutes) at step 9,120 of 13,203". Every caller gives the
    step count beside it, so a run that used its whole budget is not told its steps twice ("its step budget").

    ``budget``: done.json's ``budget_steps``; None for a run made before budgets were steps, whose
    ``max_minutes`` was its budget rather than a guard.
    """
    if stopped == "max_minutes":
        if budget is None:
            return f"its {f'{max_minutes:g}-minute' if max_minutes else 'time'} budget"
        return f"the time guard ({max_minutes:g} minutes) at step {steps:,} of {budget:,}"
    if stopped == "max_steps":
        return "its step budget"
    return stopped.replace("_", " ")


def stop_of(done: Mapping[str, Any]) -> str:
    """``describe_stop`` for a finished run's done.json (one without its settings: no guard known)."""
    guard = done.get("identity", {}).get("train_config", {}).get("max_minutes", 0.0)
    return describe_stop(done["stopped"], done["steps"], done.get("budget_steps"), guard)
