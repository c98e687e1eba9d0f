"""The thesis' findings beside a run's tables: real CSV files in a run folder, numbers written out, each
verdict both ways; and the committed reference run's rows."""

from pathlib import Path

import pandas as pd
import pytest

from musicvae_lib import report, thesis_findings
from musicvae_lib.compare import COMPARISON_COLUMNS
from musicvae_lib.thesis_findings import DOES_NOT_HOLD, HOLDS, HOLDS_WEAKLY

REPOSITORY = Path(__file__).resolve().parent.parent
SETS = ("train", "test", "T=1")
LENGTHS = [str(steps) for steps in range(1, 17)] + [">16"]


def comparison(rows: dict[str, dict[str, tuple[float, float, float]]]) -> pd.DataFrame:
    """A set comparison as notebooks 05 and 06 write it: feature -> set -> (mean, mean_diff_low, mean_diff_high),
    train the reference (no comparison columns)."""
    records = []
    for feature, by_set in rows.items():
        for name, (mean, low, high) in by_set.items():
            record = dict.fromkeys(COMPARISON_COLUMNS, float("nan"))
            record.update(set=name, feature=feature, n=1000, nan_dropped=0, mean=mean, std=0.1)
            if name != "train":
                record.update(mean_diff=mean - by_set["train"][0], mean_diff_low=low, mean_diff_high=high)
            records.append(record)
    return pd.DataFrame(records, columns=list(COMPARISON_COLUMNS))


def shares(index_label: str, rows: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """A shares table as the chapters write it: one row per category, a column per set (train, test, T=1)."""
    return pd.DataFrame(rows, index=list(SETS)).T.rename_axis(index_label)


def note_lengths(generated: dict[str, float]) -> pd.DataFrame:
    """Note-length shares: test 55% eighths, 25% quarters, 20% 16ths; train 5 points off; T=1 as given."""
    test = {"1": 0.2, "2": 0.55, "4": 0.25}
    train = {"1": 0.15, "2": 0.6, "4": 0.25}
    return pd.DataFrame(
        {name: [share.get(steps, 0.0) for steps in LENGTHS] for name, share in zip(SETS, (train, test, generated))},
        index=pd.Index(LENGTHS, name="steps"),
    )


def write_tables(
    run_dir: Path,
    odd_16ths: tuple[float, float, float] = (0.059, -0.019, 0.003),
    lengths: dict[str, float] | None = None,
    large_leaps: float = 0.029,
    non_diatonic: tuple[float, float, float] = (0.44, 0.28, 0.38),
    mean_diatonicity: float = 0.956,
) -> Path:
    """The tables of notebooks 05 and 06 in ``run_dir``, plausible numbers (those of a reference run) with the
    generated set's values as given: (mean, mean_diff_low, mean_diff_high) for the set comparisons."""
    tables = run_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    comparison({"syncopation_16th": {"train": (0.067, 0, 0), "test": (0.075, -0.002, 0.02), "T=1": odd_16ths}}).to_csv(
        tables / "05_set_comparison.csv", index=False
    )
    shares("level", {"bar": (0.18, 0.17, 0.19), "sixteenth": (0.086, 0.095, 0.071)}).to_csv(
        tables / "05_onset_levels.csv"
    )
    note_lengths(lengths or {"1": 0.1, "2": 0.45, "4": 0.45}).to_csv(tables / "05_note_lengths.csv")
    intervals = {
        "step (1-2)": (0.5, 0.5, 0.41),
        "leap (3-7)": (0.33, 0.32, 0.40),
        "large leap (>=8)": (0.038, 0.036, large_leaps),
    }
    shares("interval", intervals).to_csv(tables / "06_interval_shares.csv")
    comparison(
        {
            "non_diatonic_notes": {"train": (0.106, 0, 0), "test": (0.076, -0.058, -0.005), "T=1": non_diatonic},
            "mean_abs_interval": {"train": (2.43, 0, 0), "test": (2.42, -0.1, 0.08), "T=1": (2.44, -0.08, 0.08)},
        }
    ).to_csv(tables / "06_set_comparison.csv", index=False)
    shares(
        "measure",
        {"mean diatonicity": (0.989, 0.994, mean_diatonicity), "fully diatonic melodies": (0.91, 0.935, 0.66)},
    ).to_csv(tables / "06_diatonicity.csv")
    return run_dir


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generated, claim, interval, expected",
    [
        (0.50, "higher", None, HOLDS),  # 0.40 beyond test, real sets 0.05 apart
        (0.50, "higher", (0.45, 0.55), HOLDS),
        (0.50, "higher", (0.08, 0.55), HOLDS_WEAKLY),  # the interval reaches test (0.10)
        (0.12, "higher", None, HOLDS_WEAKLY),  # beyond test by 0.02, less than the 0.05 between test and train
        (0.10, "higher", None, DOES_NOT_HOLD),  # equal
        (0.02, "higher", None, DOES_NOT_HOLD),
        (0.02, "lower", (0.01, 0.03), HOLDS),
        (0.02, "lower", (0.01, 0.11), HOLDS_WEAKLY),
        (0.50, "lower", None, DOES_NOT_HOLD),
    ],
)
def test_the_verdict_follows_the_stated_rule(generated, claim, interval, expected):
    assert thesis_findings.verdict(generated, 0.10, 0.15, claim, interval)[0] == expected


