"""A number's spread over seeds: a run's headline numbers read from its tables by name, their mean, min and
max over the seed folders of a seed spread (``seed_spread``), and whether each finding holds in every seed.

``HEADLINES`` is the registry of headline numbers: a label, the table of the run folder that holds the
number, how to read it there (``cell``: the one row whose columns have the given values) and how to show
it; a new number is one line. ``FINDINGS`` are the claims the chapters' sentences make from one run (its
direction as the reference run ``results/default`` states it: "T=1 melodies are fully diatonic less often
than the training melodies"), each a comparison of two headline numbers or of one with a target; the
summary says in how many seeds each holds.

The summary lands in the spread folder's tables/: ``seed_spread.csv`` (measure, unit, table, mean, min, max,
seeds, then one column per seed) and ``seed_spread_findings.csv`` (finding, holds: "all 3 seeds", "2 of 3"
or "none", seeds_holding, seeds, then True/False per seed). A number a seed folder lacks (its chapter did
not run, or its table has no such row) is left out of that seed and counted by reason. Reads CSV files
only: no torch, so that the report can stand on it.
"""

from __future__ import annotations

import json
import operator
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from musicvae_lib import run_folder
from musicvae_lib.prior_names import compared_row

SPREAD_TABLE = "seed_spread.csv"
FINDINGS_TABLE = "seed_spread_findings.csv"
GENERATED = "T=1"  # notebook 04's set at temperature 1 (``generate.set_name(1.0)``), drawn from the study's prior
STUDY_PRIOR = "the study's prior"  # as a value of ``cell``: the row of the prior the run draws from (``prior/``)
OWN_MODEL = "chapter 03 model"  # 07_well_formed's row of the run's own model


class MissingValue(LookupError):
    """A headline number is not in a run folder: its table is not there, or has no such row."""


Reader = Callable[[pd.DataFrame, Path], float]  # (the table, its run folder) -> the number


def study_prior_row(run_dir: Path) -> str:
    """The row name notebook 07 gives the prior the run draws from (``prior.StudyPrior.compared_name``),
    read from ``prior/choice.json``."""
    path = run_dir / run_folder.PRIOR_CHOICE
    if not path.is_file():
        raise MissingValue(f"{run_folder.PRIOR_CHOICE} not written (notebook 03 has not run)")
    return compared_row(json.loads(path.read_text()))


def cell(column: str, **where: str) -> Reader:
    """A reader of the value in ``column`` of the one row whose columns equal ``where``
    (``STUDY_PRIOR`` stands for ``study_prior_row``)."""

    def read(table: pd.DataFrame, run_dir: Path) -> float:
        wanted = {key: study_prior_row(run_dir) if value == STUDY_PRIOR else value for key, value in where.items()}
        rows = table
        for key, value in wanted.items():
            rows = rows[rows[key].astype(str) == value]
        if len(rows) != 1:
            found = "no row" if rows.empty else f"{len(rows)} rows"
            raise MissingValue(f"{found} with {wanted}")
        if column not in rows.columns:
            raise MissingValue(f"no column {column!r}")
        return float(rows[column].iloc[0])

    return read


def column_mean(column: str) -> Reader:
    """A reader of the mean of ``column`` over the table's rows."""
    return lambda table, run_dir: float(table[column].mean())


def own_attribute_moves(table: pd.DataFrame, run_dir: Path) -> float:
    """How many attribute vectors raise their own attribute at the largest k of 07_attribute_effects
    (``latent.own_attribute_moves``: change > 0)."""
    at_end = table[(table["k"] == table["k"].max()) & (table["vector"] == table["attribute"])]
    return float((at_end["change"] > 0).sum())


def attribute_vectors(table: pd.DataFrame, run_dir: Path) -> float:
    """How many attribute vectors 07_attribute_effects moves melodies along."""
    return float(table["vector"].nunique())


SHOWN = {  # unit -> how the README's table shows a number in it
    "share of steps": "{:.3f}",
    "bits": "{:.1f}",
    "nats": "{:.1f}",
    "ROC AUC": "{:.2f}",
    "share": "{:.2f}",
    "share of onsets": "{:.1%}",
    "share of melodies": "{:.1%}",
    "share of pairs": "{:.0%}",
    "notes per bar": "{:.2f}",
    "semitones": "{:.2f}",
    "R^2": "{:.2f}",
}
COUNTED = ("dimensions", "vectors")  # whole numbers per seed: one decimal where the mean over seeds has one


