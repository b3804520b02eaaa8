"""grain input pipelines: pretraining and zero-shot evaluation (spec sections 3.2 and 4.4).

Pretraining (`pretrain_loader`): random 1024 of the 8192 points (a permutation, not FPS), unit-ball
normalisation, a random rotation about the y axis; the image through the `recon` or `clip`
preprocessing (online teacher) or a random view index into a cached teacher bank; a random (prefix,
suffix) prompt index for the text teacher. Shuffled, repeated, batched with drop_remainder, each JAX
process reading its part of every global batch (`GlobalBatchSampler`: the same global batches for
any number of processes), optionally in worker processes, with checkpointable iterator state
(`iterator.get_state()`, and `grain.checkpoint.CheckpointSave/Restore` for orbax).

Zero-shot (`zeroshot_batches`): the test split only, in file order; per batch, FPS to `point_all`
points (1200 for 1024-point inputs; capped at the cloud size, so ScanObjectNN's 2048 is a
permutation), then one seeded random choice of `npoints` of those, shared by the whole batch
(ReCon's runner).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Iterator, Sequence

import grain
import jax
import numpy as np

from ddjax import errors
from ddjax.data import image_augment
from kernels import fps

NUM_PREFIXES, NUM_SUFFIXES = 20, 3  # ReCon's prompt set: prompt index = prefix + 20 * suffix


def normalize_unit_ball(points: np.ndarray) -> np.ndarray:
    """Centre on the centroid, divide by the largest radius: (N, 3) -> (N, 3) with max norm 1."""
    centred = points - points.mean(axis=0, keepdims=True)
    radius = np.sqrt((centred**2).sum(axis=1)).max()
    return centred / max(radius, 1e-12)


def rotate_y(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotation about the y (up) axis as ReCon's PointcloudRotate: row vectors times
    [[c,0,s],[0,1,0],[-s,0,c]]."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=points.dtype)
    return points @ rotation


class IndexedSource:
    """Concatenates random-access sources and adds each record's global position as `record`.

    The position is the row of the record in a cached teacher bank (built in the same order).
    """

    def __init__(self, sources: Sequence):
        self._sources = list(sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self._sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, record: int) -> dict:
        part = int(np.searchsorted(self._offsets, record, side="right") - 1)
        example = dict(self._sources[part][int(record - self._offsets[part])])
        example["record"] = int(record)
        return example

    def __repr__(self) -> str:
        return f"IndexedSource({len(self)} records from {len(self._sources)} sources)"


@dataclasses.dataclass(frozen=True)
class PretrainTransform(grain.transforms.RandomMap):
    """One pretraining example from a stored record (ShapeNet-55 or synthetic_shapes layout)."""

    num_points: int = 1024
    image_pipeline: str | None = "recon"  # None: no image (cached teacher or no image teacher)
    image_size: int = 224
    num_views: int = 0  # > 0: draw a view index into a cached image-feature bank

    def random_map(self, example: dict, rng: np.random.Generator) -> dict:
        points = np.asarray(example["points"], np.float32)
        if len(points) < self.num_points:
            raise errors.ConfigError(
                "num_points",
                f"record {example.get('id', example.get('record'))!r} has "
                f"{len(points)} points, fewer than {self.num_points}",
                "lower num_points",
            )
        # random subset, not FPS (spec trap 12)
        chosen = rng.permutation(len(points))[: self.num_points]
        points = rotate_y(normalize_unit_ball(points[chosen]), rng.uniform(0.0, 2.0 * math.pi))
        out = {
            "points": points.astype(np.float32),
            "label": np.int32(example["label"]),
            "record": np.int32(example["record"]),
            "prompt": np.int32(
                rng.integers(NUM_PREFIXES) + NUM_PREFIXES * rng.integers(NUM_SUFFIXES)
            ),
        }
        if self.image_pipeline is not None:
            image = image_augment.decode_png(example["image"])
            out["image"] = image_augment.preprocess(
                image, self.image_pipeline, rng, size=self.image_size
            )
        if self.num_views > 0:
            out["view"] = np.int32(rng.integers(self.num_views))
        return out


class GlobalBatchSampler:
    """The one-process order of records, dealt out to processes one global batch at a time.

    The records are shuffled as one process would see them (grain's `IndexSampler`: a new
    permutation per epoch, record i of the stream drawing its augmentation from `Philox(seed + i)`).
    Global batch b is stream positions [b * B, (b + 1) * B) with B = local_batch * processes;
    process p reads positions b * B + p * local_batch + [0, local_batch). So every global batch, and
    every record's augmentation, is the same for any number of processes, and within an epoch no
    record is read twice or skipped by one process that another reads. grain's DataLoader asks
    process p for sampler index `k * processes + p` (its k-th record); `__getitem__` turns that into
    the stream position.
    """

    def __init__(
        self,
        num_records: int,
        *,
        seed: int,
        local_batch: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self._stream = grain.samplers.IndexSampler(
            num_records, shuffle=True, num_epochs=None, seed=seed
        )
        self.num_records, self.seed, self.local_batch = num_records, seed, local_batch
        self.process_index, self.process_count = process_index, process_count

    def position(self, index: int) -> int:
        """Stream position of grain's sampler index `index` (= k * processes + p)."""
        k, p = divmod(index, self.process_count)
        batch, row = divmod(k, self.local_batch)
        return (batch * self.process_count + p) * self.local_batch + row

    def __getitem__(self, index: int):
        return self._stream[self.position(index)]

    def __len__(self) -> int:
        return sys.maxsize  # endless

    # grain checks it on restore: a resumed run must deal the records the same way
    def __repr__(self) -> str:
        return (
            f"GlobalBatchSampler(num_records={self.num_records}, seed={self.seed}, "
            f"local_batch={self.local_batch}, "
            f"processes={self.process_count})"
        )


