"""Metrics and reports: JSON lines in the workdir, a console progress line and atomically written
JSON files, written by process 0 only."""

from __future__ import annotations

import json
import os
import time
from typing import Callable

from ddjax import distributed, errors, run_folder, tensorboard_events


def write_json(path, obj) -> None:
    """Writes `obj` as indented JSON to `path` atomically (a temporary file, then a rename); process
    0 only."""
    run_folder.write_text(path, json.dumps(obj, indent=2))


class MetricWriter:
    """`write(step, metrics)` appends one JSON object per logged step to WORKDIR/metrics.jsonl, and
    its scalars to the run's TensorBoard events (ddjax/tensorboard_events.py); `close()` at the
    end."""

    def __init__(self, workdir: str, total_steps: int, start_step: int, echo=print):
        # where the logged line goes (print, or a progress bar's write on a terminal)
        self.echo = echo
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total_steps = total_steps
        self._last_time, self._last_step = time.time(), start_step
        self.enabled = distributed.is_writer()
        kept = []
        if self.enabled and os.path.exists(self.path):
            # A resumed run replays the steps after its checkpoint: drop their old lines. A damaged
            # line stays as it is (its step is unknown), named once on stderr.
            kept = [
                (raw, record)
                for raw, record in read_lines(self.path)
                if record is None or record["step"] <= start_step
            ]
            run_folder.write_bytes(self.path, b"".join(raw for raw, _ in kept))
        # the records kept and each new step's (the curves' data), and their events
        self.records = [record for _, record in kept if record is not None]
        self.events = tensorboard_events.TrainingEvents(workdir, self.records)

    def write(self, step: int, metrics: dict) -> dict:
        now = time.time()
        steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        record = {
            "step": step,
            **{k: float(v) for k, v in metrics.items()},
            "steps_per_sec": steps_per_sec,
            "wall_time": now,
        }
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.events.write(record)
            self.records.append(record)
            eta = (self.total_steps - step) / max(steps_per_sec, 1e-9)
            features = "".join(
                f"{short} {record[key]:.4f}  "
                for key, short in (("loss_image", "img"), ("loss_text", "txt"))
                if key in record
            )
            self.echo(
                f"step {step}/{self.total_steps}  loss {record['loss']:.4f}  rec "
                f"{record['loss_rec']:.4f}  {features}lr {record['lr']:.2e}  "
                f"{steps_per_sec:.2f} steps/s  ETA {eta / 60:.1f} min"
            )
        return record

    def close(self) -> None:
        self.events.close()


def read_lines(
    path: str, warn: Callable[[str], None] = errors.note
) -> list[tuple[bytes, dict | None]]:
    """(raw line with its newline, record) for each complete line of a metrics.jsonl; the record is
    None for a damaged line (not a JSON object with an integer step), which `warn` names with its
    line number. A partial last line (a run killed mid-write) is left out silently."""
    with open(path, "rb") as f:
        *complete, _partial = f.read().split(b"\n")
    out = []
    for number, raw in enumerate(complete, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            why = (
                None if isinstance(record, dict) and type(record.get("step")) is int else "no step"
            )
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            why = errors.one_line(e)
        if why:
            warn(f"{path}:{number} is not a metrics record ({why}); it is skipped")
        out.append((raw + b"\n", None if why else record))
    return out


def read_metrics(workdir: str) -> list[dict]:
    """The records of WORKDIR/metrics.jsonl in order; damaged lines are named and skipped."""
    lines = read_lines(os.path.join(workdir, "metrics.jsonl"))
    return [record for _, record in lines if record is not None]
