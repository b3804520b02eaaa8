"""Metrics and reports: JSON lines in the workdir, a console progress line and atomically written
JSON files, written by process 0 only."""

from __future__ import annotations

import json
import os
import time

from ddjax import distributed, run_folder


def write_json(path, obj) -> None:
    """Writes `obj` as indented JSON to `path` atomically (a temporary file, then a rename); process
    0 only."""
    run_folder.write_text(path, json.dumps(obj, indent=2))


class MetricWriter:
    """`write(step, metrics)` appends one JSON object per logged step to WORKDIR/metrics.jsonl."""

    def __init__(self, workdir: str, total_steps: int, start_step: int, echo=print):
        # where the logged line goes (print, or a progress bar's write on a terminal)
        self.echo = echo
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total_steps = total_steps
        self._last_time, self._last_step = time.time(), start_step
        self.enabled = distributed.is_writer()
        if self.enabled and os.path.exists(self.path):
            # A resumed run replays the steps after its checkpoint: drop their old lines.
            kept = [
                line for line in read_lines(self.path) if json.loads(line)["step"] <= start_step
            ]
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(kept)
            os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> dict:
        now = time.time()
        steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        record = {
            "step": step,
            **{k: float(v) for k, v in metrics.items()},
            "steps_per_sec": steps_per_sec,
        }
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
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


def read_lines(path: str) -> list[str]:
    """Complete lines only: a run killed mid-write may leave a partial last line."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return lines


def read_metrics(workdir: str) -> list[dict]:
    return [json.loads(line) for line in read_lines(os.path.join(workdir, "metrics.jsonl"))]
