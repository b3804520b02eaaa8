"""A run's zero-shot classifier as one folder that a plain `jax` install loads and calls, without
ddjax (`configs/export.py` writes it; `classify --config.checkpoint=FOLDER` reads it too):

  classifier.jax_exported   the program, serialised by `jax.export` for the requested platforms
                            (one StableHLO module; each platform runs its own kernels)
  weights.npz               the model's variables as arrays "00000", "00001", ... in pytree order
  text_features.npy         f32[C, D] the classes' text features (the job's, ReCon's prompts)
  classes.txt               the C class names, one a line, in column order
  export.json               what it is: FORMAT, the input shape, the settings, the run and step

The program takes (weights: list of arrays, text_features f32[C, D], clouds f32[B, P, 3]) for any
B and returns the cosine scores f32[B, C]. P is fixed at export time (`input_points`). Each cloud
goes through what `classify` does to a point file of P points: normalised to the unit ball, reduced
by farthest point sampling from its first point to `point_all` points, of which the same seeded
choice of `npoints` is kept, then N noisy paths at t with the noise key of `seed` and the
ratio-weighted image and text outputs scored against the text features. Clouds are computed one
after another (`lax.map`), so a cloud scores the same alone or in a batch, and as `classify` scores
it.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from ddjax import errors, portability, run_folder, scoring
from ddjax.models import registry
from kernels import backend, fps

FORMAT = "ddjax-exported-classifier/1"
FILES = ("classifier.jax_exported", "weights.npz", "text_features.npy", "classes.txt")
RECORD = "export.json"


class ExportError(errors.UserError):
    what = "cannot use the exported classifier"
    todo = "export it again with configs/export.py"


def is_export(folder) -> bool:
    return (pathlib.Path(str(folder)).expanduser() / RECORD).is_file()


def subsample_choice(npoints: int, point_all: int, seed: int) -> np.ndarray:
    """int[npoints]: the positions among the `point_all` FPS points that classify keeps for a point
    file with at least `point_all` points (its generator's first draw)."""
    return np.random.default_rng(seed).choice(point_all, npoints, replace=False)


def classifier_fn(
    model_config,
    treedef,
    *,
    npoints: int,
    point_all: int,
    num_paths: int,
    t: int,
    ratio: float,
    seed: int,
):
    """fn(weights: the leaves of `treedef`, text f32[C, D], clouds f32[B, P, 3]) -> f32[B, C]."""
    inference = registry.inference(model_config)
    choice = jnp.asarray(subsample_choice(npoints, point_all, seed))  # (npoints,)

    def one(variables, text, cloud):  # (P, 3) -> (C,)
        centred = cloud - jnp.mean(cloud, axis=0, keepdims=True)
        radius = jnp.max(jnp.sqrt(jnp.sum(centred * centred, axis=1)))
        cloud = centred / jnp.maximum(radius, 1e-12)
        idx = fps(cloud[None], point_all)[0]  # (point_all,), FPS from index 0
        cloud = cloud[idx][choice][None]  # (1, npoints, 3)
        feats = inference.infer(variables, cloud, jax.random.key(seed), t=t, num_paths=num_paths)
        logits, _ = scoring.point_logits(feats, ratio, text, inference.feature_types)
        return logits[0]

    def fn(weights, text, clouds):
        variables = jax.tree_util.tree_unflatten(treedef, weights)
        # one cloud after another: B is symbolic, and a Pallas kernel's grid must be static
        return jax.lax.map(lambda cloud: one(variables, text, cloud), clouds)  # (B, C)

    return fn


def export_classifier(
    variables, text_features: np.ndarray, *, model_config, input_points: int, platforms, **settings
) -> export.Exported:
    """The classifier lowered for `platforms` (a symbolic batch size, clouds of `input_points`)."""
    leaves, treedef = jax.tree_util.tree_flatten(variables)
    fn = classifier_fn(model_config, treedef, **settings)
    (batch,) = export.symbolic_shape("b")
    args = (
        [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in leaves],
        jax.ShapeDtypeStruct(text_features.shape, np.float32),
        jax.ShapeDtypeStruct((batch, input_points, 3), np.float32),
    )
    return portability.lower(fn, args, platforms=tuple(platforms), name="classifier")


def write(folder: pathlib.Path, exported, variables, text_features, classes, record: dict) -> None:
    """The files, each written atomically, export.json last: a folder without it (a killed export)
    is not an exported classifier."""
    leaves = jax.tree_util.tree_leaves(variables)
    (folder / RECORD).unlink(missing_ok=True)
    run_folder.write_bytes(folder / FILES[0], exported.serialize())
    run_folder.atomic_write(
        folder / FILES[1],
        lambda f: np.savez(f, **{f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}),
    )
    run_folder.save_npy(folder / FILES[2], np.asarray(text_features, np.float32))
    run_folder.write_text(folder / FILES[3], "".join(f"{c}\n" for c in classes))
    run_folder.write_text(folder / RECORD, json.dumps({"format": FORMAT, **record}, indent=1))


class Loaded:
    """An exported classifier read back: `scores(clouds f32[B, P, 3]) -> f32[B, C]`."""

    def __init__(self, folder):
        folder = pathlib.Path(str(folder)).expanduser()
        try:
            self.record = json.loads((folder / RECORD).read_text())
            if self.record.get("format") != FORMAT:
                raise ExportError(folder / RECORD, f"not a {FORMAT} record")
            self.exported = export.deserialize(bytearray((folder / FILES[0]).read_bytes()))
            with np.load(folder / FILES[1], allow_pickle=False) as weights:
                self.weights = [weights[f"{i:05d}"] for i in range(len(weights.files))]
            self.text_features = np.load(folder / FILES[2], allow_pickle=False)
            self.classes = (folder / FILES[3]).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError, KeyError) as e:
            raise ExportError(folder, f"unreadable ({errors.one_line(e)})") from None
        self.input_points = int(self.record["input_points"])
        platform = backend.lowering_platform()
        if platform not in self.exported.platforms:
            raise ExportError(
                folder,
                f"exported for {', '.join(self.exported.platforms)}, not for this {platform}",
                f"export it with --config.platforms={platform}",
            )

    def scores(self, clouds: np.ndarray) -> np.ndarray:
        return np.asarray(self.exported.call(self.weights, self.text_features, clouds))
