"""The key results of a run folder as Markdown, read from its manifest and result tables, never typed by hand.

    .venv/bin/python -m musicvae_lib.report results/default                 # print the Markdown
    .venv/bin/python -m musicvae_lib.report results/default --readme README.md   # replace the README's block

The README holds the block between ``BLOCK_START`` and ``BLOCK_END``, and the thesis' findings beside the
run's between ``FINDINGS_START`` and ``FINDINGS_END``; a test checks that both equal what the committed
reference run gives, so the README cannot drift from results/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from musicvae_lib import run_folder, spread, thesis_findings
from musicvae_lib.budgets import stop_of
from musicvae_lib.loss_config import NATS_PER_BIT, LossConfig, describe_loss

BLOCK_START = "<!-- key-results:start (written by python -m musicvae_lib.report) -->"
BLOCK_END = "<!-- key-results:end -->"
FINDINGS_START = "<!-- thesis-findings:start (written by python -m musicvae_lib.report) -->"
FINDINGS_END = "<!-- thesis-findings:end -->"
MANIFEST = "manifest.json"
RECONSTRUCTION_ROWS = {  # 03_reconstruction.csv metric -> how the README names it
    "teacher-forced accuracy (z = mu)": "teacher-forced accuracy, z = mu (A1)",
    "teacher-forced accuracy (z ~ q)": "teacher-forced accuracy, z ~ q (paper 0.986)",
    "greedy accuracy (z = mu)": "greedy free-running accuracy, z = mu (A2; target >= 0.95)",
    "sampling accuracy (z ~ q, T = 1, Magenta's eval)": "Magenta's sampling accuracy (paper 0.951; target >= 0.92)",
}
RECONSTRUCTED = "reconstructed"  # notebook 04's set of greedy reconstructions: a baseline, shown among the study rows
SET_ORDER = ("train", "test")  # real sets first, then the generated ones as the tables list them


def read_csv(run_dir: Path, name: str) -> pd.DataFrame | None:
    """``tables/<name>`` of the run, or None when the chapter writing it has not run."""
    path = run_dir / run_folder.TABLES / name
    return pd.read_csv(path) if path.exists() else None


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def study_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(measure, value) rows for the whole run: data, choice of beta and lambda, training, reconstruction,
    latent space."""
    rows: list[tuple[str, str]] = []
    summary = read_json(run_dir / run_folder.DATASET_SUMMARY)
    if summary:
        rows.append(
            ("melody windows (2 bars, distinct)", f"{summary['n_unique_windows']:,} from {summary['n_tunes']:,} tunes")
        )
    choice = read_json(run_dir / run_folder.GRID_CHOICE)
    if choice:
        rows.append(("grid search over the thesis' form: beta, lambda", grid_verdict(choice)))
    done = read_json(run_dir / run_folder.TRAINING / run_folder.DONE_FILE)
    if done and "identity" in done:  # the configs model.pt holds, readable without torch
        rows.append(("training loss", describe_loss(LossConfig(**done["identity"]["loss_config"]))))
    if done:
        commit, dirty = run_folder.training_commit(done)
        trained_at = f", at commit {commit[:7]}{'+dirty' if dirty else ''}" if commit else ""  # older: not recorded
        rows.append(
            (
                "training",
                f"{done['training_seconds'] / 60:.1f} min, {done['epochs']} epochs, {done['steps']:,} steps "
                f"on {done['device']}, stopped by {stop_of(done)}{trained_at}",
            )
        )
    reconstruction = read_csv(run_dir, "03_reconstruction.csv")
    if reconstruction is not None:
        values = reconstruction.drop_duplicates("metric").set_index("metric")["value"]
        rows += [(label, f"{values[metric]:.3f}") for metric, label in RECONSTRUCTION_ROWS.items() if metric in values]
    latent = read_csv(run_dir, "07_latent_summary.csv")
    if latent is not None:
        rows += [(row.measure, row.value) for row in latent.itertuples()]
    return rows + two_sample_rows(run_dir)


def auc_with_interval(row: pd.Series) -> str:
    return f"{row['auc']:.2f} ({row['auc_low']:.2f}-{row['auc_high']:.2f})"


