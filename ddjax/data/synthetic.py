"""Procedural, download-free 3D shape dataset for smoke runs and tests (pure numpy).

Each of the `CLASSES` is a union of primitive surfaces (triangle meshes, frustum/cylinder sides,
disks, spherical zones, torus arcs) sampled with uniform density over the total surface area: points
are split between the parts by a multinomial over their areas, and every part samples its own
surface uniformly. y is the up axis; canonical shapes stand on (or are centred near) the y = 0
plane.

    sample_surface(c, rng, n)  canonical shape, no jitter                        f32[n, 3]
    sample_object(c, rng, n)   scale jitter, rotation about y, unit-ball normalised  f32[n, 3]
    render(points, size)       numpy z-buffered point splatting                 uint8[size, size, 3]
    make_example(c, seed, i)   one deterministic example dict
    generate(split, seed)      all examples of a split (train and test never share an index)

The examples are deterministic in (class_index, seed, index): the generator is
`np.random.default_rng([seed, class_index, index])`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = (
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
CLASS_TEXTS: dict[str, str] = {
    "sphere": "sphere",
    "cube": "cube",
    "cylinder": "cylinder",
    "cone": "cone",
    "torus": "torus",
    "pyramid": "pyramid",
    "capsule": "capsule",
    "table": "table",
    "chair": "chair",
    "cup": "coffee cup",
    "lamp": "desk lamp",
    "bottle": "bottle",
}

SCALE_JITTER: tuple[float, float] = (0.8, 1.2)  # per-axis scale factor range in sample_object
DEFAULT_PER_CLASS: tuple[tuple[str, int], ...] = (("train", 40), ("test", 10))
TEST_INDEX_START = 1_000_000  # test examples use indices >= this, train examples indices below it

_CAMERA_PITCH_DEG = 20.0  # the camera looks down at the origin from this elevation, in front (+z)
_BACKGROUND: tuple[int, int, int] = (220, 220, 220)  # light grey
# nearest points; farther ones darker
_OBJECT_RGB: tuple[float, float, float] = (70.0, 130.0, 200.0)
_FAR_INTENSITY = 0.3  # intensity multiplier of the farthest visible point; the nearest gets 1.0
_IMAGE_FILL = 0.92  # the unit ball's radius as a fraction of the half image size


# -----------------------------------------------------------------------------------------
# primitives

Sampler = Callable[[np.random.Generator, int], np.ndarray]  # (rng, n) -> f64[n, 3]


@dataclasses.dataclass(frozen=True)
class Part:
    """One primitive surface: its area and a sampler drawing uniformly distributed points on it."""

    area: float
    sample: Sampler


def _uniform_angle(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.0, 2.0 * np.pi, n)  # f64[n]


def _ring_points(radius: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Points at distance `radius` from the y axis, height `y`, azimuth `theta` -> f64[n, 3]."""
    return np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], axis=-1)


