"""The thesis' findings on its generated melodies beside what a run measures for its own: a verdict per finding.

The thesis (Lerch, *Generation of Symbolic Music Based on MusicVAE*, Fraunhofer IDMT 2023) set its
generated melodies beside held-out test melodies and saw four things, said here in our words: more
onsets on odd 16ths in the generated set; note lengths whose peaks (how often the common lengths
occur) the generated set does not copy; large pitch jumps; melodies mostly diatonic, with some notes
outside the scale. Each function below reads one finding's numbers from a run folder's tables
(notebook 05's and 06's, nothing recomputed: one definition per measure, docs/evaluation.md C3-C9)
for one generated set, and gives it a verdict by one rule (``verdict``), so that the README
(``musicvae_lib.report``) and the chapters' sentences (``sentence``) say the same.

The rule. A finding claims that the generated set's value of a measure is higher (or lower) than
real melodies'. With g, t and r its value for the generated set, the held-out test melodies and the
training melodies:

- "does not hold" when g is not beyond t in the claimed direction;
- "holds" when g is beyond t by more than t and r differ (how far two real sets lie apart), and,
  where the tables give g a 95% bootstrap interval, the whole interval lies beyond t;
- "holds weakly" when g is beyond t, but by no more than t and r differ or with an interval that
  reaches t.

The diatonic finding also needs its generated melodies to be mostly diatonic: a mean diatonicity of
at least ``MOSTLY_DIATONIC``; when they are not, it does not hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import pandas as pd

from musicvae_lib import run_folder
from musicvae_lib.compare import total_variation

GENERATED = "T=1"  # the generated set the README judges: drawn at temperature 1 (generate.set_name(1.0))
HOLDS, HOLDS_WEAKLY, DOES_NOT_HOLD = "holds", "holds weakly", "does not hold"
MOSTLY_DIATONIC = 0.9  # mean share of a melody's notes in its best scale that counts as "mostly diatonic"
NOTE_VALUES = {  # length in 16th-note steps -> its name in 4/4
    "1": "16ths",
    "2": "eighths",
    "3": "dotted eighths",
    "4": "quarters",
    "6": "dotted quarters",
    "8": "halves",
    "12": "dotted halves",
    "16": "whole notes",
}
WRITTEN_BY = {"05": "05_rhythm", "06": "06_melody"}  # a table's prefix -> the chapter that writes it

RULE = (  # the module docstring's rule, as the README prints it under the table
    "A finding holds when the generated value lies beyond the test melodies' in the claimed direction by more "
    "than test and training differ, its 95% bootstrap interval (where the tables have one) wholly beyond the test "
    "value; it holds weakly when it lies beyond but not by that much or with an interval reaching the test value; "
    "otherwise it does not hold. The diatonic finding also needs a mean diatonicity of at least "
    f"{MOSTLY_DIATONIC:.0%}."
)

Claim = Literal["higher", "lower"]


@dataclass(frozen=True)
class Finding:
    """One of the thesis' findings beside a run's numbers for a generated set."""

    name: str  # short, as the keys of FINDINGS
    observation: str  # what the thesis saw in its generated melodies, in our words
    measure: str  # the measure that decides the verdict, with its unit and docs/evaluation.md id
    claim: Claim  # the generated set's value against real melodies', as the thesis saw it
    generated_set: str  # the column of the tables, as "T=1"
    generated: float
    test: float
    train: float
    interval: tuple[float, float] | None  # 95% bootstrap interval of `generated`; None where the tables give none
    shown: tuple[str, str, str]  # generated (with its interval), test and train as printed
    context: str  # further numbers of the same finding, a clause
    verdict: str  # HOLDS, HOLDS_WEAKLY or DOES_NOT_HOLD
    why: str  # the part of the rule that decided


def verdict(
    generated: float,
    test: float,
    train: float,
    claim: Claim,
    interval: tuple[float, float] | None = None,
) -> tuple[str, str]:
    """(verdict, why) of a claim that ``generated`` is ``claim`` ("higher" or "lower") than real melodies.

    The module's rule: DOES_NOT_HOLD unless ``generated`` lies beyond ``test`` in the claimed
    direction; HOLDS when it lies beyond by more than |test - train| and ``interval`` (its 95%
    bootstrap interval, if any) lies wholly beyond ``test``; HOLDS_WEAKLY otherwise.
    """
    if claim not in ("higher", "lower"):
        raise ValueError(f"`claim` must be 'higher' or 'lower', got {claim!r}")
    values = {"generated": generated, "test": test, "train": train}
    missing = [name for name, value in values.items() if not math.isfinite(value)]
    if missing:
        raise ValueError(f"a verdict needs finite values, got NaN or inf for {missing}: {values}")
    sign = 1.0 if claim == "higher" else -1.0
    gap, floor = sign * (generated - test), abs(test - train)
    other: Claim = "lower" if claim == "higher" else "higher"
    if gap == 0:
        return DOES_NOT_HOLD, f"equal to test, not {claim}"
    if gap < 0:
        reverse = verdict(generated, test, train, other, interval)[0] == HOLDS
        return DOES_NOT_HOLD, (
            f"{other} than test by more than test and training differ, the reverse holds"
            if reverse
            else f"{other} than test"
        )
    if gap <= floor:
        return HOLDS_WEAKLY, f"{claim} than test, but by no more than test and training differ"
    if interval is not None and sign * (min(interval, key=lambda bound: sign * bound) - test) <= 0:
        return HOLDS_WEAKLY, f"{claim} than test, but its 95% interval reaches the test value"
    clear = ", its 95% interval clear of test" if interval is not None else ""
    return HOLDS, f"{claim} than test by more than test and training differ{clear}"


def read_table(run_dir: str | Path, name: str, index: str | None = None) -> pd.DataFrame:
    """``tables/<name>.csv`` of the run; FileNotFoundError naming the chapter that writes it."""
    path = Path(run_dir) / run_folder.TABLES / f"{name}.csv"
    if not path.exists():
        chapter = WRITTEN_BY.get(name[:2], "the chapter that writes it")
        raise FileNotFoundError(f"{path} not found: run notebook {chapter} on {run_dir} first")
    table = pd.read_csv(path, dtype={index: str} if index else None)
    return table.set_index(index) if index else table


def _columns(table: pd.DataFrame, generated_set: str, name: str) -> pd.DataFrame:
    """The train, test and generated columns of a shares table, in that order."""
    missing = [column for column in ("train", "test", generated_set) if column not in table.columns]
    if missing:
        raise ValueError(
            f"tables/{name}.csv lacks the sets {missing}; it has {list(table.columns)}: "
            "pick `generated_set` among them (as 'T=1')"
        )
    return table[["train", "test", generated_set]]


def _compared(comparison: pd.DataFrame, feature: str, generated_set: str, name: str) -> dict[str, float]:
    """A feature's means in a set comparison (the reference is train) and the generated set's 95% interval.

    The tables give the interval of the generated mean minus the training mean; added to the
    training mean it is the interval of the generated mean.
    """
    rows = comparison[comparison["feature"] == feature].set_index("set")
    missing = [column for column in ("train", "test", generated_set) if column not in rows.index]
    if missing:
        raise ValueError(f"tables/{name}.csv has no {feature!r} rows for the sets {missing}; it has {list(rows.index)}")
    train = float(rows.loc["train", "mean"])
    generated = rows.loc[generated_set]
    return {
        "generated": float(generated["mean"]),
        "test": float(rows.loc["test", "mean"]),
        "train": train,
        "low": train + float(generated["mean_diff_low"]),
        "high": train + float(generated["mean_diff_high"]),
    }


def _finding(
    name: str,
    observation: str,
    measure: str,
    claim: Claim,
    generated_set: str,
    values: dict[str, float],
    show: Callable[[float], str],
    context: str,
    interval: bool = True,
    condition: tuple[bool, str] = (True, ""),
    test_is_reference: bool = False,
) -> Finding:
    """A Finding from ``values`` (generated, test, train and, with ``interval``, low and high), verdict included.

    ``condition``: (met, why) of a precondition of the claim; when not met, the finding does not hold.
    ``test_is_reference``: the measure is a distance from the test set, which shows as "0 (reference)".
    """
    bounds = (values["low"], values["high"]) if interval else None
    decided = verdict(values["generated"], values["test"], values["train"], claim, bounds)
    if not condition[0]:
        decided = (DOES_NOT_HOLD, condition[1])
    generated = show(values["generated"]) + (f" (95% {show(bounds[0])}-{show(bounds[1])})" if bounds else "")
    return Finding(
        name=name,
        observation=observation,
        measure=measure,
        claim=claim,
        generated_set=generated_set,
        generated=values["generated"],
        test=values["test"],
        train=values["train"],
        interval=bounds,
        shown=(generated, "0 (reference)" if test_is_reference else show(values["test"]), show(values["train"])),
        context=context,
        verdict=decided[0],
        why=decided[1],
    )


def _percent(value: float) -> str:
    return f"{value:.1%}"


def odd_sixteenths(run_dir: str | Path, generated_set: str = GENERATED) -> Finding:
    """More onsets on odd 16ths in the generated melodies: the per-melody share of ``05_set_comparison``
    (``syncopation_16th``, with its interval), the share of all onsets of ``05_onset_levels`` beside it."""
    values = _compared(read_table(run_dir, "05_set_comparison"), "syncopation_16th", generated_set, "05_set_comparison")
    pooled = _columns(read_table(run_dir, "05_onset_levels", "level"), generated_set, "05_onset_levels")
    share = pooled.loc["sixteenth"]
    return _finding(
        "odd 16ths",
        "more onsets on odd 16ths (the weakest metrical level) than in real melodies",
        "share of a melody's onsets on odd 16ths, mean over melodies (C9)",
        "higher",
        generated_set,
        values,
        _percent,
        f"of all onsets pooled, {share[generated_set]:.1%} against {share['test']:.1%} (test) and "
        f"{share['train']:.1%} (train)",
    )


def note_length_peaks(run_dir: str | Path, generated_set: str = GENERATED) -> Finding:
    """Note-length peaks not copied: the total variation distance of ``05_note_lengths``' histogram from the test
    set's (``compare.total_variation``), 0 for the test set itself; the test set's two commonest lengths beside it."""
    lengths = _columns(read_table(run_dir, "05_note_lengths", "steps"), generated_set, "05_note_lengths")
    distance = total_variation(lengths, "test")
    peaks = lengths["test"].nlargest(2).index
    shares = ", ".join(
        f"{NOTE_VALUES.get(steps, steps + ' steps')} {lengths.loc[steps, generated_set]:.0%} of the notes "
        f"(test {lengths.loc[steps, 'test']:.0%}, train {lengths.loc[steps, 'train']:.0%})"
        for steps in peaks
    )
    return _finding(
        "note-length peaks",
        "note lengths whose peaks (how often the common lengths occur) the generated melodies do not copy",
        "share of notes that would have to change length to match the test melodies' histogram "
        "(total variation distance, C7)",
        "higher",
        generated_set,
        {"generated": float(distance[generated_set]), "test": 0.0, "train": float(distance["train"])},
        _percent,
        f"at the test melodies' two peaks, {shares}",
        interval=False,
        test_is_reference=True,
    )


def pitch_jumps(run_dir: str | Path, generated_set: str = GENERATED) -> Finding:
    """Large pitch jumps: the share of intervals of 8 semitones or more (``06_interval_shares``); smaller leaps
    and the mean absolute interval of ``06_set_comparison`` (with its interval) beside it."""
    shares = _columns(read_table(run_dir, "06_interval_shares", "interval"), generated_set, "06_interval_shares")
    large, leaps = shares.loc["large leap (>=8)"], shares.loc["leap (3-7)"]
    mean = _compared(read_table(run_dir, "06_set_comparison"), "mean_abs_interval", generated_set, "06_set_comparison")
    return _finding(
        "pitch jumps",
        "large pitch jumps, more than in real melodies",
        "share of intervals between consecutive notes of 8 semitones or more (C6)",
        "higher",
        generated_set,
        {"generated": float(large[generated_set]), "test": float(large["test"]), "train": float(large["train"])},
        _percent,
        f"leaps of 3-7 semitones {leaps[generated_set]:.0%} of the intervals (test {leaps['test']:.0%}); "
        f"mean absolute interval {mean['generated']:.2f} semitones (95% {mean['low']:.2f}-{mean['high']:.2f}) "
        f"against {mean['test']:.2f} (test) and {mean['train']:.2f} (train)",
        interval=False,
    )


def diatonic_with_odd_notes(run_dir: str | Path, generated_set: str = GENERATED) -> Finding:
    """Mostly diatonic, with odd notes: non-diatonic notes per melody (``06_set_comparison``, with its interval),
    provided the mean diatonicity of ``06_diatonicity`` is at least MOSTLY_DIATONIC."""
    values = _compared(
        read_table(run_dir, "06_set_comparison"), "non_diatonic_notes", generated_set, "06_set_comparison"
    )
    table = _columns(read_table(run_dir, "06_diatonicity", "measure"), generated_set, "06_diatonicity")
    mean, fully = table.loc["mean diatonicity"], table.loc["fully diatonic melodies"]
    mostly = bool(mean[generated_set] >= MOSTLY_DIATONIC)
    return _finding(
        "diatonic with odd notes",
        "mostly diatonic melodies with some notes outside the scale, more than real melodies have",
        "number of notes outside the melody's best major or minor scale, mean per melody (C3)",
        "higher",
        generated_set,
        values,
        lambda value: f"{value:.2f}",
        f"{mean[generated_set]:.1%} of a melody's notes in its best scale on average (test {mean['test']:.1%}; "
        f"mostly diatonic from {MOSTLY_DIATONIC:.0%}), {fully[generated_set]:.0%} of the melodies fully diatonic "
        f"(test {fully['test']:.0%}, train {fully['train']:.0%})",
        condition=(mostly, f"not mostly diatonic: {mean[generated_set]:.1%} of the notes in the best scale"),
    )


FINDINGS: dict[str, Callable[[str | Path, str], Finding]] = {  # short name -> the function, in the thesis' order
    "odd 16ths": odd_sixteenths,
    "note-length peaks": note_length_peaks,
    "pitch jumps": pitch_jumps,
    "diatonic with odd notes": diatonic_with_odd_notes,
}


def sentence(finding: Finding) -> str:
    """The finding as a chapter says it: the thesis' observation, this run's numbers, the verdict and why."""
    generated, test, train = finding.shown
    return (
        f"The thesis saw {finding.observation}. Here, for {finding.generated_set}, the {finding.measure} is "
        f"{generated}, against {test} for the held-out test melodies and {train} for training; {finding.context}. "
        f"The finding {finding.verdict}: {finding.why}."
    )


def findings(run_dir: str | Path, generated_set: str = GENERATED) -> tuple[list[Finding], dict[str, str]]:
    """Every finding the run's tables can give, and the others by name with the reason they are missing."""
    found, skipped = [], {}
    for name, finding in FINDINGS.items():
        try:
            found.append(finding(run_dir, generated_set))
        except (FileNotFoundError, ValueError) as error:  # a chapter not run, a set not generated
            skipped[name] = str(error)
    return found, skipped


def findings_table(found: list[Finding]) -> pd.DataFrame:
    """One row per finding: the observation, the measure, the three sets' values and the verdict with its reason."""
    generated_set = found[0].generated_set if found else GENERATED
    return pd.DataFrame(
        [
            {
                "the thesis saw in its generated melodies": finding.observation,
                "measured here": finding.measure,
                generated_set: finding.shown[0],
                "test": finding.shown[1],
                "train": finding.shown[2],
                "verdict": f"**{finding.verdict}**: {finding.why}",
            }
            for finding in found
        ],
        columns=[
            "the thesis saw in its generated melodies",
            "measured here",
            generated_set,
            "test",
            "train",
            "verdict",
        ],
    )
