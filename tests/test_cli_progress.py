"""The fit progress display (causalrm/cli/progress.py): no remaining-time estimate against max_epochs, and plain
lines without carriage returns when stderr is not a terminal."""

from __future__ import annotations

import io

from causalrm.cli.progress import EpochProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, epochs: int, *, every_s: float = 3600.0) -> str:
    bar = EpochProgress("fit naive", 600, stream=stream, every_s=every_s)
    bar.stage("nuisances")
    for epoch in range(1, epochs + 1):
        bar(epoch, 600, 0.5 / epoch, 0.25)
    bar.close()
    return stream.getvalue()


def test_plain_lines_off_a_terminal():
    out = _run(io.StringIO(), 7)
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "fit naive: nuisances"
    # the first epoch at once, then nothing for every_s seconds, then the last epoch when the fit ends
    assert [line.split(",")[0] for line in lines[1:]] == ["fit naive: epoch 1/600", "fit naive: epoch 7/600"]
    assert "train loss 0.0714, validation estimate 0.2500" in lines[-1]
    every = _run(io.StringIO(), 3, every_s=0.0)
    assert [line.split(",")[0] for line in every.splitlines()[1:]] == [f"fit naive: epoch {e}/600" for e in (1, 2, 3)]


def test_terminal_bar_shows_no_remaining_time_against_max_epochs():
    out = _run(_Terminal(), 5)
    assert "epoch 5/600" in out and "early stopping decides" in out and "train=0.1000" in out
    assert "<" not in out and "ETA" not in out  # tqdm's "elapsed<remaining" would read hours for 600 epochs