def triangle_mesh(vertices: np.ndarray, faces: np.ndarray) -> Part:
    """The surface of a triangle mesh: vertices f[V, 3], faces int[F, 3]."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]  # (F, 3, 3)
    tri_areas = 0.5 * np.linalg.norm(
        np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1
    )
    total = float(tri_areas.sum())

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.choice(len(tri), size=n, p=tri_areas / total)  # (n,)
        r1, r2 = rng.random(n), rng.random(n)
        s = np.sqrt(r1)  # uniform barycentric coordinates: (1 - s, s (1 - r2), s r2)
        a, b, c = tri[which, 0], tri[which, 1], tri[which, 2]  # (n, 3) each
        return (1.0 - s)[:, None] * a + (s * (1.0 - r2))[:, None] * b + (s * r2)[:, None] * c

    return Part(total, sample)


def box(center: tuple[float, float, float], half: tuple[float, float, float]) -> Part:
    """The six faces of an axis-aligned box with the given center and half extents."""
    signs = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64
    )
    vertices = np.asarray(center) + signs * np.asarray(half)  # (8, 3); index = 4 ix + 2 iy + iz
    faces = np.array(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],  # x = -, x = +
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],  # y = -, y = +
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],  # z = -, z = +
        ]
    )
    return triangle_mesh(vertices, faces)


def square_pyramid(half_base: float, height: float) -> Part:
    """A square base of half side `half_base` at y = 0 and four triangles up to the apex (0, height,
    0)."""
    h = half_base
    vertices = np.array(
        [[-h, 0, -h], [h, 0, -h], [h, 0, h], [-h, 0, h], [0, height, 0]], np.float64
    )
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return triangle_mesh(vertices, faces)


def frustum_side(r0: float, r1: float, y0: float, y1: float) -> Part:
    """The open lateral surface around the y axis with radius r0 at y0 and r1 at y1 (cylinder: r0 ==
    r1).

    The area density along the axis is proportional to the local radius, so the radius is drawn
    with r^2 uniform between r0^2 and r1^2 (cone and frustum), or the height uniformly
    (cylinder).
    """
    slant = float(np.hypot(y1 - y0, r1 - r0))
    area = np.pi * (r0 + r1) * slant

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n)
        if np.isclose(r0, r1):
            t = u
        else:
            radius = np.sqrt(r0**2 + (r1**2 - r0**2) * u)
            t = (radius - r0) / (r1 - r0)
        return _ring_points(r0 + (r1 - r0) * t, y0 + (y1 - y0) * t, _uniform_angle(rng, n))

    return Part(area, sample)


def disk(radius: float, y: float, inner_radius: float = 0.0) -> Part:
    """A horizontal disk (or annulus) of the given radius at height y, centred on the y axis."""
    area = np.pi * (radius**2 - inner_radius**2)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        r = np.sqrt(rng.uniform(inner_radius**2, radius**2, n))
        return _ring_points(r, np.full(n, float(y)), _uniform_angle(rng, n))

    return Part(area, sample)


def sphere_zone(radius: float, y0: float = -1.0, y1: float = 1.0, center_y: float = 0.0) -> Part:
    """The part of a sphere (centre (0, center_y, 0)) between heights center_y + radius * [y0, y1].

    Archimedes: the area of a spherical zone is proportional to its height, so y is uniform.
    """
    area = 2.0 * np.pi * radius**2 * (y1 - y0)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        y = rng.uniform(y0, y1, n)
        ring = _ring_points(np.sqrt(np.clip(1.0 - y**2, 0.0, None)), y, _uniform_angle(rng, n))
        return radius * ring + np.array([0.0, center_y, 0.0])

    return Part(area, sample)


def torus(major: float, minor: float, theta0: float = 0.0, theta1: float = 2.0 * np.pi) -> Part:
    """A torus around the y axis (ring radius `major`, tube radius `minor`), azimuths
    theta0..theta1.

    The area element is minor * (major + minor cos phi) dphi dtheta, so the tube angle phi is
    drawn from that density by inverting its CDF on a fine grid.
    """
    area = (theta1 - theta0) * 2.0 * np.pi * minor * major
    phi_grid = np.linspace(0.0, 2.0 * np.pi, 2049)  # (2049,)
    # increasing, 0 -> 1
    cdf = (major * phi_grid + minor * np.sin(phi_grid)) / (2.0 * np.pi * major)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        phi = np.interp(rng.random(n), cdf, phi_grid)
        theta = rng.uniform(theta0, theta1, n)
        return _ring_points(major + minor * np.cos(phi), minor * np.sin(phi), theta)

    return Part(area, sample)


def moved(
    part: Part, rotation: np.ndarray | None = None, offset: tuple[float, ...] = (0.0, 0.0, 0.0)
) -> Part:
    """`part` rotated by the 3x3 matrix `rotation` (area preserving), then translated
    by `offset`."""
    matrix = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return part.sample(rng, n) @ matrix.T + np.asarray(offset, np.float64)

    return Part(part.area, sample)


def rotation_x(angle: float) -> np.ndarray:
    """f64[3, 3] rotation by `angle` radians about the x axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle: float) -> np.ndarray:
    """f64[3, 3] rotation by `angle` radians about the y (up) axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle: float) -> np.ndarray:
    """f64[3, 3] rotation by `angle` radians about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------------------------
# classes


def _closed_cylinder(radius: float, y0: float, y1: float) -> list[Part]:
    return [frustum_side(radius, radius, y0, y1), disk(radius, y0), disk(radius, y1)]


def _legs(half_x: float, half_z: float, height: float, thickness: float) -> list[Part]:
    """Four square legs from y = 0 to `height` at (+-half_x, +-half_z)."""
    t = thickness / 2.0
    return [
        box((sx * half_x, height / 2.0, sz * half_z), (t, height / 2.0, t))
        for sx in (-1, 1)
        for sz in (-1, 1)
    ]


