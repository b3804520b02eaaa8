"""The procedural shape dataset: geometry on the intended surfaces, area weighting, jitter that
keeps y up, unit-ball normalisation, the z-buffered renderer, determinism and the train/test splits.
"""

import re
import time

import numpy as np
import pytest

from ddjax.data import synthetic

CLS = {name: i for i, name in enumerate(synthetic.CLASSES)}


def canonical(name: str, num_points: int = 20000, seed: int = 0) -> np.ndarray:
    """f64[N, 3] points of the unjittered, unnormalised shape of class `name`."""
    points = synthetic.sample_surface(CLS[name], np.random.default_rng(seed), num_points)
    assert points.shape == (num_points, 3) and points.dtype == np.float32
    return points.astype(np.float64)


def foreground(image: np.ndarray) -> np.ndarray:
    """bool[H, W]: pixels that differ from the (uniform) background colour in the
    top-left corner."""
    return np.any(image != image[0, 0], axis=-1)


def test_classes_and_texts():
    assert synthetic.CLASSES[:12] == (
        "sphere",
        "cube",
        "cylinder",
        "cone",
        "torus",
        "pyramid",
        "capsule",
        "table",
        "chair",
        "cup",
        "lamp",
        "bottle",
    )
    assert set(synthetic.CLASS_TEXTS) == set(synthetic.CLASSES)
    for name, text in synthetic.CLASS_TEXTS.items():
        assert name in text, (name, text)  # the class stays recognisable in its text


# ----------------------------------------------------------------------- surfaces and area
# weighting


def test_sphere_points_lie_on_unit_sphere_uniformly():
    p = canonical("sphere")
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-6)
    # Archimedes: uniform density puts a quarter of the area above y = 0.5 (and 1/2 above y = 0).
    assert abs(np.mean(p[:, 1] > 0.5) - 0.25) < 0.015
    assert abs(np.mean(p[:, 0] > 0.0) - 0.5) < 0.015


def test_torus_points_satisfy_torus_equation_with_area_density():
    p = canonical("torus")
    rho = np.hypot(p[:, 0], p[:, 2])
    np.testing.assert_allclose((rho - 0.75) ** 2 + p[:, 1] ** 2, 0.25**2, atol=1e-6)
    # The area element is proportional to rho: the outer half of the tube holds 1/2 + r / (pi R) of
    # it.
    assert abs(np.mean(rho > 0.75) - (0.5 + 0.25 / (np.pi * 0.75))) < 0.015


def test_cylinder_is_side_plus_caps_weighted_by_area():
    p = canonical("cylinder")
    rho = np.hypot(p[:, 0], p[:, 2])
    on_cap = np.isclose(p[:, 1], 0.0, atol=1e-6) | np.isclose(p[:, 1], 1.6, atol=1e-6)
    on_side = np.isclose(rho, 0.55, atol=1e-6)
    assert np.all(on_cap | on_side)
    assert np.all(rho[on_cap] <= 0.55 + 1e-6)
    # caps / total area = 2 pi r^2 / (2 pi r^2 + 2 pi r h) = r / (r + h)
    assert abs(np.mean(on_cap & ~on_side) - 0.55 / (0.55 + 1.6)) < 0.015


def test_cone_lateral_surface_has_area_density():
    p = canonical("cone")
    lateral = p[:, 1] > 1e-6
    rho = np.hypot(p[lateral, 0], p[lateral, 2])
    np.testing.assert_allclose(rho, 0.8 * (1.0 - p[lateral, 1] / 1.6), atol=1e-5)
    # the lower half of a cone's side holds 3/4 of its area (not 1/2, as uniform heights would give)
    assert abs(np.mean(p[lateral, 1] < 0.8) - 0.75) < 0.015


def test_cube_faces_are_equally_populated():
    p = canonical("cube") - np.array([0.0, 0.8, 0.0])
    np.testing.assert_allclose(np.abs(p).max(axis=1), 0.8, atol=1e-6)  # every point on a face
    face = np.argmax(np.abs(p), axis=1) * 2 + (
        p[np.arange(len(p)), np.argmax(np.abs(p), axis=1)] > 0
    )
    np.testing.assert_allclose(np.bincount(face, minlength=6) / len(p), 1.0 / 6.0, atol=0.015)


