"""The seed spread: a profile's model trained with several seeds on the same data, notebooks 03-07 for each.

    .venv/bin/python -m musicvae_lib.seed_spread --profile default --seeds 0 1 2
        -> results/local/default-seeds/        (--reference: results/default-seeds/, the committed one)

One run of the study is one seed: a finding that moves between seeds is not the model's. The spread
runs the chapters that make the data once and the chapters that train and judge a model once per
seed, each into a normal run folder, then summarises every headline number over the seeds
(``spread``). The spread folder::

    common/       a run folder of notebooks 01 (and 02): the data every seed shares, made with the profile's seed
    seed=K/       a run folder per seed: common/'s dataset/ and grid_search/ copied in (models hard-linked), the
                  manifest entries of 01 and 02 copied (marked ``shared_from``), then notebooks 03-07 run with
                  seed = K, which seeds every one of them: seed K trains model K
    tables/seed_spread.csv, tables/seed_spread_findings.csv     the summary (``spread.write_summary``)

Notebook 07 reads the grid search's choice and contrasting models, so 02 runs in common/ whenever the profile
lists it, even for a recipe (Magenta's) that trains without the grid's choice.

Nothing finished is redone: a seed whose notebooks 03-07 all finished ok is skipped, and within a seed the
runner skips every notebook that finished ok (``runner.run``). A seed folder made from other data than
common/'s is refused, never overwritten.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from musicvae_lib import runner, spread
from musicvae_lib.profiles import ConfigError, find_notebooks, load_profile, parse_override
from musicvae_lib.run_folder import (
    CHECKPOINT_FILE,
    DATASET,
    GRID_SEARCH,
    MODEL_FILE,
    NOTEBOOKS_DIR,
    add_folder_options,
    add_parameter_option,
    default_results_dir,
)

COMMON = "common"  # the run folder of the chapters every seed shares
COMMON_CHAPTERS = ("01", "02")  # make the data and the grid; later chapters read them
SEED_CHAPTERS = ("03", "04", "05", "06", "07")  # train and judge one model; 08 (the explorer) writes nothing
SHARED_FOLDERS = (DATASET, GRID_SEARCH)  # what the seed chapters read from the common chapters
LINKED_FILES = (MODEL_FILE,)  # read only, and large: hard-linked rather than copied
SKIPPED_FILES = (CHECKPOINT_FILE, ".point.lock")  # a finished training's resume state and lock: no seed reads them
SHARED_FROM = "shared_from"  # the manifest key that marks an entry copied from common/


class SpreadError(RuntimeError):
    """A seed folder does not fit the spread's common folder (made from other data): refused, never overwritten."""


def seed_folder_name(seed: int) -> str:
    """``seed=K``: the run folder of seed ``seed`` in the spread folder."""
    return f"seed={seed}"


def spread_dir(
    profile: str, notebooks_dir: Path = NOTEBOOKS_DIR, results_dir: Path | None = None, reference: bool = False
) -> Path:
    """``<results>/<profile>-seeds``: results/local/ for a user's spread, results/ with ``reference``."""
    if reference and results_dir is not None:
        raise ConfigError("--reference writes results/<profile>-seeds/; it cannot be combined with --results")
    return (results_dir or default_results_dir(notebooks_dir, reference)) / f"{profile}-seeds"


def finished(run_dir: Path, stems: Sequence[str]) -> bool:
    """Whether every notebook of ``stems`` has status "ok" in ``run_dir``'s manifest."""
    entries = runner.read_manifest(run_dir)["notebooks"]
    return all(entries.get(stem, {}).get("status") == "ok" for stem in stems)


def copy_shared(source: Path, target: Path) -> None:
    """Copy the folder ``source`` to ``target``: ``LINKED_FILES`` hard-linked (copied across file systems),
    ``SKIPPED_FILES`` left out, every other file copied so that no seed can change another's."""
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name in SKIPPED_FILES:
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.name in LINKED_FILES:
            try:
                os.link(path, destination)
                continue
            except OSError:  # another file system: a copy reads the same
                pass
        shutil.copy2(path, destination)


def check_same_data(common_dir: Path, seed_dir: Path) -> None:
    """SpreadError when the seed folder holds a dataset other than common/'s (its models were trained on other
    data); a seed folder without one passes."""
    common_hash, seed_hash = runner.dataset_hash(common_dir), runner.dataset_hash(seed_dir)
    if seed_hash is not None and seed_hash != common_hash:
        raise SpreadError(
            f"{seed_dir}/{DATASET} has dataset hash {seed_hash}, {common_dir}/{DATASET} {common_hash}: the seed was "
            f"made from other data than the spread's. Remove {seed_dir} to run the seed again on the common data."
        )


