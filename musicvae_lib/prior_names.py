"""The study's priors by name, without torch: what ``prior/choice.json`` says and the row notebook 07 gives it.

``prior`` fits and draws from the priors; the report and the seed spread (which must stay light to
import) only need their names, which are kept here so that both spell them alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRIORS = ("neighbours", "mixture", "normal")  # the neighbour blend, the fitted mixture, or N(0, I)


@dataclass(frozen=True)
class BlendKnobs:
    """The neighbour blend's knobs: ``neighbours`` k nearest windows to move towards, a ``share`` t of the way,
    posterior standard deviations times ``scale`` s."""

    neighbours: int
    share: float
    scale: float

    def __post_init__(self) -> None:
        if self.neighbours < 1 or not 0 <= self.share <= 1 or self.scale <= 0:
            raise ValueError(f"need neighbours >= 1, 0 <= share <= 1 and scale > 0, got {self}")

    def label(self) -> str:
        """'neighbour blend k=1, t=0.5, s=1.25': a row name in the chapters' tables."""
        return f"neighbour blend k={self.neighbours}, t={self.share:g}, s={self.scale:g}"


def check_prior_name(name: str) -> None:
    """ValueError unless ``name`` is one of ``PRIORS``: notebook 03 checks it before training, not after."""
    if name not in PRIORS:
        raise ValueError(f"`prior` must be one of {PRIORS}, got {name!r}")


def mixture_row(spread: float) -> str:
    """The row of the fitted mixture drawn with its standard deviations times ``spread``."""
    return f"mixture, spread {spread:g}" if spread != 1 else "mixture as fitted"


def blend_knobs(choice: Mapping[str, Any]) -> BlendKnobs | None:
    """The knobs of the neighbour blend a ``prior/choice.json`` records; None without one."""
    blend = choice.get("blend")
    return None if blend is None else BlendKnobs(int(blend["neighbours"]), blend["share"], blend["scale"])


def compared_row(choice: Mapping[str, Any]) -> str:
    """The row notebook 07 gives the prior a ``prior/choice.json`` draws from (``prior.StudyPrior.compared_name``)."""
    check_prior_name(choice["prior"])
    if choice["prior"] == "normal":
        return "N(0, I)"
    knobs = blend_knobs(choice)
    if choice["prior"] == "neighbours":
        if knobs is None:
            raise ValueError('prior "neighbours" needs the neighbour blend\'s knobs ("blend")')
        return knobs.label()
    return mixture_row(float(choice.get("spread", 1.0)))