@dataclass(frozen=True)
class Headline:
    """A headline number of a run: ``read`` from ``tables/<table>`` of its run folder, in ``unit`` (SHOWN, COUNTED)."""

    label: str
    table: str
    read: Reader
    unit: str

    def shown(self, value: float) -> str:
        """``value`` as the README's table shows a number in this unit."""
        if self.unit in COUNTED:
            return f"{round(value, 1):g}"  # a seed's 255, a mean's 255.7
        return SHOWN[self.unit].format(value)


GENERATED_AND_REAL = (GENERATED, "test", "train")


def per_set(
    label: str, table: str, unit: str, read: Callable[[str], Reader], names: tuple[str, ...] = GENERATED_AND_REAL
) -> tuple[Headline, ...]:
    """One headline per set of ``names``: ``label, <set>``, read from ``table`` by ``read(set)``."""
    return tuple(Headline(f"{label}, {name}", table, read(name), unit) for name in names)


PRIORS = ("N(0, I)", "mixture as fitted", STUDY_PRIOR)  # notebook 07's rows, the study's own last
RECONSTRUCTION, TWO_SAMPLE, BY_PRIOR = "03_reconstruction.csv", "04_two_sample.csv", "07_two_sample_by_prior.csv"
HEADLINES: tuple[Headline, ...] = (
    Headline(
        "teacher-forced accuracy (z ~ q)",
        RECONSTRUCTION,
        cell("value", metric="teacher-forced accuracy (z ~ q)"),
        "share of steps",
    ),
    Headline(
        "greedy accuracy (z = mu)", RECONSTRUCTION, cell("value", metric="greedy accuracy (z = mu)"), "share of steps"
    ),
    Headline(
        "Magenta's sampling accuracy",
        RECONSTRUCTION,
        cell("value", metric="sampling accuracy (z ~ q, T = 1, Magenta's eval)"),
        "share of steps",
    ),
    Headline("KL per test window", RECONSTRUCTION, cell("value", metric="KL", unit="bits per window"), "bits"),
    Headline(f"two-sample AUC against test, {GENERATED}", TWO_SAMPLE, cell("auc", set=GENERATED), "ROC AUC"),
    Headline("two-sample AUC against test, training (floor)", TWO_SAMPLE, cell("auc", set="train"), "ROC AUC"),
    Headline(f"precision against test, {GENERATED}", TWO_SAMPLE, cell("precision", set=GENERATED), "share"),
    Headline(f"recall against test, {GENERATED}", TWO_SAMPLE, cell("recall", set=GENERATED), "share"),
    *per_set(
        "onsets on odd 16ths", "05_onset_levels.csv", "share of onsets", lambda name: cell(name, level="sixteenth")
    ),
    *per_set(
        "notes per bar",
        "05_set_comparison.csv",
        "notes per bar",
        lambda name: cell("mean", set=name, feature="note_density"),
    ),
    *per_set(
        "fully diatonic melodies",
        "06_diatonicity.csv",
        "share of melodies",
        lambda name: cell(name, measure="fully diatonic melodies"),
    ),
    *per_set(
        "mean absolute interval",
        "06_set_comparison.csv",
        "semitones",
        lambda name: cell("mean", set=name, feature="mean_abs_interval"),
    ),
    *per_set(
        "copies of a training window",
        "06_originality.csv",
        "share of melodies",
        lambda name: cell("copy_rate", set=name),
        (GENERATED, "test"),
    ),
    *(
        Headline(
            f"prior draws like training, {name}",
            "07_realism_by_prior.csv",
            cell("melodies like training", prior=name),
            "share of melodies",
        )
        for name in PRIORS
    ),
    Headline(
        "test melodies like training",
        "07_well_formed.csv",
        cell("test melodies like training", model=OWN_MODEL),
        "share of melodies",
    ),
    Headline(
        f"copies of a training window, {STUDY_PRIOR}",
        "07_realism_by_prior.csv",
        cell("copies of a training window", prior=STUDY_PRIOR),
        "share of melodies",
    ),
    Headline(f"two-sample AUC against test, {STUDY_PRIOR}", BY_PRIOR, cell("auc", set=STUDY_PRIOR), "ROC AUC"),
    Headline(f"precision against test, {STUDY_PRIOR}", BY_PRIOR, cell("precision", set=STUDY_PRIOR), "share"),
    Headline(f"recall against test, {STUDY_PRIOR}", BY_PRIOR, cell("recall", set=STUDY_PRIOR), "share"),
    Headline("active units (test mu)", "07_well_formed.csv", cell("active units", model=OWN_MODEL), "dimensions"),
    Headline(
        "aggregate KL to the prior", "07_well_formed.csv", cell("aggregate KL to prior (nats)", model=OWN_MODEL), "nats"
    ),
    Headline("linear-probe R^2, mean over attributes", "07_probe_r2.csv", column_mean("r2"), "R^2"),
    Headline("slerp paths monotone", "07_interpolation.csv", cell("share_monotone", method="slerp"), "share of pairs"),
    Headline("naive paths monotone", "07_interpolation.csv", cell("share_monotone", method="naive"), "share of pairs"),
    Headline(
        "attribute vectors that raise their own attribute", "07_attribute_effects.csv", own_attribute_moves, "vectors"
    ),
    Headline("attribute vectors", "07_attribute_effects.csv", attribute_vectors, "vectors"),
)

RELATIONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Finding:
    """A claim a chapter makes from one run: headline ``left`` stands in ``relation`` to headline ``right``
    (a label) or to a target (a number)."""

    key: str  # short, for the chapters (``holds_note``)
    claim: str
    left: str
    relation: str  # a key of RELATIONS
    right: str | float

    def holds(self, values: Mapping[str, float]) -> bool | None:
        """Whether the claim holds for one run's headline ``values``; None where a number it needs is missing."""
        left = values.get(self.left, float("nan"))
        right = values.get(self.right, float("nan")) if isinstance(self.right, str) else self.right
        if pd.isna(left) or pd.isna(right):
            return None
        return bool(RELATIONS[self.relation](left, right))


FINDINGS: tuple[Finding, ...] = (
    Finding("greedy_target", "greedy accuracy reaches the target 0.95", "greedy accuracy (z = mu)", ">=", 0.95),
    Finding(
        "sampling_target",
        "Magenta's sampling accuracy reaches the target 0.92",
        "Magenta's sampling accuracy",
        ">=",
        0.92,
    ),
    Finding(
        "auc_above_floor",
        "a classifier tells T=1 melodies from test melodies better than a training sample",
        f"two-sample AUC against test, {GENERATED}",
        ">",
        "two-sample AUC against test, training (floor)",
    ),
    Finding(
        "auc_target",
        "a classifier tells T=1 melodies from test melodies at an AUC of at most 0.70 (target)",
        f"two-sample AUC against test, {GENERATED}",
        "<=",
        0.70,
    ),
    Finding(
        "odd_16ths",
        "T=1 melodies have fewer onsets on odd 16ths than the test melodies",
        f"onsets on odd 16ths, {GENERATED}",
        "<",
        "onsets on odd 16ths, test",
    ),
    Finding(
        "fewer_notes",
        "T=1 melodies have fewer notes per bar than the training melodies",
        f"notes per bar, {GENERATED}",
        "<",
        "notes per bar, train",
    ),
    Finding(
        "less_diatonic",
        "T=1 melodies are fully diatonic less often than the training melodies",
        f"fully diatonic melodies, {GENERATED}",
        "<",
        "fully diatonic melodies, train",
    ),
    Finding(
        "larger_intervals",
        "T=1 melodies move by larger intervals than the test melodies",
        f"mean absolute interval, {GENERATED}",
        ">",
        "mean absolute interval, test",
    ),
    Finding(
        "copies_target",
        "T=1 melodies copy a training window no more often than test melodies do (target)",
        f"copies of a training window, {GENERATED}",
        "<=",
        "copies of a training window, test",
    ),
    Finding(
        "realism_target",
        "draws of the study's prior lie inside every training range at least 85% of the time (target)",
        f"prior draws like training, {STUDY_PRIOR}",
        ">=",
        0.85,
    ),
    Finding(
        "mixture_over_normal",
        "draws of the fitted mixture lie inside every training range more often than draws of N(0, I)",
        "prior draws like training, mixture as fitted",
        ">",
        "prior draws like training, N(0, I)",
    ),
    Finding(
        "slerp_monotone",
        "slerp paths are monotone more often than naive ones",
        "slerp paths monotone",
        ">",
        "naive paths monotone",
    ),
    Finding(
        "attribute_vectors",
        "every attribute vector raises its own attribute",
        "attribute vectors that raise their own attribute",
        "==",
        "attribute vectors",
    ),
)
FINDING_KEYS = {finding.key: finding for finding in FINDINGS}


