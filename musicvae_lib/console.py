"""What a terminal shows: progress bars kept at their last state, in log files and in executed notebooks.

A progress bar redraws its line with carriage returns; a terminal shows only the last state, a
file or a notebook's stream output keeps every redraw. ``terminal_line`` and ``terminal_text`` keep
what a terminal shows; ``output_to`` writes a log that way (the grid search's train.log), and the
runner tidies executed notebooks with ``terminal_text``. No heavy imports: the runner stands on it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


def terminal_line(line: str) -> str:
    """What a terminal shows of one line: a carriage return starts it again, so a progress bar keeps its last state,
    and a bar that clears itself when done (tqdm's ``leave=False``: spaces, then a carriage return) leaves nothing."""
    shown = [state for state in line.split("\r") if state]  # a trailing carriage return starts no new state
    return shown[-1].rstrip() if shown else ""


def terminal_text(text: str) -> str:
    """What a terminal shows of ``text`` (``terminal_line`` for each line)."""
    return "\n".join(terminal_line(line) for line in text.split("\n"))


class TerminalLog(io.TextIOBase):
    """A log file written as a terminal shows it (``terminal_line``): a progress bar leaves one line, its last
    state, not one per redraw; the runner tidies executed notebooks the same way."""

    def __init__(self, handle: TextIO) -> None:
        self.handle, self.line = handle, ""

    def write(self, text: str) -> int:
        *ended, self.line = (self.line + text).split("\n")
        for line in ended:
            self.handle.write(terminal_line(line) + "\n")
        return len(text)

    def flush(self) -> None:
        self.handle.flush()


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """stdout and stderr (a training's lines and bars) appended to ``log`` as a terminal shows them."""
    with open(log, "a") as handle, TerminalLog(handle) as writer:
        try:
            with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
                yield
        finally:
            writer.write("\n" if writer.line else "")  # the last line, if it lacked its newline
