"""The visualize job (configs/visualize.py): the paper's point-cloud figures for any cloud.

  fig3          Fig. 3: the raw cloud; masked (FPS centers x kNN neighbours, `mask_ratio` of the
                groups removed, as masked modelling would); noised at step t with scale s (Dual
                Denoising's input).
  noise_scales  section 4.4: the cloud noised at the last step (t = T - 1) for each noise scale s.
  timesteps     section 4.4: the cloud noised at each step t for the default s.

The cloud is a file (any format `classify` reads; meshes are surface-sampled) or, without one, a
shape of the built-in synthetic set; it is normalised to the unit ball and reduced by FPS to
`num_points` points. Noise is sigma_t = s * t / (T - 1) times a standard normal draw per coordinate
(ddjax.pointcloud).
"""

from __future__ import annotations

import pathlib

import numpy as np

from ddjax import config_checks, errors, figures, pointcloud
from ddjax.data import pipelines, readers, synthetic
from kernels import fps

KEYS = {
    "": {
        "job",
        "input",
        "shape",
        "num_points",
        "mesh_points",
        "num_groups",
        "group_size",
        "mask_ratio",
        "t",
        "noise_scale",
        "num_timesteps",
        "noise_scales",
        "timesteps",
        "seed",
    }
}


def parse_floats(config, key: str) -> list[float]:
    """config.<key> '0.02,0.04' -> [0.02, 0.04]: one or more finite numbers >= 0."""
    values = config_checks.parse_list(
        config, key, float, what="numbers", allow_empty=True, finite=False
    )
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise errors.ConfigError(key, f"{config[key]!r}: need one or more finite numbers >= 0")
    return values


def check_config(config, workdir: str | None) -> dict:
    """Every value checked before any work; returns the parsed lists."""
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(
        workdir, "visualize", "fig3, noise_scales and timesteps (PNG and PDF)"
    )
    config_checks.refuse_run_folder(workdir, "visualize")
    if config.input:
        path = pathlib.Path(config.input).expanduser()
        if not path.is_file():
            raise errors.ConfigError(
                "input", f"{config.input} does not exist or is not a file", "check the path"
            )
        if path.suffix.lower() not in readers.POINT_FILE_SUFFIXES:
            raise errors.ConfigError(
                "input",
                f"unsupported file type {path.suffix!r}",
                f"use one of {readers.POINT_FILE_SUFFIXES}",
            )
    else:
        config_checks.check_choice(config, "shape", synthetic.CLASSES)
    config_checks.check_int(config, "num_timesteps", 2)
    config_checks.check_int(config, "num_points", 2)
    config_checks.check_int(config, "num_groups", 1, config.num_points)
    config_checks.check_int(config, "group_size", 1, config.num_points)
    config_checks.check_number(config, "mask_ratio", 0.0, 0.99)
    config_checks.check_number(config, "noise_scale", 0.0)
    config_checks.check_int(config, "t", 0, config.num_timesteps - 1)
    config_checks.check_int(config, "mesh_points", config.num_points)
    config_checks.check_seed(config)
    timesteps = [int(t) for t in parse_floats(config, "timesteps")]
    if any(t >= config.num_timesteps for t in timesteps):
        raise errors.ConfigError(
            "timesteps", f"every t must be < num_timesteps={config.num_timesteps}"
        )
    return {"noise_scales": parse_floats(config, "noise_scales"), "timesteps": timesteps}


def load_points(config, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """f32[num_points, 3] in the unit ball, FPS-reduced from the file or the synthetic shape; and
    its name."""
    if config.input:
        points = readers.read_cloud(config.input, config.mesh_points, rng)
        name = pathlib.Path(config.input).name
    else:
        points = synthetic.sample_object(
            synthetic.CLASSES.index(config.shape), rng, config.mesh_points
        )
        name = f"synthetic {config.shape}"
    if len(points) < config.num_points:
        raise readers.PointFileError(
            config.input or name,
            f"{len(points)} points, fewer than num_points={config.num_points}",
            "lower --config.num_points",
        )
    points = pipelines.normalize_unit_ball(np.asarray(points, np.float64)).astype(np.float32)
    idx = np.asarray(fps(points[None], config.num_points))[0]  # (num_points,), FPS from index 0
    return points[idx], name


def noised(
    points: np.ndarray, t: int, s: float, num_timesteps: int, rng: np.random.Generator
) -> np.ndarray:
    sigma = float(pointcloud.noise_sigma(t, noise_scale=s, num_timesteps=num_timesteps))
    return points + sigma * rng.standard_normal(points.shape).astype(np.float32)


def masked(
    points: np.ndarray,
    num_groups: int,
    group_size: int,
    mask_ratio: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The points of the groups left visible: G FPS centers x K neighbours, G - int(mask_ratio * G)
    kept."""
    groups = pointcloud.group(points[None], num_groups, group_size)
    # (G, K, 3)
    neighborhoods = np.asarray(groups.neighborhoods)[0] + np.asarray(groups.centers)[0][:, None]
    keep = rng.permutation(num_groups)[: num_groups - int(mask_ratio * num_groups)]
    return neighborhoods[keep].reshape(-1, 3)  # (visible * K, 3)


def run(config, workdir: str | None) -> dict:
    lists = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    rng = np.random.default_rng(config.seed)
    points, name = load_points(config, rng)
    out.mkdir(parents=True, exist_ok=True)
    s, big_t = config.noise_scale, config.num_timesteps
    written = []
    panels = [
        ("raw", points),
        (
            f"masked ({int(100 * config.mask_ratio)}% of {config.num_groups} groups)",
            masked(points, config.num_groups, config.group_size, config.mask_ratio, rng),
        ),
        (f"noised (t = {config.t}, s = {s:g})", noised(points, config.t, s, big_t, rng)),
    ]
    written += figures.save(
        figures.clouds_figure(panels, title=f"{name}: raw, masked and noised"), out / "fig3"
    )
    panels = [
        (f"s = {v:g}", noised(points, big_t - 1, v, big_t, rng)) for v in lists["noise_scales"]
    ]
    written += figures.save(
        figures.clouds_figure(
            panels, title=f"{name}: noise scale s at t = {big_t - 1}", cols=min(6, len(panels))
        ),
        out / "noise_scales",
    )
    panels = [(f"t = {t}", noised(points, t, s, big_t, rng)) for t in lists["timesteps"]]
    written += figures.save(
        figures.clouds_figure(
            panels, title=f"{name}: time step t at s = {s:g}", cols=min(5, len(panels))
        ),
        out / "timesteps",
    )
    print(f"visualize {name}: wrote " + ", ".join(p.name for p in written) + f" in {out}")
    return {"files": [str(p) for p in written]}