def headline_values(run_dir: Path) -> tuple[dict[str, float], dict[str, str]]:
    """Every ``HEADLINES`` number of the run folder, and for each one not there why (label -> reason)."""
    values, missing = {}, {}
    tables: dict[str, pd.DataFrame | None] = {}
    for headline in HEADLINES:
        if headline.table not in tables:
            path = run_dir / run_folder.TABLES / headline.table
            tables[headline.table] = pd.read_csv(path) if path.is_file() else None
        table = tables[headline.table]
        if table is None:
            missing[headline.label] = f"tables/{headline.table} not written (notebook {headline.table[:2]} not run)"
            continue
        try:
            values[headline.label] = headline.read(table, run_dir)
        except MissingValue as error:
            missing[headline.label] = f"tables/{headline.table}: {error}"
    return values, missing


def holds_text(holding: int, measured: int, seeds: int) -> str:
    """ "all 3 seeds", "2 of 3" or "none": in how many of the ``measured`` seeds (of ``seeds``) a finding holds."""
    if measured < seeds:
        return f"{holding} of {measured} measured ({seeds - measured} of {seeds} seeds lack a number)"
    if holding == measured:
        return f"all {seeds} seeds"
    return "none" if holding == 0 else f"{holding} of {seeds}"


@dataclass(frozen=True)
class SpreadSummary:
    """The seed spread's two tables, what no seed could show (label -> reason), and where the tables are."""

    table: pd.DataFrame
    findings: pd.DataFrame
    skipped: dict[str, str]
    tables_dir: Path

    def report(self) -> str:
        """Lines for the console: each finding's verdict, then the numbers no seed shows, counted by reason."""
        lines = [f"{row.holds:>13}: {row.finding}" for row in self.findings.itertuples()]
        for reason, count in Counter(self.skipped.values()).most_common():
            lines.append(f"left out, {count} number{'s' if count > 1 else ''}: {reason}")
        return "\n".join(lines)


def spread_tables(seed_dirs: Mapping[int, Path]) -> SpreadSummary:
    """The spread of every headline number over the seed folders ``seed_dirs`` (seed -> run folder) and the
    verdict on every finding; the tables are not written (``write_summary``). ValueError without a seed."""
    if not seed_dirs:
        raise ValueError("`seed_dirs` names no seed folder")
    columns = {seed: f"seed={seed}" for seed in seed_dirs}
    per_seed, skipped = {}, {}
    for seed, run_dir in seed_dirs.items():
        per_seed[columns[seed]], missing = headline_values(Path(run_dir))
        for label, reason in missing.items():
            skipped.setdefault(label, f"{reason} in {Path(run_dir).name}")
    values = pd.DataFrame(per_seed, index=[headline.label for headline in HEADLINES], columns=list(columns.values()))
    measured = values.notna().any(axis=1)
    skipped = {label: reason for label, reason in skipped.items() if not measured[label]}  # those in no seed
    described = pd.DataFrame(
        {
            "measure": [headline.label for headline in HEADLINES],
            "unit": [headline.unit for headline in HEADLINES],
            "table": [headline.table for headline in HEADLINES],
        },
        index=values.index,
    )
    stats = pd.DataFrame(
        {
            "mean": values.mean(axis=1),
            "min": values.min(axis=1),
            "max": values.max(axis=1),
            "seeds": values.notna().sum(axis=1),
        }
    )
    table = pd.concat([described, stats, values], axis=1)[measured].reset_index(drop=True)
    rows = []
    for finding in FINDINGS:
        verdicts = {column: finding.holds(values[column].dropna().to_dict()) for column in values.columns}
        judged = [verdict for verdict in verdicts.values() if verdict is not None]
        if not judged:
            skipped[finding.claim] = "a number it compares is in no seed folder"
            continue
        rows.append(
            {
                "finding": finding.claim,
                "holds": holds_text(sum(judged), len(judged), len(verdicts)),
                "seeds_holding": sum(judged),
                "seeds": len(judged),
                **{column: "" if verdict is None else verdict for column, verdict in verdicts.items()},
            }
        )
    findings = pd.DataFrame(rows, columns=["finding", "holds", "seeds_holding", "seeds", *values.columns])
    return SpreadSummary(table, findings, skipped, Path())


