"""Epoch progress of a fit on stderr: a tqdm line on a terminal, plain lines anywhere else.

Early stopping usually ends a fit long before ``max_epochs``, so neither form shows a remaining time (an estimate
against ``max_epochs`` would be hours off): the terminal line shows epochs done, elapsed time, rate and the latest
losses. When stderr is not a terminal (a log file, CI) nothing is rewritten with carriage returns: one line per
stage, an epoch line at most every ``every_s`` seconds, and the last epoch when the fit ends.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class EpochProgress:
    """``progress(epoch, max_epochs, train_loss, val_estimate)`` and ``on_stage(name)`` callbacks of ``fit_log``."""

    def __init__(self, desc: str, total: int, *, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.desc, self.total, self.every_s = desc, int(total), float(every_s)
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None
        self._last: tuple[int, int, float, float] | None = None
        self._printed_at: float | None = None
        self._printed_epoch = 0
        if self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit="epoch", file=self.stream, dynamic_ncols=True,
                            bar_format="{desc}: epoch {n_fmt}/{total_fmt} (early stopping decides) "
                                       "[{elapsed}, {rate_fmt}{postfix}]")

    def stage(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description(f"{self.desc}: {name}")
        else:
            print(f"{self.desc}: {name}", file=self.stream, flush=True)

    def __call__(self, epoch: int, max_epochs: int, train_loss: float, val_estimate: float) -> None:
        self._last = (epoch, max_epochs, train_loss, val_estimate)
        if self.bar is not None:
            if epoch < self.bar.n:  # --select-head: the next candidate head starts
                self.bar.reset()
            self.bar.update(epoch - self.bar.n)
            self.bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_estimate:.4f}")
            return
        now = time.monotonic()
        if self._printed_at is None or now - self._printed_at >= self.every_s:
            self._print_last()
            self._printed_at = now

    def _print_last(self) -> None:
        epoch, max_epochs, train_loss, val_estimate = self._last
        print(f"{self.desc}: epoch {epoch}/{max_epochs}, train loss {train_loss:.4f}, validation estimate "
              f"{val_estimate:.4f}", file=self.stream, flush=True)
        self._printed_epoch = epoch

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self._last is not None and self._last[0] != self._printed_epoch:
            self._print_last()
