"""One progress line per long job (tqdm): done/total, rate and ETA, on stdout.

On a terminal the line updates in place; when stdout is not a terminal (CI logs, `nohup`, a pipe) it
is written as a plain line every `every` seconds (and once at the end), never with cursor-control
codes.

    for batch in progress.bar(batches, total=len(batches), desc="zero-shot modelnet40",
    unit="batch"):
        ...
    with progress.bar(total=steps, desc="pretraining", unit="step") as bar:
        bar.update(1)

Time to first step: a job's log says when its first unit of compiled work finished, counted from the
start of the process (imports, data, compilation: what a user waits for), as `first step after N s`;
the trainer prints it after its first step, the evaluation jobs through `bar(..., first_step=True)`
after the first update.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable

from tqdm import tqdm

PLAIN_EVERY = 30.0  # seconds between plain lines when stdout is not a terminal
_IMPORTED = time.monotonic()  # the fallback start where /proc is not there


def process_seconds() -> float:
    """Seconds since this process started: from /proc on Linux (so imports count), elsewhere since
    ddjax's progress module was imported."""
    try:
        with open("/proc/self/stat") as f:
            # after "pid (comm)": field 3 (state) onwards
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        # field 22: starttime in ticks
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def first_step_line() -> str:
    """The line every job prints once, when its first step (batch, unit) has finished."""
    return f"first step after {process_seconds():.1f} s"


class _FirstStepBar(tqdm):
    """A tqdm bar that writes `first_step_line()` on its first update (above the bar on
    a terminal)."""

    def update(self, n=1):
        if not getattr(self, "_first_step_done", False):
            self._first_step_done = True
            self.write(first_step_line(), file=self._ddjax_stream)
        return super().update(n)


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


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    every: float | None = None,
    stream=None,
    initial: int = 0,
    first_step: bool = False,
) -> tqdm:
    """A tqdm progress bar on `stream` (stdout): in place on a terminal, plain lines every `every`
    seconds (PLAIN_EVERY by default) elsewhere. `first_step`: the first update also writes
    `first_step_line()`."""
    stream = stream or sys.stdout
    cls = _FirstStepBar if first_step else tqdm
    if on_terminal(stream):
        out = cls(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            file=stream,
            dynamic_ncols=True,
            leave=True,
            initial=initial,
        )
    else:
        out = cls(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            file=_Lines(stream),
            ncols=100,
            initial=initial,
            mininterval=PLAIN_EVERY if every is None else every,
            maxinterval=float("inf"),
            ascii=True,
            bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, "
            "{rate_fmt}{postfix}]",
        )
    out._ddjax_stream = stream
    return out