def two_sample_rows(run_dir: Path) -> list[tuple[str, str]]:
    """The two-sample AUC of notebook 04's reconstructions and of notebook 07's draws by prior,
    each beside the floor."""
    rows: list[tuple[str, str]] = []
    generation = read_csv(run_dir, "04_two_sample.csv")
    if generation is not None and RECONSTRUCTED in set(generation["set"]):
        by_set = generation.set_index("set")
        rows.append(
            (
                "two-sample AUC against test, greedy reconstructions of a training sample (floor: the sample)",
                f"{auc_with_interval(by_set.loc[RECONSTRUCTED])}; floor {auc_with_interval(by_set.loc['train'])}",
            )
        )
    by_prior = read_csv(run_dir, "07_two_sample_by_prior.csv")
    if by_prior is not None:
        drawn = by_prior.dropna(subset=["auc"]).set_index("set")
        priors = [name for name in drawn.index if name != "train"]
        rows.append(
            (
                f"two-sample AUC against test at T = 1 by prior, {' / '.join(priors)} (floor: train)",
                " / ".join(f"{drawn.loc[name, 'auc']:.2f}" for name in priors) + f" ({drawn.loc['train', 'auc']:.2f})",
            )
        )
    return rows


def grid_verdict(choice: dict) -> str:
    """The grid's choice and whether it stands out of the seed noise (older choices lack the noise)."""
    point = f"{choice['beta']:g}, {choice['free_nats']:g} nats ({choice['free_nats'] / NATS_PER_BIT:.1f} bits)"
    if choice.get("seed_noise") is None:
        return point
    verdict = "separated from the runner-up" if choice["separated"] else "not separated from the runner-up"
    if "margin" not in choice:  # written before the choice recorded its margin
        return f"{point}; {verdict} (lead {choice['lead']:.3f}, seed noise {choice['seed_noise']:.3f})"
    margin = f"{choice['margin']:.3f}"
    return (
        f"{point}: the lowest negative ELBO among the {choice['eligible_points']} of {choice['last_rung_points']} "
        f"points within {margin} of the best sampling accuracy; {verdict} (lead {choice['lead']:.3f}, margin {margin}: "
        f"the larger of the seed noise {choice['seed_noise']:.3f} and {choice['margin_set']:g})"
    )


def ordered_sets(columns: list[str]) -> list[str]:
    return [name for name in SET_ORDER if name in columns] + [name for name in columns if name not in SET_ORDER]


def set_rows(run_dir: Path) -> pd.DataFrame | None:
    """Generated sets beside test and training: onsets on odd 16ths, mean |interval|, diatonicity, copies."""
    rows: dict[str, dict[str, str]] = {}
    levels = read_csv(run_dir, "05_onset_levels.csv")
    if levels is not None:
        rows["onsets on odd 16ths (share of all the set's onsets)"] = {
            k: f"{v:.1%}" for k, v in levels.set_index("level").loc["sixteenth"].items()
        }
    comparison = read_csv(run_dir, "06_set_comparison.csv")
    if comparison is not None:
        interval = comparison[comparison["feature"] == "mean_abs_interval"].set_index("set")["mean"]
        rows["mean absolute interval (semitones)"] = {k: f"{v:.2f}" for k, v in interval.items()}
    diatonic = read_csv(run_dir, "06_diatonicity.csv")
    if diatonic is not None:
        fully = diatonic.set_index("measure").loc["fully diatonic melodies"]
        rows["fully diatonic melodies"] = {k: f"{v:.0%}" for k, v in fully.items()}
    passing = read_csv(run_dir, "04_two_sample.csv")
    if passing is not None:
        passing = passing[passing["set"] != RECONSTRUCTED].set_index("set")
        tested = passing.dropna(subset=["auc"])
        rows["two-sample AUC against test, 95% interval (0.5 = indistinguishable)"] = {
            name: auc_with_interval(row) for name, row in tested.iterrows()
        }
        rows["precision / recall against test"] = {
            name: f"{row['precision']:.2f} / {row['recall']:.2f}" for name, row in tested.iterrows()
        }
        novel = passing.drop(index="train", errors="ignore")  # training windows are their own nearest neighbours
        rows["median distance to the nearest training window (share of steps)"] = {
            name: f"{value:.2f}" for name, value in novel["nn_distance_median"].items()
        }
        rows["closer to training than a test melody (probability; 0.5 = as unseen tunes)"] = {
            name: f"{value:.2f}" for name, value in novel["closer_than_test"].items()
        }
    originality = read_csv(run_dir, "06_originality.csv")
    if originality is not None:
        copies = originality.set_index("set")["copy_rate"]
        n = f", {originality['n_windows'].max():,} melodies a set" if "n_windows" in originality else ""
        rows[f"copies of a training window (up to transposition{n})"] = {k: f"{v:.1%}" for k, v in copies.items()}
    if not rows:
        return None
    table = pd.DataFrame(rows).T.fillna("")
    return table[ordered_sets(list(table.columns))]