def _sphere() -> list[Part]:
    return [sphere_zone(1.0)]


def _cube() -> list[Part]:
    return [box((0.0, 0.8, 0.0), (0.8, 0.8, 0.8))]


def _cylinder() -> list[Part]:
    return _closed_cylinder(0.55, 0.0, 1.6)


def _cone() -> list[Part]:
    return [frustum_side(0.8, 0.0, 0.0, 1.6), disk(0.8, 0.0)]


def _torus() -> list[Part]:
    return [torus(0.75, 0.25)]


def _pyramid() -> list[Part]:
    return [square_pyramid(0.9, 1.3)]


def _capsule() -> list[Part]:
    """A pill lying along x: a cylinder of radius 0.4 and length 1.2 with hemispherical ends."""
    upright = [
        frustum_side(0.4, 0.4, -0.6, 0.6),
        sphere_zone(0.4, 0.0, 1.0, center_y=0.6),
        sphere_zone(0.4, -1.0, 0.0, center_y=-0.6),
    ]
    return [moved(p, rotation_z(np.pi / 2.0), (0.0, 0.4, 0.0)) for p in upright]


def _table() -> list[Part]:
    return [box((0.0, 0.75, 0.0), (1.0, 0.05, 0.6)), *_legs(0.9, 0.5, 0.7, 0.1)]


def _chair() -> list[Part]:
    seat = box((0.0, 0.5, 0.0), (0.45, 0.04, 0.45))
    back = box((0.0, 1.04, -0.41), (0.45, 0.5, 0.04))
    return [seat, back, *_legs(0.41, 0.41, 0.46, 0.08)]


def _cup() -> list[Part]:
    """An open cylinder with a bottom and a half-torus handle in the x-y plane on the +x side."""
    handle = torus(0.3, 0.06, -np.pi / 2.0, np.pi / 2.0)  # ring in the x-z plane, x >= 0 half
    return [
        frustum_side(0.5, 0.5, 0.0, 1.1),
        disk(0.5, 0.0),
        moved(handle, rotation_x(np.pi / 2.0), (0.5, 0.55, 0.0)),
    ]


def _lamp() -> list[Part]:
    base = _closed_cylinder(0.45, 0.0, 0.08)
    pole = frustum_side(0.035, 0.035, 0.08, 1.3)
    shade = frustum_side(0.55, 0.25, 1.0, 1.5)
    return [*base, pole, shade]


def _bottle() -> list[Part]:
    body = [frustum_side(0.35, 0.35, 0.0, 1.1), disk(0.35, 0.0)]
    shoulder = frustum_side(0.35, 0.12, 1.1, 1.4)
    neck = [frustum_side(0.12, 0.12, 1.4, 1.8), disk(0.12, 1.8)]
    return [*body, shoulder, *neck]


_BUILDERS: tuple[Callable[[], list[Part]], ...] = (
    _sphere,
    _cube,
    _cylinder,
    _cone,
    _torus,
    _pyramid,
    _capsule,
    _table,
    _chair,
    _cup,
    _lamp,
    _bottle,
)
assert len(_BUILDERS) == len(CLASSES)


def class_parts(class_index: int) -> list[Part]:
    """The primitive surfaces of the canonical (unjittered) shape of class `class_index`."""
    _check_class_index(class_index)
    return _BUILDERS[class_index]()


def _check_class_index(class_index: int) -> None:
    if not 0 <= int(class_index) < len(CLASSES):
        raise ValueError(f"class_index must be in [0, {len(CLASSES)}), got {class_index}")


# -------------------------------------------------------------------------------------------
# sampling


def sample_parts(parts: list[Part], rng: np.random.Generator, num_points: int) -> np.ndarray:
    """`num_points` points uniform over the union of `parts` (area weighted), shuffled
    -> f64[N, 3]."""
    areas = np.array([p.area for p in parts], np.float64)  # (P,)
    counts = rng.multinomial(num_points, areas / areas.sum())  # (P,), sums to num_points
    # (N, 3)
    points = np.concatenate([p.sample(rng, int(k)) for p, k in zip(parts, counts)], axis=0)
    return points[rng.permutation(num_points)]