def test_the_verdict_says_why_and_names_a_clear_reverse():
    assert thesis_findings.verdict(0.12, 0.10, 0.15, "higher")[1] == (
        "higher than test, but by no more than test and training differ"
    )
    assert thesis_findings.verdict(0.02, 0.10, 0.15, "higher")[1] == (
        "lower than test by more than test and training differ, the reverse holds"
    )
    assert thesis_findings.verdict(0.08, 0.10, 0.15, "higher")[1] == "lower than test"  # within the real sets' gap
    assert thesis_findings.verdict(0.10, 0.10, 0.15, "higher")[1] == "equal to test, not higher"


def test_the_verdict_refuses_what_it_cannot_judge():
    with pytest.raises(ValueError, match=r"`claim` must be 'higher' or 'lower', got 'more'"):
        thesis_findings.verdict(0.5, 0.1, 0.15, "more")
    with pytest.raises(ValueError, match=r"NaN or inf for \['test'\]"):
        thesis_findings.verdict(0.5, float("nan"), 0.15, "higher")


# --- each finding, both ways, from real tables ------------------------------------------------------


def test_odd_sixteenths_hold_when_the_generated_set_has_clearly_more(tmp_path):
    finding = thesis_findings.odd_sixteenths(write_tables(tmp_path, odd_16ths=(0.12, 0.04, 0.07)))
    assert (finding.generated, finding.test, finding.train) == (0.12, 0.075, 0.067)
    assert finding.interval == pytest.approx((0.107, 0.137))  # train's mean + the interval of the difference
    assert finding.shown == ("12.0% (95% 10.7%-13.7%)", "7.5%", "6.7%")
    assert finding.verdict == HOLDS
    assert "of all onsets pooled, 7.1% against 9.5% (test) and 8.6% (train)" == finding.context


def test_odd_sixteenths_do_not_hold_when_the_generated_set_has_fewer(tmp_path):
    finding = thesis_findings.odd_sixteenths(write_tables(tmp_path))
    assert finding.verdict == DOES_NOT_HOLD
    assert finding.why == "lower than test by more than test and training differ, the reverse holds"


def test_odd_sixteenths_hold_weakly_when_the_interval_reaches_the_test_value(tmp_path):
    finding = thesis_findings.odd_sixteenths(write_tables(tmp_path, odd_16ths=(0.10, 0.0, 0.06)))
    assert finding.verdict == HOLDS_WEAKLY  # 0.10 > 0.075 + 0.008, but the interval starts at 0.067


def test_note_length_peaks_not_copied_hold_when_the_histogram_lies_far_from_the_test_one(tmp_path):
    finding = thesis_findings.note_length_peaks(write_tables(tmp_path, lengths={"1": 0.1, "2": 0.45, "4": 0.45}))
    assert finding.generated == pytest.approx(0.2)  # 10 points of 16ths and 10 of eighths moved to quarters
    assert (finding.test, finding.train) == (0.0, pytest.approx(0.05))
    assert finding.shown == ("20.0%", "0 (reference)", "5.0%")
    assert finding.verdict == HOLDS
    assert finding.context == (
        "at the test melodies' two peaks, eighths 45% of the notes (test 55%, train 60%), "
        "quarters 45% of the notes (test 25%, train 25%)"
    )


def test_note_length_peaks_copied_do_not_bear_the_finding_out(tmp_path):
    copied = thesis_findings.note_length_peaks(write_tables(tmp_path, lengths={"1": 0.2, "2": 0.55, "4": 0.25}))
    assert (copied.generated, copied.verdict) == (0.0, DOES_NOT_HOLD)  # the test histogram itself
    close = thesis_findings.note_length_peaks(write_tables(tmp_path, lengths={"1": 0.18, "2": 0.57, "4": 0.25}))
    assert (close.generated, close.verdict) == (pytest.approx(0.02), HOLDS_WEAKLY)  # nearer than training's 0.05