def test_composites_have_their_parts():
    table = canonical("table")
    slab = 2 * (2.0 * 1.2 + 2.0 * 0.1 + 1.2 * 0.1)  # box faces of the 2.0 x 0.1 x 1.2 top
    # four 0.1 x 0.7 x 0.1 legs; their tops at y = 0.7
    leg_sides, leg_ends = 4 * 0.1 * 0.7, 2 * 0.1 * 0.1
    expected_top = (slab + 4 * leg_ends / 2) / (slab + 4 * (leg_sides + leg_ends))
    assert abs(np.mean(table[:, 1] > 0.7 - 1e-6) - expected_top) < 0.015  # area weighted
    legs = table[table[:, 1] < 0.69]
    # only legs below
    assert np.all(np.abs(legs[:, 0]) > 0.84) and np.all(np.abs(legs[:, 2]) > 0.44)
    assert len({(np.sign(x), np.sign(z)) for x, _, z in legs}) == 4
    cup = canonical("cup")
    handle = np.hypot(cup[:, 0], cup[:, 2]) > 0.5 + 1e-6
    assert 0.0 < np.mean(handle) < 0.1 and np.all(cup[handle, 0] > 0.5)  # a small handle on +x
    bottle = canonical("bottle")
    # neck
    assert np.all(np.hypot(bottle[:, 0], bottle[:, 2])[bottle[:, 1] > 1.4 + 1e-6] <= 0.12 + 1e-6)


# -------------------------------------------------------------------------- jitter and
# normalisation


@pytest.mark.parametrize("class_index", range(len(synthetic.CLASSES)))
def test_sample_object_is_unit_ball_normalised(class_index):
    p = synthetic.sample_object(class_index, np.random.default_rng(class_index), 2048)
    assert p.shape == (2048, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.mean(axis=0), 0.0, atol=1e-5)
    assert abs(np.linalg.norm(p, axis=1).max() - 1.0) < 1e-5