def write_summary(spread_dir: Path, seed_dirs: Mapping[int, Path]) -> SpreadSummary:
    """``spread_tables`` written to ``<spread_dir>/tables/`` (``SPREAD_TABLE``, ``FINDINGS_TABLE``); returned."""
    summary = spread_tables(seed_dirs)
    tables_dir = Path(spread_dir) / run_folder.TABLES
    tables_dir.mkdir(parents=True, exist_ok=True)
    summary.table.to_csv(tables_dir / SPREAD_TABLE, index=False)
    summary.findings.to_csv(tables_dir / FINDINGS_TABLE, index=False)
    return SpreadSummary(summary.table, summary.findings, summary.skipped, tables_dir)


def finding_holds(spread_dir: Path, claim: str) -> str:
    """The ``holds`` of finding ``claim`` in a written spread ("all 3 seeds", "2 of 3", "none"): what a chapter's
    sentence can add. ValueError for a claim the spread's findings table does not hold."""
    findings = pd.read_csv(Path(spread_dir) / run_folder.TABLES / FINDINGS_TABLE).set_index("finding")
    if claim not in findings.index:
        raise ValueError(f"no finding {claim!r} in {Path(spread_dir) / run_folder.TABLES / FINDINGS_TABLE}")
    return str(findings.loc[claim, "holds"])


def spread_of(run_dir: Path) -> Path | None:
    """The seed spread whose summary speaks for the run folder ``run_dir``: the spread a ``seed=K`` folder belongs
    to, or ``<run>-seeds/`` beside a run (results/default-seeds for results/default); None without a written one."""
    run_dir = Path(run_dir).resolve()
    spread_dir = run_dir.parent if run_dir.name.startswith("seed=") else run_dir.parent / f"{run_dir.name}-seeds"
    return spread_dir if (spread_dir / run_folder.TABLES / FINDINGS_TABLE).is_file() else None


def holds_note(run_dir: Path, key: str) -> str:
    """A sentence a chapter adds after making finding ``key`` (of ``FINDING_KEYS``): in how many seeds of the run's
    spread (``spread_of``) it holds, or that no spread has tested it.

    In a ``seed=K`` folder: "It holds in 2 of the 3 seeds of the spread." Beside a spread: "Across the 3 seeds of
    default-seeds/, 'the claim' holds in all of them." A spread made before the finding says it has not tested it;
    ValueError for an unknown key.
    """
    if key not in FINDING_KEYS:
        raise ValueError(f"no finding {key!r}; the findings are {', '.join(FINDING_KEYS)}")
    claim = FINDING_KEYS[key].claim
    in_seed_folder = Path(run_dir).resolve().name.startswith("seed=")
    spread_dir = spread_of(run_dir)
    if spread_dir is None:
        return "" if in_seed_folder else "(One run: no seed spread has tested it.)"
    findings = pd.read_csv(spread_dir / run_folder.TABLES / FINDINGS_TABLE).set_index("finding")
    if claim not in findings.index:  # a spread made before the finding was
        return f"(The seed spread {spread_dir.name}/ has not tested it.)"
    holding, seeds = int(findings.loc[claim, "seeds_holding"]), int(findings.loc[claim, "seeds"])
    some = "all" if holding == seeds else "none" if holding == 0 else str(holding)
    if in_seed_folder:
        return f"It holds in {f'all {seeds}' if holding == seeds else f'{some} of the {seeds}'} seeds of the spread."
    return f"Across the {seeds} seeds of {spread_dir.name}/, '{claim}' holds in {some} of them."