def test_pitch_jumps_hold_with_more_large_leaps_and_not_with_fewer(tmp_path):
    jumpy = thesis_findings.pitch_jumps(write_tables(tmp_path, large_leaps=0.08))
    assert (jumpy.shown, jumpy.verdict, jumpy.interval) == (("8.0%", "3.6%", "3.8%"), HOLDS, None)
    assert jumpy.context == (
        "leaps of 3-7 semitones 40% of the intervals (test 32%); mean absolute interval 2.44 semitones "
        "(95% 2.35-2.51) against 2.42 (test) and 2.43 (train)"
    )
    assert thesis_findings.pitch_jumps(write_tables(tmp_path, large_leaps=0.029)).verdict == DOES_NOT_HOLD


def test_diatonic_with_odd_notes_holds_when_mostly_diatonic_with_clearly_more_odd_notes(tmp_path):
    finding = thesis_findings.diatonic_with_odd_notes(write_tables(tmp_path))
    assert finding.shown == ("0.44 (95% 0.39-0.49)", "0.08", "0.11")
    assert (finding.verdict, finding.why) == (
        HOLDS,
        "higher than test by more than test and training differ, its 95% interval clear of test",
    )


def test_diatonic_with_odd_notes_fails_without_odd_notes_or_when_not_mostly_diatonic(tmp_path):
    plain = thesis_findings.diatonic_with_odd_notes(write_tables(tmp_path, non_diatonic=(0.05, -0.08, -0.03)))
    assert plain.verdict == DOES_NOT_HOLD
    chromatic = thesis_findings.diatonic_with_odd_notes(write_tables(tmp_path, mean_diatonicity=0.85))
    assert (chromatic.verdict, chromatic.why) == (
        DOES_NOT_HOLD,
        "not mostly diatonic: 85.0% of the notes in the best scale",
    )


def test_a_sentence_gives_the_observation_the_numbers_and_the_verdict(tmp_path):
    text = thesis_findings.sentence(thesis_findings.diatonic_with_odd_notes(write_tables(tmp_path)))
    assert text.startswith("The thesis saw mostly diatonic melodies with some notes outside the scale")
    assert "is 0.44 (95% 0.39-0.49), against 0.08 for the held-out test melodies and 0.11 for training" in text
    assert text.endswith(
        "The finding holds: higher than test by more than test and training differ, its 95% interval clear of test."
    )


# --- what the run lacks -------------------------------------------------------------------------------


def test_a_missing_table_names_the_chapter_to_run_and_a_missing_set_the_sets_there(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 05_rhythm on"):
        thesis_findings.odd_sixteenths(tmp_path)
    write_tables(tmp_path)
    with pytest.raises(ValueError, match=r"no 'syncopation_16th' rows for the sets \['T=2'\]"):
        thesis_findings.odd_sixteenths(tmp_path, "T=2")
    with pytest.raises(ValueError, match=r"05_note_lengths.csv lacks the sets \['T=2'\]"):
        thesis_findings.note_length_peaks(tmp_path, "T=2")


def test_findings_skip_by_name_what_the_run_has_not_measured(tmp_path):
    write_tables(tmp_path)
    for name in ("06_interval_shares", "06_set_comparison", "06_diatonicity"):
        (tmp_path / "tables" / f"{name}.csv").unlink()
    found, skipped = thesis_findings.findings(tmp_path)
    assert [finding.name for finding in found] == ["odd 16ths", "note-length peaks"]
    assert list(skipped) == ["pitch jumps", "diatonic with odd notes"]
    assert all("run notebook 06_melody" in why for why in skipped.values())
    block = report.findings_block(tmp_path)
    assert "| the thesis saw in its generated melodies | measured here | T=1 | test | train | verdict |" in block
    assert "| **does not hold**: lower than test by more than" in block
    assert "Not measured in this run: pitch jumps (" in block


# --- the committed reference run ----------------------------------------------------------------------


def test_the_reference_run_gives_every_finding_a_sensible_row():
    found, skipped = thesis_findings.findings(REPOSITORY / "results" / "default")
    assert skipped == {}
    assert [finding.name for finding in found] == list(thesis_findings.FINDINGS)
    for finding in found:
        assert finding.verdict in (HOLDS, HOLDS_WEAKLY, DOES_NOT_HOLD)
        assert finding.generated_set == "T=1"
        if finding.interval is not None:
            assert finding.interval[0] <= finding.generated <= finding.interval[1]
        assert "nan" not in thesis_findings.sentence(finding)
    odd, lengths, jumps, _ = found
    for share in (odd, lengths, jumps):
        assert 0 <= share.generated <= 1 and 0 <= share.test <= 1 and 0 <= share.train <= 1
    assert lengths.test == 0.0 and lengths.train < 0.1  # two real sets: a few percent of notes apart
