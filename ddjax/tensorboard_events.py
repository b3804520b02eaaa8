"""TensorBoard's view of a run folder: event files beside the JSON a job writes, which stays the
source of truth.

`tensorboard --logdir runs/` shows each run folder as one run. Two kinds of file, each with a fixed
name in the folder it describes:

- `events.out.tfevents.pretrain`: every scalar of `metrics.jsonl`, one event per logged step. A
  (re)started pretraining writes it anew from the records `metrics.jsonl` kept (a temporary file,
  then a rename), then appends each new step: a resumed run continues the same stream, and the steps
  it replays after its checkpoint appear once, as in `metrics.jsonl`.
- `events.out.tfevents.<job>` (zeroshot, attack, certify, and the evaluation after pretraining): a
  job's scalars and figures (PNG images) at one step, written whole, atomically, when the job writes
  its JSON.

The events are written with tensorboardX's protocol buffers and record framing (no TensorFlow): its
import took 0.18 s on a 2-core CPU, and clu's metric writers need TensorFlow
(docs/console-and-figures.md, "TensorBoard"). Only process 0 writes, as with every output.
"""

from __future__ import annotations

import io
import pathlib
import struct
import time

from PIL import Image
from tensorboardX.proto import event_pb2, summary_pb2
from tensorboardX.record_writer import masked_crc32c

from ddjax import distributed, run_folder

PREFIX = "events.out.tfevents."
# metrics.jsonl's keys that are not scalars of the run
NOT_SCALARS = ("step", "wall_time")


def path_of(folder, name: str) -> pathlib.Path:
    return pathlib.Path(folder) / f"{PREFIX}{name}"


def _record(event: event_pb2.Event) -> bytes:
    """One event in TFRecord framing: length, its masked CRC-32C, the bytes, theirs."""
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _header(wall_time: float) -> bytes:
    return _record(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2"))


def scalars_record(step: int, values: dict, wall_time: float) -> bytes:
    """An event of `values` (tag -> number) at `step`."""
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
    )
    return _record(event_pb2.Event(wall_time=wall_time, step=step, summary=summary))


def image_record(step: int, tag: str, png: bytes, wall_time: float) -> bytes:
    """An event of one PNG image (its bytes as they are) at `step`."""
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
        channels = len(image.getbands())
    value = summary_pb2.Summary.Value(
        tag=tag,
        image=summary_pb2.Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png
        ),
    )
    summary = summary_pb2.Summary(value=[value])
    return _record(event_pb2.Event(wall_time=wall_time, step=step, summary=summary))


def record_scalars(record: dict) -> dict:
    """The scalars of one metrics.jsonl record: every number but its step and time."""
    return {
        k: v
        for k, v in record.items()
        if k not in NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class TrainingEvents:
    """`events.out.tfevents.pretrain` of a run folder: rewritten from `records` (the metrics.jsonl
    records a (re)started run kept), then `write(record)` appends one step's scalars."""

    def __init__(self, workdir, records: list[dict]):
        self.path = path_of(workdir, "pretrain")
        self._file = None
        if not distributed.is_writer():
            return
        now = time.time()
        data = _header(now) + b"".join(
            scalars_record(r["step"], record_scalars(r), r.get("wall_time", now)) for r in records
        )
        run_folder.write_bytes(self.path, data)
        self._file = open(self.path, "ab")

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        wall_time = record.get("wall_time", time.time())
        self._file.write(scalars_record(record["step"], record_scalars(record), wall_time))
        self._file.flush()  # what TensorBoard reads while the run goes on

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_summary(folder, name: str, step: int, scalars: dict, images=()) -> pathlib.Path:
    """Writes `events.out.tfevents.<name>` in `folder` whole (atomically, process 0): `scalars` (tag
    -> number) and `images` ((tag, PNG path) pairs) at `step`. Returns its path."""
    path = path_of(folder, name)
    if not distributed.is_writer():  # the other processes wrote no PNG to read
        return path
    now = time.time()
    data = _header(now) + scalars_record(step, scalars, now)
    for tag, png in images:
        data += image_record(step, tag, pathlib.Path(png).read_bytes(), now)
    run_folder.write_bytes(path, data)
    return path