def timing_rows(run_dir: Path) -> pd.DataFrame:
    """Minutes per notebook from the manifest, with the commit each ran at."""
    manifest = read_json(run_dir / MANIFEST) or {"notebooks": {}}
    return pd.DataFrame(
        [
            {
                "notebook": name,
                "minutes": f"{entry['duration_s'] / 60:.1f}" if entry.get("duration_s") else "",
                "status": entry["status"],
                "commit": (entry.get("git_commit") or "")[:7] + ("+dirty" if entry.get("git_dirty") else ""),
            }
            for name, entry in manifest["notebooks"].items()
        ],
        columns=["notebook", "minutes", "status", "commit"],
    )


def markdown_table(table: pd.DataFrame, index_label: str | None = None) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs tabulate, which the study does not install)."""
    frame = table.reset_index().rename(columns={"index": index_label}) if index_label else table
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def key_results(run_dir: str | Path) -> str:
    """The Markdown block: the run's key figures, the sets side by side, and minutes per notebook."""
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / MANIFEST)
    if manifest is None:
        raise FileNotFoundError(
            f"{run_dir / MANIFEST} not found: run the study first (./study.sh --reference writes results/default)"
        )
    timings = timing_rows(run_dir)
    minutes = sum(float(m) for m in timings["minutes"] if m)
    parts = [
        f"Run `{run_dir.name}` (profile `{manifest['profile']}`), {minutes:.0f} minutes in all on "
        f"{manifest.get('cpu', manifest['platform'])}:",
        "",
        markdown_table(pd.DataFrame(study_rows(run_dir), columns=["measure", "value"])),
    ]
    sets = set_rows(run_dir)
    if sets is not None:
        parts += [
            "",
            "Generated sets beside the held-out test and the training melodies:",
            "",
            markdown_table(sets, "measure"),
        ]
    spread_dir = seed_spread_dir(run_dir)
    if (spread_dir / run_folder.TABLES / spread.SPREAD_TABLE).is_file():
        parts += ["", f"The seed spread of this profile (`{spread_dir.name}`). " + seed_spread_block(spread_dir)]
    parts += ["", markdown_table(timings)]
    note = reexecution_note(run_dir, timings)
    return "\n".join(parts + (["", note] if note else []))


def findings_block(run_dir: str | Path) -> str:
    """The Markdown block of the thesis' findings beside the run's generated set (``thesis_findings``), its rule
    below the table, and the findings the run's tables cannot give, with why."""
    found, skipped = thesis_findings.findings(run_dir)
    parts = []
    if found:
        parts += [markdown_table(thesis_findings.findings_table(found)), "", "Beside each measure:", ""]
        parts += [f"- {finding.name}: {finding.context}." for finding in found]
        parts += ["", thesis_findings.RULE]
    parts += [f"Not measured in this run: {name} ({why})." for name, why in skipped.items()]
    return "\n".join(parts)