def sample_surface(
    class_index: int, rng: np.random.Generator, num_points: int = 8192
) -> np.ndarray:
    """The canonical shape of a class (no jitter, no rotation, not normalised) -> f32[num_points,
    3]."""
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    return sample_parts(class_parts(class_index), rng, num_points).astype(np.float32)


def normalize_unit_ball(points: np.ndarray) -> np.ndarray:
    """Centres f[N, 3] on its centroid and divides by the largest norm -> f32[N, 3] with
    max norm 1."""
    centred = np.asarray(points, np.float64) - np.mean(points, axis=0, dtype=np.float64)  # (N, 3)
    radius = np.linalg.norm(centred, axis=-1).max()
    return (centred / max(radius, 1e-12)).astype(np.float32)


def sample_object(class_index: int, rng: np.random.Generator, num_points: int = 8192) -> np.ndarray:
    """A jittered instance of a class -> f32[num_points, 3] in the unit ball.

    The canonical surface is scaled per axis by U(SCALE_JITTER), rotated about the y axis by a
    uniform angle (no tilt: up stays up), then centred on its centroid and divided by its max norm.
    """
    points = sample_surface(class_index, rng, num_points).astype(np.float64)  # (N, 3)
    scale = rng.uniform(*SCALE_JITTER, size=3)  # (3,)
    rotation = rotation_y(rng.uniform(0.0, 2.0 * np.pi))  # (3, 3)
    return normalize_unit_ball((points * scale) @ rotation.T)


# ------------------------------------------------------------------------------------------
# rendering


def _camera_frame(pitch_deg: float) -> np.ndarray:
    """f64[3, 3] rows (right, up, toward-camera) of a camera in front (+z) looking down by
    `pitch_deg`."""
    pitch = np.deg2rad(pitch_deg)
    s, c = np.sin(pitch), np.cos(pitch)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) pixel offsets int[S] of a disk-shaped splat of the given radius in pixels."""
    span = np.arange(-int(radius), int(radius) + 1)
    d_rows, d_cols = np.meshgrid(span, span, indexing="ij")
    keep = d_rows**2 + d_cols**2 <= radius**2
    return d_rows[keep], d_cols[keep]


def _splat_radii(size: int, num_points: int) -> tuple[float, float]:
    """(coverage, depth) splat radii in pixels, in units of the mean point spacing on the image.

    Seen face-on, a unit sphere's front gets only ~0.2 points per pixel at 8192 points and 128 px,
    so small splats leave holes in the near surface. The coverage splat (2.1 px at those settings,
    at most size / 40) decides which pixels show the object; the 1.5x wider depth splat decides
    which surface is seen there.
    """
    spacing = size / np.sqrt(max(num_points, 1))
    # sparse clouds stay point-like
    cover = float(np.clip(1.5 * spacing, 1.5, max(1.5, size / 40.0)))
    return cover, 1.5 * cover


def _splat(
    rows: np.ndarray, cols: np.ndarray, radius: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ids int[M] covered by disks around int[N] (rows, cols), and the point of each id
    int[M]."""
    d_rows, d_cols = _disk_offsets(radius)  # (S,) each
    all_rows = (rows[:, None] + d_rows[None, :]).reshape(-1)  # (N * S,)
    all_cols = (cols[:, None] + d_cols[None, :]).reshape(-1)
    owner = np.repeat(np.arange(len(rows)), d_rows.size)  # (N * S,)
    inside = (all_rows >= 0) & (all_rows < size) & (all_cols >= 0) & (all_cols < size)
    return all_rows[inside] * size + all_cols[inside], owner[inside]


def _depth_intensity(nearness: np.ndarray) -> np.ndarray:
    """f[M] camera nearness of the visible pixels -> brightness f64[M] in [_FAR_INTENSITY, 1].

    Stretched over the visible depth range of this image (nearest = 1), so shapes keep their
    contrast.
    """
    lo, hi = (float(nearness.min()), float(nearness.max())) if nearness.size else (0.0, 0.0)
    t = (nearness - lo) / (hi - lo) if hi - lo > 1e-6 else np.ones_like(nearness)
    return _FAR_INTENSITY + (1.0 - _FAR_INTENSITY) * t


