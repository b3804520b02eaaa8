"""grain input pipelines: pretraining and zero-shot evaluation (spec sections 3.2 and 4.4).

Pretraining (`pretrain_loader`): random 1024 of the 8192 points (a permutation, not FPS), unit-ball
normalisation, a random rotation about the y axis; the image through the `recon` or `clip` preprocessing
(online teacher) or a random view index into a cached teacher bank; a random (prefix, suffix) prompt
index for the text teacher. Shuffled, repeated, batched with drop_remainder, sharded per JAX process,
optionally in worker processes, with checkpointable iterator state (`iterator.get_state()`, and
`grain.checkpoint.CheckpointSave/Restore` for orbax).

Zero-shot (`zeroshot_batches`): the test split only, in file order; per batch, FPS to `point_all` points
(1200 for 1024-point inputs; capped at the cloud size, so ScanObjectNN's 2048 is a permutation), then one
seeded random choice of `npoints` of those, shared by the whole batch (ReCon's runner).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import grain
import numpy as np

from ddjax import errors
from ddjax.data import image_augment

NUM_PREFIXES, NUM_SUFFIXES = 20, 3  # ReCon's prompt set: prompt index = prefix + 20 * suffix


def normalize_unit_ball(points: np.ndarray) -> np.ndarray:
    """Centre on the centroid, divide by the largest radius: (N, 3) -> (N, 3) with max norm 1."""
    centred = points - points.mean(axis=0, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(axis=1)).max()
    return centred / max(radius, 1e-12)


def rotate_y(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotation about the y (up) axis as ReCon's PointcloudRotate: row vectors times [[c,0,s],[0,1,0],[-s,0,c]]."""
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
            raise errors.ConfigError("num_points", f"record {example.get('id', example.get('record'))!r} has "
                                     f"{len(points)} points, fewer than {self.num_points}", "lower num_points")
        chosen = rng.permutation(len(points))[: self.num_points]  # random subset, not FPS (spec trap 12)
        points = rotate_y(normalize_unit_ball(points[chosen]), rng.uniform(0.0, 2.0 * math.pi))
        out = {"points": points.astype(np.float32), "label": np.int32(example["label"]),
               "record": np.int32(example["record"]),
               "prompt": np.int32(rng.integers(NUM_PREFIXES) + NUM_PREFIXES * rng.integers(NUM_SUFFIXES))}
        if self.image_pipeline is not None:
            image = image_augment.decode_png(example["image"])
            out["image"] = image_augment.preprocess(image, self.image_pipeline, rng, size=self.image_size)
        if self.num_views > 0:
            out["view"] = np.int32(rng.integers(self.num_views))
        return out


def pretrain_loader(source, *, batch_size: int, seed: int, transform: PretrainTransform,
                    worker_count: int = 0, shard_options: grain.sharding.ShardOptions | None = None,
                    ) -> grain.DataLoader:
    """An endless, shuffled, sharded, batched DataLoader over `source` (an `IndexedSource`).

    `batch_size` is per process. Iterate with `iter(loader)`; the iterator's `get_state()`/`set_state()`
    (or `grain.checkpoint.CheckpointSave/Restore`) resume exactly. Worker processes (`worker_count > 0`)
    need absl flags parsed first (main.py runs under absl.app). `shard_options` defaults to one shard per
    JAX process (`ShardByJaxProcess`), so each host reads its own part of every epoch.
    """
    shard = shard_options or grain.sharding.ShardByJaxProcess(drop_remainder=True)
    sampler = grain.samplers.IndexSampler(len(source), shard_options=shard, shuffle=True, num_epochs=None, seed=seed)
    return grain.DataLoader(data_source=source, sampler=sampler, worker_count=worker_count,
                            operations=[transform, grain.transforms.Batch(batch_size, drop_remainder=True)])


@dataclasses.dataclass(frozen=True)
class EvalTransform(grain.transforms.Map):
    """Points (unit-ball normalised for ModelNet; as stored for ScanObjectNN) and the label."""
    normalize: bool = True

    def map(self, example: dict) -> dict:
        points = np.asarray(example["points"], np.float32)
        if self.normalize:
            points = normalize_unit_ball(points).astype(np.float32)
        return {"points": points, "label": np.int32(example["label"])}


def zeroshot_batches(test_source, *, npoints: int, point_all: int, batch_size: int = 64, seed: int = 0,
                     normalize: bool = True, worker_count: int = 0) -> Iterator[dict]:
    """Batches of the test split for zero-shot evaluation: {'points': f32[b, npoints, 3], 'label': int32[b]}.

    The last batch may be smaller (nothing is dropped). The subsampling of batch i uses
    `np.random.default_rng([seed, i])`, so results are reproducible and independent of batch order.
    """
    import jax
    from kernels import fps

    sampler = grain.samplers.IndexSampler(len(test_source), shuffle=False, num_epochs=1, seed=0)
    loader = grain.DataLoader(data_source=test_source, sampler=sampler, worker_count=worker_count,
                              operations=[EvalTransform(normalize),
                                          grain.transforms.Batch(batch_size, drop_remainder=False)])
    subsample = jax.jit(lambda p, k: fps(p, k), static_argnums=1)
    for i, batch in enumerate(loader):
        points = batch["points"]  # (b, N, 3)
        n_all = min(point_all, points.shape[1])
        if npoints > n_all:
            raise errors.ConfigError("npoints", f"{npoints} exceeds the {n_all} points kept by FPS (the "
                                     "dataset's clouds and point_all)", "lower npoints")
        idx = np.asarray(subsample(points, n_all))  # (b, n_all), FPS from index 0
        points = np.take_along_axis(points, idx[..., None], axis=1)  # (b, n_all, 3)
        choice = np.random.default_rng([seed, i]).choice(n_all, npoints, replace=False)  # shared by the batch
        yield {"points": points[:, choice], "label": batch["label"]}
