"""Progress sinks: a plain Log hears lines only; the notebook's bar (tqdm.auto) counts a run's steps,
named by the step running, with the latest line beside it."""

from __future__ import annotations

import io

from kaggle_digits import progress


def test_a_plain_log_hears_the_lines_and_not_the_steps():
    lines: list[str] = []
    progress.step(lines.append, 0, 3, "download")  # a plain function: nothing to tell
    progress.close(lines.append)
    passing = progress.Progress(lines.append)
    passing("trial 0 done")
    progress.step(passing, 1, 3, "tune")
    assert lines == ["trial 0 done"]


def test_the_bar_counts_the_steps_and_shows_the_latest_line():
    out = io.StringIO()
    bar = progress.notebook(file=out, ascii=True)  # outside Jupyter, tqdm.auto draws text
    progress.step(bar, 0, 3, "download")
    bar("trial 0 fold 1/2 epoch 1/1  acc 0.2330")
    progress.step(bar, 1, 3, "tune mlp")
    assert bar.bar is not None and bar.bar.n == 1 and bar.bar.total == 3
    drawn = out.getvalue()
    assert "download" in drawn and "1/3" in drawn and "trial 0 fold 1/2 epoch 1/1 acc 0.2330" in drawn
    assert "tune mlp" in drawn
    progress.step(bar, 3, 3, "done")
    assert bar.bar is None and "3/3" in out.getvalue(), "the last step closes the bar, full"
    bar("x" * 300)  # a line after the run: a bar of its own, the line cut to fit
    assert "x" * (progress.LINE_WIDTH - 1) + "…" in out.getvalue()
    progress.close(bar)
    assert bar.bar is None


def test_with_lines_every_line_is_also_written_above_the_bar():
    out = io.StringIO()
    bar = progress.notebook(lines=True, file=out, ascii=True)
    progress.step(bar, 0, 2, "download")
    bar("source: mnist")
    bar.close()
    assert "source: mnist\n" in out.getvalue()