def render(points: np.ndarray, size: int = 128) -> np.ndarray:
    """Orthographic z-buffered point splatting of unit-ball points f[N, 3] -> uint8[size, size, 3].

    The fixed camera is in front (+z) and above, looking down 20 degrees at the origin; the unit
    ball fills `_IMAGE_FILL` of the image. The object covers the pixels within the coverage splat
    radius of a point; each such pixel shows the nearest point within the (wider) depth splat
    radius, so far surfaces do not show through gaps between near points. Colour is `_OBJECT_RGB`
    scaled by depth (nearer is brighter, stretched over the visible depth range) on a uniform
    light-grey background. Points outside the unit ball may fall off the image and are then dropped.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)  # (N, 3)
    cam = points @ _camera_frame(_CAMERA_PITCH_DEG).T  # (N, 3): right, up, nearness
    half = size / 2.0
    cols = np.floor(half + cam[:, 0] * _IMAGE_FILL * half).astype(np.int64)  # (N,)
    rows = np.floor(half - cam[:, 1] * _IMAGE_FILL * half).astype(np.int64)  # (N,)
    cover_radius, depth_radius = _splat_radii(size, len(points))

    zbuffer = np.full(size * size, -np.inf)  # (H * W,) nearness of the nearest point, -inf = none
    depth_pixels, depth_owner = _splat(rows, cols, depth_radius, size)
    np.maximum.at(zbuffer, depth_pixels, cam[depth_owner, 2])
    cover_mask = np.zeros(size * size, bool)  # (H * W,)
    cover_mask[_splat(rows, cols, cover_radius, size)[0]] = True
    covered = np.flatnonzero(cover_mask)  # (M,) object pixels

    image = np.broadcast_to(np.array(_BACKGROUND, np.uint8), (size * size, 3)).copy()  # (H * W, 3)
    intensity = _depth_intensity(zbuffer[covered])  # (M,)
    image[covered] = np.round(intensity[:, None] * np.array(_OBJECT_RGB)).astype(np.uint8)
    return image.reshape(size, size, 3)


# -------------------------------------------------------------------------------------------
# examples


def make_example(
    class_index: int, seed: int, index: int, num_points: int = 8192, image_size: int = 128
) -> dict[str, Any]:
    """One example, deterministic in (class_index, seed, index).

    Returns {"points": f32[num_points, 3], "image": uint8[image_size, image_size, 3], "label": int,
    "text": str, "id": "<class>_<seed>_<index:05d>"}.
    """
    _check_class_index(class_index)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, class_index, index])
    points = sample_object(class_index, rng, num_points)
    name = CLASSES[class_index]
    return {
        "points": points,
        "image": render(points, image_size),
        "label": int(class_index),
        "text": CLASS_TEXTS[name],
        "id": f"{name}_{seed}_{index:05d}",
    }


def split_indices(split: str, per_class: int | None = None) -> range:
    """The example indices of a split: train 0..per_class-1, test TEST_INDEX_START +
    (0..per_class-1)."""
    defaults = dict(DEFAULT_PER_CLASS)
    if split not in defaults:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(defaults)}")
    count = defaults[split] if per_class is None else per_class
    if not 1 <= count <= TEST_INDEX_START:
        raise ValueError(f"per_class must be in [1, {TEST_INDEX_START}], got {count}")
    start = TEST_INDEX_START if split == "test" else 0
    return range(start, start + count)


def generate(
    split: str,
    seed: int = 0,
    per_class: int | None = None,
    *,
    num_points: int = 8192,
    image_size: int = 128,
) -> Iterator[dict[str, Any]]:
    """Yields the `per_class` (default 40 train / 10 test) examples of every class of `split`.

    Classes are interleaved (index-major) so an unshuffled stream still mixes labels. Train and test
    use disjoint index ranges, so they never share an example or an id. Arguments are validated at
    call time.
    """
    indices = split_indices(split, per_class)  # raises ValueError before any iteration

    def examples() -> Iterator[dict[str, Any]]:
        for index in indices:
            for class_index in range(len(CLASSES)):
                yield make_example(class_index, seed, index, num_points, image_size)

    return examples()


def procedural_clouds(rng: np.random.Generator, batch: int, num_points: int) -> np.ndarray:
    """Random ellipsoid surfaces with surface noise, f32[batch, num_points, 3], in the unit ball."""
    v = rng.normal(size=(batch, num_points, 3))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    v *= rng.uniform(0.3, 1.0, size=(batch, 1, 3))
    v += 0.01 * rng.normal(size=v.shape)
    return (v / np.abs(v).max(axis=(1, 2), keepdims=True)).astype(np.float32)
