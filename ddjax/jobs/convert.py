"""The convert job (configs/convert.py): a peer's released checkpoint as a ddjax run folder.

  python main.py --config=configs/convert.py --config.source=FILE \
      --config.model=recon|ulip_pointbert|ulip2_pointbert|uni3d_<size> \
      [--config.text_features=FILE.npy,...] --workdir=RUN_DIR

The file is read by ddjax/peer_checkpoints.py (PyTorch files without torch and without executing
anything). RUN_DIR then holds config.json (the model, its teacher or none, and the source's SHA-256)
and an orbax checkpoint (step 0) that the zero-shot, attack and classify jobs read with
`--config.checkpoint=RUN_DIR`; class text features made by the peer's own text encoder
(`--config.text_features`, checked against the model's width) are copied into
RUN_DIR/text_features/, where the jobs find the file naming their dataset's classes. The same
conversion again is a no-op; anything else into an existing folder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp

from ddjax import config_checks, errors, evaluation, peer_checkpoints, run_folder
from ddjax.models import peers

KEYS = {
    "": {
        "job",
        "source",
        "model",
        "teacher",
        "num_heads",
        "num_groups",
        "group_size",
        "npoints",
        "text_features",
    }
}


def check_config(config, workdir: str | None) -> None:
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "convert", "config.json and the converted checkpoint")
    config_checks.check_choice(config, "model", peers.CONVERTIBLE)
    if not config.source:
        raise errors.ConfigError("source", "no checkpoint file given", "pass --config.source=FILE")
    if not os.path.isfile(os.path.expanduser(config.source)):
        raise errors.ConfigError("source", f"{config.source} does not exist or is not a file")
    config_checks.check_int(config, "num_heads", 1)
    config_checks.check_int(config, "num_groups", 0)
    config_checks.check_int(config, "group_size", 0)
    config_checks.check_int(config, "npoints", 0)
    files = config_checks.parse_list(config, "text_features", str) if config.text_features else []
    for path in files:
        evaluation.read_text_features(path)  # the width is checked once the model is known
    names = [pathlib.Path(f).name for f in files]
    if len(set(names)) < len(names):
        raise errors.ConfigError("text_features", f"two files share a name: {names}")


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def already_converted(out: pathlib.Path, record: dict) -> bool:
    """True when `out` holds this very conversion; RunFolderError when it holds anything else (or
    is a non-empty folder), so that nothing is overwritten."""
    recorded = out / "config.json"
    if recorded.is_file():
        try:
            old = json.loads(recorded.read_text())
        except (OSError, ValueError) as e:
            raise run_folder.RunFolderError(
                recorded, f"unreadable record ({errors.one_line(e)})"
            ) from None
        was = old.get("converted_from", {})
        if (
            was.get("sha256") != record["converted_from"]["sha256"]
            or was.get("text_features", {}) != record["converted_from"]["text_features"]
            or old.get("model") != record["model"]
            or old.get("resolved") != record["resolved"]
        ):
            raise run_folder.RunFolderError(
                out,
                "it already holds another run (a different model, source, teacher or text "
                "features); nothing was written",
            )
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise run_folder.RunFolderError(
            out, "not an empty folder and not a converted run; nothing was written"
        )
    return False


def write_run(tmp: pathlib.Path, variables: dict, features: list, record: dict) -> None:
    """The run folder's contents in `tmp`: the orbax checkpoint (step 0), the text-features files
    (FILE.npy and the class names in FILE.txt beside it) and config.json, written last."""
    manager = ocp.CheckpointManager(tmp / "checkpoints")
    manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(variables)))
    manager.wait_until_finished()
    manager.close()
    for path in features:
        (tmp / evaluation.RUN_TEXT_FEATURES).mkdir(exist_ok=True)
        for file in (path, path.with_suffix(".txt")):
            shutil.copyfile(file, tmp / evaluation.RUN_TEXT_FEATURES / file.name)
    run_folder.write_text(tmp / "config.json", json.dumps(record, indent=2) + "\n")


def run(config, workdir: str | None) -> dict:
    """The convert job: RUN_DIR/config.json and RUN_DIR/checkpoints/0."""
    check_config(config, workdir)
    source = pathlib.Path(config.source).expanduser().resolve()
    out = pathlib.Path(workdir).expanduser().resolve()
    kind, _ = peers.kind_of(config.model)
    teacher = config.teacher if config.teacher != "default" else peers.TEACHERS.get(kind, "")
    model_config, variables, dropped = peer_checkpoints.convert(
        source,
        config.model,
        num_heads=config.num_heads,
        num_groups=config.num_groups,
        group_size=config.group_size,
        npoints=config.npoints,
    )
    features = (
        config_checks.parse_list(config, "text_features", str) if config.text_features else []
    )
    features = [pathlib.Path(f).expanduser().resolve() for f in features]
    for path in features:
        evaluation.read_text_features(path, model_config.teacher_dim)
    record = {
        "job": "convert",
        "model": model_config.to_dict(),
        "resolved": {"teacher": teacher},
        "converted_from": {
            "file": str(source),
            "sha256": _sha256(source),
            "model": config.model,
            "source_code": peers.SOURCES[kind],
            "not_ported": len(dropped),
            "text_features": {p.name: _sha256(p) for p in features},
        },
    }
    if already_converted(out, record):
        print(f"convert: {out} already holds this conversion; nothing to do")
        return record
    tmp = out.parent / f".{out.name}.converting"  # built aside, renamed into place when complete
    if tmp.exists():
        shutil.rmtree(tmp)  # a killed conversion's leftover
    tmp.mkdir(parents=True)
    write_run(tmp, variables, features, record)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    count = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(variables["params"]))
    not_ported = f"; {len(dropped)} tensors of parts not ported dropped" if dropped else ""
    print(
        f"convert: {config.model} ({model_config.depth} blocks, width {model_config.width}, "
        f"{count / 1e6:.2f}M "
        f"parameters) from {source.name} -> {out}{not_ported}; text: "
        + (
            teacher
            or (
                f"{len(features)} text-features file(s)"
                if features
                else "none (pass --config.text_features to the jobs)"
            )
        )
    )
    return record