def reexecution_note(run_dir: Path, timings: pd.DataFrame) -> str | None:
    """A sentence when notebook 02 or 03 ran for less time than its grid or model trained: it read finished work.

    The minutes of the timing table are then those of the re-execution, not of the study.
    """
    reused = []
    machine = read_csv(run_dir, "02_grid_machine.csv")  # the grid's trained minutes, point by point
    if machine is not None and ran_shorter(timings, "02_grid_search", machine["minutes"].sum()):
        reused.append(
            f"notebook 02 read its grid from its study (the points trained {machine['minutes'].sum():.1f} minutes)"
        )
    done = read_json(run_dir / run_folder.TRAINING / run_folder.DONE_FILE)
    if done is not None and ran_shorter(timings, "03_training", done["training_seconds"] / 60):
        reused.append(f"notebook 03 loaded its model (trained {done['training_seconds'] / 60:.1f} minutes)")
    if not reused:
        return None
    their = "their" if len(reused) > 1 else "its"
    return (
        f"Re-executed from finished work: {' and '.join(reused)}, so {their} minutes above are the re-execution's, "
        "not the training's."
    )


def ran_shorter(timings: pd.DataFrame, notebook: str, trained_minutes: float) -> bool:
    """Whether ``notebook``'s row of the timing table shows fewer minutes than ``trained_minutes``."""
    row = timings[timings["notebook"] == notebook]
    return not row.empty and bool(row["minutes"].iloc[0]) and float(row["minutes"].iloc[0]) < trained_minutes


def seed_spread_dir(run_dir: Path) -> Path:
    """``<run>-seeds`` beside the run folder: where ``seed_spread`` puts the spread of the run's profile."""
    return run_dir.parent / f"{run_dir.name}-seeds"


def seed_spread_block(spread_dir: str | Path) -> str:
    """The Markdown of a seed spread (``seed_spread``): each headline number's mean and range over the seeds,
    then in how many seeds each finding holds; read from the spread folder's tables/."""
    tables = Path(spread_dir) / run_folder.TABLES
    if not (tables / spread.SPREAD_TABLE).is_file():
        raise FileNotFoundError(
            f"{tables / spread.SPREAD_TABLE} not found: make the spread first "
            "(.venv/bin/python -m musicvae_lib.seed_spread --profile default --reference)"
        )
    numbers = pd.read_csv(tables / spread.SPREAD_TABLE)
    findings = pd.read_csv(tables / spread.FINDINGS_TABLE)
    headlines = {headline.label: headline for headline in spread.HEADLINES}
    seeds = [column for column in numbers.columns if column.startswith("seed=")]
    rows = pd.DataFrame(
        {
            "measure": numbers["measure"],
            "mean": [headlines[row.measure].shown(row.mean) for row in numbers.itertuples()],
            "range over seeds": [
                f"{headlines[row.measure].shown(row.min)} - {headlines[row.measure].shown(row.max)}"
                for row in numbers.itertuples()
            ],
        }
    )
    return "\n".join(
        [
            f"Over {len(seeds)} seeds ({', '.join(seeds)}), each a model trained on the same data:",
            "",
            markdown_table(rows),
            "",
            markdown_table(findings[["finding", "holds"]]),
        ]
    )


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between BLOCK_START and BLOCK_END replaced by ``block``."""
    return replace_between(text, block, BLOCK_START, BLOCK_END)


def readme_block(text: str) -> str:
    """What the README holds between the markers, without the surrounding newlines."""
    return between(text, BLOCK_START, BLOCK_END)


def replace_between(text: str, block: str, start_marker: str, end_marker: str) -> str:
    """``text`` with what lies between ``start_marker`` and ``end_marker`` replaced by ``block``."""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"the text lacks the markers {start_marker!r} ... {end_marker!r}")
    return text[: start + len(start_marker)] + "\n" + block + "\n" + text[end:]


def between(text: str, start_marker: str, end_marker: str) -> str:
    """What ``text`` holds between the markers, without the surrounding newlines."""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"the text lacks the markers {start_marker!r} ... {end_marker!r}")
    return text[start + len(start_marker) : end].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m musicvae_lib.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--readme", type=Path, help="replace this file's key-results and thesis-findings blocks instead of printing"
    )
    args = parser.parse_args(argv)
    block, findings = key_results(args.run_dir), findings_block(args.run_dir)
    if args.readme:
        text = replace_block(args.readme.read_text(), block)
        args.readme.write_text(replace_between(text, findings, FINDINGS_START, FINDINGS_END))
    else:
        print(block + "\n\n" + findings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