def share_common(common_dir: Path, seed_dir: Path, common_stems: Sequence[str]) -> None:
    """Give the seed folder common/'s data and grid, and the manifest entries that say they finished;
    what the seed folder already has it keeps."""
    common_entries = runner.read_manifest(common_dir)["notebooks"]
    seed_dir.mkdir(parents=True, exist_ok=True)
    for folder in SHARED_FOLDERS:
        if (common_dir / folder).is_dir() and not (seed_dir / folder).exists():
            copy_shared(common_dir / folder, seed_dir / folder)
    manifest = runner.read_manifest(seed_dir)
    for stem in common_stems:
        if manifest["notebooks"].get(stem, {}).get("status") != "ok":
            origin = os.path.relpath(common_dir, seed_dir)
            manifest["notebooks"][stem] = common_entries[stem] | {SHARED_FROM: Path(origin).as_posix()}
    runner.write_manifest(seed_dir, manifest)


def run_spread(
    profile_name: str,
    seeds: Sequence[int],
    out_dir: Path,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    overrides: Mapping[str, Any] | None = None,
) -> bool:
    """Run the seed spread of a profile into ``out_dir``: common/ once, then each seed, then the summary.

    ``overrides`` (``-p NAME=VALUE``) go to the seed chapters' notebooks beside the seed, e.g. a time guard raised
    for a slow machine (``max_minutes``); the common chapters run as the profile says. Returns False when a notebook
    failed (the spread stops there, the summary unwritten); ConfigError before anything runs for seeds, overrides or
    a profile that do not allow a spread, SpreadError for a seed folder of other data.
    """
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds takes at least two different seeds, got {list(seeds)}")
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ConfigError("-p seed=... is not allowed in a seed spread: --seeds gives each seed folder its seed")
    notebooks_dir = notebooks_dir.resolve()
    notebooks = find_notebooks(notebooks_dir)
    profile = load_profile(notebooks_dir.parent / "profiles" / f"{profile_name}.toml", notebooks)
    listed = {notebook.number: notebook.stem for notebook in notebooks}
    if profile.numbers is not None:
        listed = {number: stem for number, stem in listed.items() if number in profile.numbers}
    common = [number for number in COMMON_CHAPTERS if number in listed]
    per_seed = [number for number in SEED_CHAPTERS if number in listed]
    if "01" not in common or "03" not in per_seed:
        raise ConfigError(
            f"profile {profile_name!r} runs notebooks {', '.join(listed)}: a seed spread needs 01 (the data) and "
            "03 (the model trained with each seed)"
        )
    out_dir = out_dir.resolve()
    common_dir = out_dir / COMMON
    started = time.perf_counter()
    print(f"seed spread of profile {profile_name!r}, seeds {', '.join(map(str, seeds))} -> {out_dir}/", flush=True)
    print(f"[common] notebooks {', '.join(common)} -> {common_dir}/", flush=True)
    if not runner.run(profile_name, notebooks_dir, out_dir, only=common, run_name=COMMON):
        return False
    for index, seed in enumerate(seeds, start=1):
        seed_dir = out_dir / seed_folder_name(seed)
        progress = f"[seed {index} of {len(seeds)}, {(time.perf_counter() - started) / 60:.1f} minutes so far]"
        check_same_data(common_dir, seed_dir)
        if finished(seed_dir, [listed[number] for number in per_seed]):
            print(f"{progress} {seed_dir.name}: notebooks {', '.join(per_seed)} finished ok, skipped", flush=True)
            continue
        print(f"{progress} {seed_dir.name}: notebooks {', '.join(per_seed)} with seed = {seed}", flush=True)
        share_common(common_dir, seed_dir, [listed[number] for number in common])
        if not runner.run(
            profile_name,
            notebooks_dir,
            out_dir,
            only=per_seed,
            overrides=overrides | {"seed": seed},
            run_name=seed_dir.name,
        ):
            return False
    summary = spread.write_summary(out_dir, {seed: out_dir / seed_folder_name(seed) for seed in seeds})
    print(summary.report(), flush=True)
    print(f"done in {(time.perf_counter() - started) / 60:.1f} minutes: the summary is in {summary.tables_dir}/")
    return True


def command_line() -> argparse.ArgumentParser:
    """The options of ``python -m musicvae_lib.seed_spread``."""
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m musicvae_lib.seed_spread",
        description="Train a profile's model with several seeds on the same data and summarise notebooks 03-07.",
    )
    parser.add_argument("--profile", required=True, help="profiles/<PROFILE>.toml")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="the seeds, one run folder each (default: 0 1 2)"
    )
    add_parameter_option(parser, "every seed chapter (03-07)")  # e.g. -p max_minutes=400 on a slow machine
    add_folder_options(
        parser,
        "results folder; the spread goes to <RESULTS>/<PROFILE>-seeds/ (default: results/local/)",
        "write the committed results/<PROFILE>-seeds/ instead (maintainers)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 done, 1 a notebook failed, 2 refused."""
    args = command_line().parse_args(argv)
    try:
        out_dir = spread_dir(args.profile, args.notebooks, args.results, args.reference)
        overrides = dict(parse_override(text) for text in args.param)
        finished_ok = run_spread(args.profile, args.seeds, out_dir, args.notebooks, overrides)
    except (ConfigError, runner.RunOrderError, SpreadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if finished_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
