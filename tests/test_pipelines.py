"""grain pipelines: pretraining transform and loader (state, sharding, workers) and zero-shot
batches."""

import math

import numpy as np
import pytest

from ddjax.data import pipelines
from tests import references as ref


def test_rotate_y_is_recons_matrix_and_keeps_y_and_norms():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    out = pipelines.rotate_y(points, math.pi / 2)  # c = 0, s = 1: (x, y, z) -> (-z, y, x)
    np.testing.assert_allclose(
        out, np.stack([-points[:, 2], points[:, 1], points[:, 0]], 1), atol=1e-6
    )
    out = pipelines.rotate_y(points, 1.234)
    np.testing.assert_array_equal(out[:, 1], points[:, 1])
    np.testing.assert_allclose(
        np.linalg.norm(out, axis=1), np.linalg.norm(points, axis=1), rtol=1e-5
    )


def test_normalize_unit_ball():
    points = np.random.default_rng(1).normal(size=(100, 3)) * 5 + 3
    out = pipelines.normalize_unit_ball(points)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1).max(), 1.0)
    np.testing.assert_allclose(
        out * np.linalg.norm(points - points.mean(0), axis=1).max(), points - points.mean(0)
    )


def _record(n=8192, seed=0):
    points = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    from ddjax.data import image_augment

    image = image_augment.encode_png(np.full((32, 32, 3), 90, np.uint8))
    return {"points": points, "label": 3, "record": 7, "image": image}


def test_pretrain_transform():
    record = _record()
    t = pipelines.PretrainTransform(num_points=1024, image_pipeline="recon", num_views=4)
    out = t.random_map(record, np.random.default_rng(5))
    assert out["points"].shape == (1024, 3) and out["points"].dtype == np.float32
    assert out["image"].shape == (224, 224, 3) and out["image"].dtype == np.float32
    assert (
        out["label"] == 3
        and out["record"] == 7
        and 0 <= out["prompt"] < 60
        and 0 <= out["view"] < 4
    )
    # 1024 distinct input points, normalised, then rotated about y: norms and y are those of a
    # normalised subset of the input, so each output point's (norm, y) pair matches one input
    # point's.
    np.testing.assert_allclose(np.linalg.norm(out["points"], axis=1).max(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["points"].mean(0), 0, atol=1e-5)
    assert len(np.unique(out["points"][:, 1])) == 1024  # drawn without replacement
    # Same rng, same output; other rng, other output.
    again = t.random_map(record, np.random.default_rng(5))
    np.testing.assert_array_equal(again["points"], out["points"])
    np.testing.assert_array_equal(again["image"], out["image"])
    other = t.random_map(record, np.random.default_rng(6))
    assert not np.array_equal(other["points"], out["points"])


def test_pretrain_transform_rejects_short_clouds():
    with pytest.raises(
        ValueError, match=r"config.num_points\): record .* has 100 points, fewer than 1024"
    ):
        pipelines.PretrainTransform(image_pipeline=None).random_map(
            _record(n=100), np.random.default_rng(0)
        )


def _loader(synthetic_tiny, **kwargs):
    source = pipelines.IndexedSource(
        [synthetic_tiny.as_data_source("train"), synthetic_tiny.as_data_source("test")]
    )
    transform = pipelines.PretrainTransform(
        num_points=256, image_pipeline=kwargs.pop("image", None), num_views=2
    )
    batch_size = kwargs.pop("batch_size", 8)
    return source, pipelines.pretrain_loader(
        source, batch_size=batch_size, seed=3, transform=transform, **kwargs
    )


def test_pretrain_loader_batches_and_resumes_exactly(synthetic_tiny):
    source, loader = _loader(synthetic_tiny, image="clip")
    it = iter(loader)
    first = next(it)
    assert first["points"].shape == (8, 256, 3) and first["image"].shape == (8, 224, 224, 3)
    assert set(first) == {"points", "label", "record", "prompt", "image", "view"}
    assert len(source) == 72 and all(0 <= r < 72 for r in first["record"])
    # The record index finds the record: its label matches.
    for r, label in zip(first["record"], first["label"]):
        assert source[int(r)]["label"] == label
    next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    resumed = iter(_loader(synthetic_tiny, image="clip")[1])
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_processes_read_their_part_of_the_one_process_batches(synthetic_tiny):
    # 2 processes x 8 records per step read exactly what 1 process reads at 16: the same records in
    # the same rows with the same augmentation, over two epochs (9 global batches = 144 stream
    # positions, 72 records).
    _, one = _loader(synthetic_tiny, batch_size=16, process_index=0, process_count=1)
    whole = iter(one)
    parts = [
        iter(_loader(synthetic_tiny, batch_size=8, process_index=p, process_count=2)[1])
        for p in range(2)
    ]
    records = []
    for _ in range(9):
        want, got = next(whole), [next(it) for it in parts]
        for key in want:
            np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), want[key])
        records += [int(r) for g in got for r in g["record"]]
    # Each epoch of the stream reads every record once: none twice, none skipped by both processes.
    assert sorted(records[:72]) == list(range(72)) and sorted(records[72:]) == list(range(72))
    assert records[:72] != records[72:]  # a new permutation per epoch


def test_pretrain_loader_with_a_worker_process(synthetic_tiny):
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
    _, loader = _loader(synthetic_tiny, worker_count=1)
    _, reference = _loader(synthetic_tiny, worker_count=0)
    got, want = next(iter(loader)), next(iter(reference))
    # same data with and without workers
    np.testing.assert_array_equal(got["points"], want["points"])


def test_zeroshot_batches(synthetic_tiny):
    test = synthetic_tiny.as_data_source("test")  # 24 clouds of 8192 points
    batches = list(
        pipelines.zeroshot_batches(test, npoints=64, point_all=100, batch_size=10, seed=1)
    )
    assert [len(b["label"]) for b in batches] == [10, 10, 4]  # nothing dropped
    labels = np.concatenate([b["label"] for b in batches])
    # file order
    np.testing.assert_array_equal(labels, [test[i]["label"] for i in range(len(test))])
    # Batch 1 by hand: normalise, FPS to 100 from index 0, one shared choice of 64 with rng [seed,
    # 1].
    choice = np.random.default_rng([1, 1]).choice(100, 64, replace=False)
    for j in (0, 9):
        cloud = pipelines.normalize_unit_ball(test[10 + j]["points"]).astype(np.float32)
        expected = cloud[ref.fps(cloud, 100)][choice]
        np.testing.assert_allclose(batches[1]["points"][j], expected, atol=1e-6)
    again = list(pipelines.zeroshot_batches(test, npoints=64, point_all=100, batch_size=10, seed=1))
    np.testing.assert_array_equal(again[2]["points"], batches[2]["points"])
    other = next(pipelines.zeroshot_batches(test, npoints=64, point_all=100, batch_size=10, seed=2))
    assert not np.array_equal(other["points"], batches[0]["points"])
    with pytest.raises(
        ValueError, match=r"config.npoints\): 200 exceeds the 100 points kept by FPS"
    ):
        next(pipelines.zeroshot_batches(test, npoints=200, point_all=100))


def test_zeroshot_without_normalisation_keeps_coordinates(synthetic_tiny):
    test = synthetic_tiny.as_data_source("test")
    batch = next(
        pipelines.zeroshot_batches(test, npoints=32, point_all=9000, batch_size=4, normalize=False)
    )
    raw = {tuple(p) for p in test[0]["points"]}
    assert all(tuple(p) in raw for p in batch["points"][0])  # as stored (ScanObjectNN), a subset
