"""One progress line per long job (tqdm): done/total, rate and ETA, on stdout.

On a terminal the line updates in place; when stdout is not a terminal (CI logs, `nohup`, a pipe) it is
written as a plain line every `every` seconds (and once at the end), never with cursor-control codes.

    for batch in progress.bar(batches, total=len(batches), desc="zero-shot modelnet40", unit="batch"):
        ...
    with progress.bar(total=steps, desc="pretraining", unit="step") as bar:
        bar.update(1)
"""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm import tqdm

PLAIN_EVERY = 30.0  # seconds between plain lines when stdout is not a terminal


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it",
        every: float | None = None, stream=None, initial: int = 0) -> tqdm:
    """A tqdm progress bar on `stream` (stdout): in place on a terminal, plain lines every `every` seconds
    (PLAIN_EVERY by default) elsewhere."""
    stream = stream or sys.stdout
    if on_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=True,
                    initial=initial)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=_Lines(stream), ncols=100, initial=initial,
                mininterval=PLAIN_EVERY if every is None else every, maxinterval=float("inf"), ascii=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