def pretrain_loader(
    source,
    *,
    batch_size: int,
    seed: int,
    transform: PretrainTransform,
    worker_count: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.DataLoader:
    """An endless, shuffled, batched DataLoader over `source` (an `IndexedSource`): this process's
    part of every global batch (`GlobalBatchSampler`).

    `batch_size` is per process. Iterate with `iter(loader)`; the iterator's
    `get_state()`/`set_state()` (or `grain.checkpoint.CheckpointSave/Restore` for orbax) resume
    exactly. Worker processes (`worker_count > 0`) need absl flags parsed first (main.py runs under
    absl.app). The process index and count default to JAX's.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    sampler = GlobalBatchSampler(
        len(source),
        seed=seed,
        local_batch=batch_size,
        process_index=process_index,
        process_count=process_count,
    )
    shard = grain.sharding.ShardOptions(
        shard_index=process_index, shard_count=process_count, drop_remainder=True
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        worker_count=worker_count,
        shard_options=shard,
        operations=[transform, grain.transforms.Batch(batch_size, drop_remainder=True)],
    )


@dataclasses.dataclass(frozen=True)
class EvalTransform(grain.transforms.Map):
    """Points (unit-ball normalised for ModelNet; as stored for ScanObjectNN) and the label."""

    normalize: bool = True

    def map(self, example: dict) -> dict:
        points = np.asarray(example["points"], np.float32)
        if self.normalize:
            points = normalize_unit_ball(points).astype(np.float32)
        return {"points": points, "label": np.int32(example["label"])}


def zeroshot_batches(
    test_source,
    *,
    npoints: int,
    point_all: int,
    batch_size: int = 64,
    seed: int = 0,
    normalize: bool = True,
    worker_count: int = 0,
    wanted=None,
) -> Iterator[dict | None]:
    """Batches of the test split for zero-shot evaluation: {'points': f32[b, npoints, 3], 'label':
    int32[b]}. `point_all` 0: the clouds as stored (`as_stored`), a peer's own input.

    The last batch may be smaller (nothing is dropped). The subsampling of batch i uses
    `np.random.default_rng([seed, i])`, so results are reproducible and independent of batch
    order. With `wanted` (a set of batch indices), the other batches are yielded as None,
    unsampled.
    """

    sampler = grain.samplers.IndexSampler(len(test_source), shuffle=False, num_epochs=1, seed=0)
    loader = grain.DataLoader(
        data_source=test_source,
        sampler=sampler,
        worker_count=worker_count,
        operations=[
            EvalTransform(normalize),
            grain.transforms.Batch(batch_size, drop_remainder=False),
        ],
    )
    subsample = jax.jit(lambda p, k: fps(p, k), static_argnums=1)
    for i, batch in enumerate(loader):
        if wanted is not None and i not in wanted:
            yield None
            continue
        points = batch["points"]  # (b, N, 3)
        if not point_all:  # a peer's own input: the clouds as stored
            yield {"points": as_stored(points, npoints, subsample), "label": batch["label"]}
            continue
        n_all = min(point_all, points.shape[1])
        if npoints > n_all:
            raise errors.ConfigError(
                "npoints",
                f"{npoints} exceeds the {n_all} points kept by FPS (the "
                "dataset's clouds and point_all)",
                "lower npoints",
            )
        idx = np.asarray(subsample(points, n_all))  # (b, n_all), FPS from index 0
        points = np.take_along_axis(points, idx[..., None], axis=1)  # (b, n_all, 3)
        # shared by the batch
        choice = np.random.default_rng([seed, i]).choice(n_all, npoints, replace=False)
        yield {"points": points[:, choice], "label": batch["label"]}


def as_stored(points: np.ndarray, npoints: int, subsample) -> np.ndarray:
    """ULIP's and Uni3D's test loaders: the cloud f32[b, N, 3] as stored when npoints = N, FPS to
    npoints from its first point (in FPS order) when N is larger; fewer points is a ConfigError."""
    if npoints > points.shape[1]:
        raise errors.ConfigError(
            "npoints",
            f"the model reads {npoints} points per cloud; this dataset's clouds have "
            f"{points.shape[1]}",
            "evaluate on a dataset that keeps them (modelnet40_10k keeps all 10,000 points of "
            "ModelNet40's resampled shapes), or convert with a lower --config.npoints",
        )
    if npoints == points.shape[1]:
        return points
    idx = np.asarray(subsample(points, npoints))  # (b, npoints), FPS from index 0
    return np.take_along_axis(points, idx[..., None], axis=1)  # (b, npoints, 3)


def padded_batches(
    test_source,
    *,
    npoints: int,
    point_all: int,
    batch_size: int,
    seed: int = 0,
    normalize: bool = True,
    max_shapes: int = 0,
    wanted=None,
) -> list[dict | None]:
    """`zeroshot_batches` (the first `max_shapes` shapes; 0: all) as fixed-size batches {'points',
    'label', 'valid'}: the last batch is padded with copies of its first cloud (valid False), so
    every batch reuses one compiled function. Batches not in `wanted` (a set of indices; None: all)
    are None."""
    total = min(len(test_source), max_shapes) if max_shapes else len(test_source)
    batches = []
    for i, batch in enumerate(
        zeroshot_batches(
            test_source,
            npoints=npoints,
            point_all=point_all,
            batch_size=batch_size,
            seed=seed,
            normalize=normalize,
            wanted=wanted,
        )
    ):
        keep = min(batch_size, total - i * batch_size)
        if keep <= 0:
            break
        if batch is None:
            batches.append(None)
            continue
        points, label = np.asarray(batch["points"])[:keep], np.asarray(batch["label"])[:keep]
        pad = batch_size - keep
        # (batch_size, n, 3)
        batches.append(
            {
                "points": np.concatenate([points, np.repeat(points[:1], pad, 0)]),
                "label": np.concatenate([label, np.repeat(label[:1], pad)]),
                "valid": np.arange(batch_size) < keep,
            }
        )
    return batches


def num_batches(test_source, batch_size: int, max_shapes: int = 0) -> int:
    """How many batches `padded_batches` makes."""
    total = min(len(test_source), max_shapes) if max_shapes else len(test_source)
    return -(-total // batch_size)