def quadric_fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares c with [x^2, y^2, z^2, xy, yz, xz, x, y, z] . c = 1 -> (c f64[9], max
    residual)."""
    x, y, z = points.astype(np.float64).T
    design = np.stack([x * x, y * y, z * z, x * y, y * z, x * z, x, y, z], axis=1)
    coef = np.linalg.lstsq(design, np.ones(len(points)), rcond=None)[0]
    return coef, float(np.abs(design @ coef - 1.0).max())


def test_sphere_instance_is_an_ellipsoid_rotated_about_y_only():
    xz_terms = []
    for index in range(6):
        p = synthetic.make_example(CLS["sphere"], 3, index, num_points=2048, image_size=16)[
            "points"
        ]
        coef, residual = quadric_fit(p)
        assert residual < 1e-4  # still exactly on a quadric surface (an ellipsoid)
        squares = np.abs(coef[:3]).max()
        # no xy / yz: no tilt
        assert abs(coef[3]) < 1e-3 * squares and abs(coef[4]) < 1e-3 * squares
        axes = 1.0 / np.sqrt(coef[:3])
        assert axes.max() / axes.min() > 1.01  # anisotropic scale jitter
        xz_terms.append(abs(coef[5]) / squares)
    assert max(xz_terms) > 0.05  # the jitter ellipsoid is turned about y away from the x / z axes
    _, cube_residual = quadric_fit(
        synthetic.sample_object(CLS["cube"], np.random.default_rng(0), 2048)
    )
    assert cube_residual > 0.1  # the fit does tell shapes apart


@pytest.mark.parametrize("name", ["cube", "cylinder", "table"])
def test_flat_tops_stay_horizontal(name):
    """Rotation is about y only: the points of a horizontal top face keep one exact height."""
    for index in range(4):
        y = synthetic.make_example(CLS[name], 0, index, num_points=4096, image_size=16)["points"][
            :, 1
        ]
        assert np.mean(y >= y.max() - 1e-6) > 0.08
        assert np.mean(y <= y.min() + 1e-6) > 0.005  # cube bottom, cylinder cap, table leg feet


def test_rotation_varies_across_examples():
    """The cube's top-face outline (its xz corners) is turned by a different angle in
    each example."""
    angles = []
    for index in range(4):
        p = synthetic.make_example(CLS["cube"], 0, index, num_points=4096, image_size=16)["points"]
        top = p[p[:, 1] >= p[:, 1].max() - 1e-6]
        corner = top[np.argmax(np.hypot(top[:, 0], top[:, 2]))]
        angles.append(np.arctan2(corner[2], corner[0]))
    assert np.ptp(np.mod(angles, np.pi / 2)) > 0.1


# --------------------------------------------------------------------------------------------
# render


def test_render_z_buffer_nearer_wins_and_is_brighter():
    toward_camera = np.array([0.0, np.sin(np.deg2rad(20.0)), np.cos(np.deg2rad(20.0))])
    base = np.array([0.004, 0.004, 0.0])  # off the pixel grid lines
    near, far = base + 0.5 * toward_camera, base - 0.5 * toward_camera  # the same pixel
    # elsewhere in the image, one nearer and one farther than both, so the depth range is the same
    # below
    refs = [np.array([-0.5, -0.5, 0.9]), np.array([0.5, 0.5, -0.9])]
    both = synthetic.render(np.stack([far, near, *refs]), 64)
    # order-free
    np.testing.assert_array_equal(both, synthetic.render(np.stack([*refs, near, far]), 64))
    # far is hidden
    np.testing.assert_array_equal(both, synthetic.render(np.stack([near, *refs]), 64))
    only_far = synthetic.render(np.stack([far, *refs]), 64)
    splat = foreground(synthetic.render(near[None], 64))
    assert 0 < splat.sum() < 50 and np.array_equal(
        splat, foreground(synthetic.render(far[None], 64))
    )
    assert np.all(both[splat].sum(-1) > only_far[splat].sum(-1))  # nearer is brighter


def test_render_foreground_fraction_for_every_class():
    for class_index in range(len(synthetic.CLASSES)):
        example = synthetic.make_example(class_index, 0, 0)
        image = example["image"]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        # uniform background in the corners
        np.testing.assert_array_equal(image[0, 0], image[-1, -1])
        fraction = foreground(image).mean()
        assert 0.05 < fraction < 0.9, (synthetic.CLASSES[class_index], fraction)


def test_renders_of_different_classes_differ():
    images = [
        synthetic.render(synthetic.normalize_unit_ball(canonical(name, 4096)), 64).astype(int)
        for name in synthetic.CLASSES
    ]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            changed = np.mean(np.abs(images[i] - images[j]).max(axis=-1) > 40)
            assert changed > 0.05, (synthetic.CLASSES[i], synthetic.CLASSES[j], changed)


def test_render_is_fast():
    points = synthetic.sample_object(CLS["chair"], np.random.default_rng(0), 8192)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        synthetic.render(points, 128)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05


# --------------------------------------------------------------------------------- examples and
# splits


def test_make_example_is_deterministic():
    a = synthetic.make_example(CLS["chair"], 7, 3, num_points=1024, image_size=32)
    b = synthetic.make_example(CLS["chair"], 7, 3, num_points=1024, image_size=32)
    np.testing.assert_array_equal(a["points"], b["points"])
    np.testing.assert_array_equal(a["image"], b["image"])
    assert (a["label"], a["text"], a["id"]) == (b["label"], b["text"], b["id"])
    assert (a["label"], a["text"], a["id"]) == (CLS["chair"], "chair", "chair_7_00003")
    assert a["points"].shape == (1024, 3) and a["points"].dtype == np.float32
    assert a["image"].shape == (32, 32, 3) and a["image"].dtype == np.uint8
    for other in (
        synthetic.make_example(CLS["chair"], 7, 4, num_points=1024, image_size=32),
        synthetic.make_example(CLS["chair"], 8, 3, num_points=1024, image_size=32),
    ):
        assert not np.allclose(a["points"], other["points"])
        assert other["id"] != a["id"]


def test_generate_counts_labels_and_disjoint_splits():
    kwargs = dict(per_class=2, num_points=64, image_size=16)
    train = list(synthetic.generate("train", seed=1, **kwargs))
    test = list(synthetic.generate("test", seed=1, **kwargs))
    n = len(synthetic.CLASSES)
    for split in (train, test):
        assert len(split) == 2 * n
        np.testing.assert_array_equal(np.bincount([e["label"] for e in split], minlength=n), 2)
        assert all(e["text"] == synthetic.CLASS_TEXTS[synthetic.CLASSES[e["label"]]] for e in split)
        assert all(
            re.fullmatch(rf"{synthetic.CLASSES[e['label']]}_1_\d{{5,}}", e["id"]) for e in split
        )
    train_ids, test_ids = {e["id"] for e in train}, {e["id"] for e in test}
    assert len(train_ids) == len(test_ids) == 2 * n and not train_ids & test_ids
    train_points = {e["points"].tobytes() for e in train}
    assert not train_points & {e["points"].tobytes() for e in test}


def test_generate_default_sizes():
    n = len(synthetic.CLASSES)
    assert sum(1 for _ in synthetic.generate("train", num_points=16, image_size=8)) == 40 * n
    assert sum(1 for _ in synthetic.generate("test", num_points=16, image_size=8)) == 10 * n


@pytest.mark.parametrize(
    "split, per_class, match",
    [
        ("validation", None, r"unknown split 'validation'"),
        ("train", 0, r"per_class must be"),
        ("test", -3, r"per_class must be"),
    ],
)
def test_generate_rejects_bad_arguments_at_call_time(split, per_class, match):
    with pytest.raises(ValueError, match=match):
        synthetic.generate(split, per_class=per_class)  # raises before iteration starts


def test_make_example_rejects_unknown_class():
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 12\)"):
        synthetic.make_example(len(synthetic.CLASSES), 0, 0)
