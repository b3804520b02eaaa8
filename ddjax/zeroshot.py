"""Zero-shot classification with parallel noise inference (paper Eq. 1 and 4; spec sections 4.3-4.4, 6.2).

Per test cloud: the mean over N noise paths of the raw (image, text) feature predictions, the ensemble
ratio * text + image, and the cosine with each class's text feature (the plain sum of its prompt
embeddings); the prediction is the argmax.
"""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import errors
from ddjax import hosts
from ddjax import progress
from ddjax import run_folder
from ddjax.teachers import clip, prompts

SCAN_SPELLINGS = ("toile", "toilet")


def check_evaluation(config) -> dict:
    """Checks the run, test-data and scoring fields every evaluation job shares (configs/zeroshot.py's
    `evaluation_fields`) without loading anything heavy; returns the run's recorded config (config.json)."""
    from ddjax.data import prepare

    run_config = read_run_config(errors.check_run_dir(config, "checkpoint"))
    errors.check_choice(config, "dataset", sorted(prepare.DATASETS))
    errors.check_int(config, "npoints", 1)
    errors.check_int(config, "point_all", config.npoints)
    errors.check_int(config, "num_groups", 0)
    errors.check_int(config, "group_size", 0 if not config.num_groups else 1)
    errors.check_number(config, "ratio", 0.0)
    errors.check_choice(config, "template", prompts.TEMPLATES)
    errors.check_choice(config, "scan_spelling", SCAN_SPELLINGS)
    errors.check_choice(config, "normalize", (True, False))
    model = run_config["model"]
    check_text_source(config, run_config)
    own = not config.num_groups or model.get("own_tokenization", False)
    groups = model["num_groups"] if own else config.num_groups
    size = model["group_size"] if own else config.group_size
    if config.npoints < max(groups, size):
        raise errors.ConfigError("npoints, config.num_groups, config.group_size",
                                 f"{config.npoints} points are fewer than the tokenizer needs ({groups} groups of "
                                 f"{size})", "raise npoints or lower num_groups and group_size")
    return run_config


def is_baseline(run_config: dict) -> bool:
    """A converted peer model (deterministic: the jobs run it at N = 1, t = 0)."""
    from ddjax import baselines
    return baselines.is_baseline(run_config["model"])


def noise_setting(config, run_config: dict) -> tuple[int, int]:
    """(N, t) the job runs: the config's, or (1, 0) for a deterministic baseline."""
    return (1, 0) if is_baseline(run_config) else (config.num_paths, config.t)


def make_inference(model_config):
    """The model's inference functions (infer, infer_path): Dual Denoising or a converted baseline."""
    from ddjax import baselines
    from ddjax.models import dual_denoising as dd
    return (baselines if baselines.is_baseline(model_config) else dd).make_inference(model_config)


def read_text_features(path, dim: int | None = None) -> tuple[np.ndarray, list[str]]:
    """--config.text_features=FILE.npy: f32[C, D] class text features, and the C class names from FILE.txt
    beside it (one per line). ConfigError unless both read, the counts agree and D equals `dim`."""
    import pathlib
    path = pathlib.Path(str(path)).expanduser()
    names_file = path.with_suffix(".txt")
    if path.suffix != ".npy" or not path.is_file():
        raise errors.ConfigError("text_features", f"{path} is not an existing .npy file",
                                 "pass FILE.npy (f32[C, D]) with the class names in FILE.txt beside it")
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise errors.ConfigError("text_features", f"{path} is not a readable .npy array ({errors.one_line(e)})") from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating) or not np.isfinite(features).all():
        raise errors.ConfigError("text_features", f"{path} holds a {features.dtype}{list(features.shape)} array",
                                 "it must be finite floats of shape [classes, width]")
    try:
        names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise errors.ConfigError("text_features", f"the class names file {names_file} is unreadable "
                                 f"({errors.one_line(e)})", "write one class name per line beside the .npy") from None
    if len(names) != features.shape[0]:
        raise errors.ConfigError("text_features", f"{names_file} names {len(names)} classes but {path.name} holds "
                                 f"{features.shape[0]} rows", "one name per row, in the same order")
    if dim is not None and features.shape[1] != dim:
        raise errors.ConfigError("text_features", f"{path.name} has width {features.shape[1]} but the model's "
                                 f"point features have width {dim}", "use the text encoder the model was trained with")
    return features.astype(np.float32), names


def check_text_source(config, run_config: dict) -> list[str] | None:
    """The class names of --config.text_features (the file checked against the model's width), or None when
    the run's teacher gives the text features; ConfigError when neither can."""
    model = run_config["model"]
    if config.get("text_features"):
        return read_text_features(config.text_features, model.get("teacher_dim"))[1]
    if not run_config.get("resolved", {}).get("teacher", "x"):
        raise errors.ConfigError("text_features", f"the run {config.checkpoint} has no text tower ddjax can load "
                                 f"(a converted {model.get('kind')} model)", "pass --config.text_features=FILE.npy "
                                 "with the class text features made by the peer's own text encoder (README: Baselines)")
    return None


def check_noise_setting(config, run_config: dict, n_key: str = "num_paths", t_key: str = "t") -> None:
    if is_baseline(run_config):
        return  # deterministic: run at N = 1, t = 0 whatever the config says
    errors.check_int(config, n_key, 1)
    errors.check_int(config, t_key, 0, run_config["model"]["num_timesteps"] - 1)


def check_config(config, workdir: str | None) -> dict:
    """The zeroshot job's checks, before any data, checkpoint or compilation."""
    errors.require_workdir(workdir, "zeroshot", "zeroshot.json and confusion.png")
    run_config = check_evaluation(config)
    check_noise_setting(config, run_config)
    errors.check_int(config, "batch_size", 1)
    errors.check_int(config, "seed")
    errors.check_choice(config, "sweep", (True, False))
    if config.sweep and is_baseline(run_config):
        raise errors.ConfigError("sweep", f"{config.checkpoint} is a deterministic {run_config['model']['kind']} "
                                 "model: it has no N x t settings to sweep", "drop --config.sweep")
    parse_ratios(config.ratios)
    return run_config


def parse_ratios(text: str) -> list[float]:
    """config.ratios '0,0.1,0.25' -> [0.0, 0.1, 0.25]; ConfigError unless finite numbers >= 0."""
    import math
    try:
        ratios = [float(r) for r in str(text).split(",") if r.strip()]
    except ValueError:
        raise errors.ConfigError("ratios", f"{text!r} is not a comma-separated list of numbers",
                                 "e.g. --config.ratios=0,0.1,0.25") from None
    if any(not math.isfinite(r) or r < 0 for r in ratios):
        raise errors.ConfigError("ratios", f"{text!r}: every text weight must be a finite number >= 0")
    return ratios


def read_run_config(run_dir: str) -> dict:
    """RUN_DIR/config.json as a dict; CheckpointError if it is unreadable or lacks the model."""
    import json
    import pathlib
    path = pathlib.Path(run_dir).expanduser() / "config.json"
    try:
        run_config = json.loads(path.read_text())
        run_config["model"]["num_timesteps"], run_config["model"]["num_groups"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise errors.CheckpointError(path, f"not a readable run record ({errors.one_line(e)})") from None
    return run_config


def class_text_features(teacher: clip.Teacher, classnames, template: str = "recon") -> np.ndarray:
    """f32[C, D]: per class, the sum of the raw text features of its prompts (60 for ReCon's set)."""
    return np.asarray(clip.class_text_features(teacher, list(classnames), template=template))


def ensemble(features: jax.Array, ratio: float, feature_types=("image", "text")) -> jax.Array:
    """features f32[B, k, D] (raw, path-averaged) -> ratio * text + image, f32[B, D] (spec 2.8); a model with
    one feature type (ULIP's point embedding) -> that feature."""
    if len(feature_types) == 1:
        return features[:, 0]
    image = features[:, feature_types.index("image")]
    text = features[:, feature_types.index("text")]
    return ratio * text + image


def cosine_logits(point_features: jax.Array, text_features: jax.Array, scale: float = 1.0) -> jax.Array:
    """scale * cosine similarity: (B, D) x (C, D) -> (B, C)."""
    p = point_features / jnp.linalg.norm(point_features, axis=-1, keepdims=True)
    t = text_features / jnp.linalg.norm(text_features, axis=-1, keepdims=True)
    return scale * jnp.einsum("bd,cd->bc", p, t)


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5, mean_class_acc (fractions) and per_class accuracy (None for classes absent from labels)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(axis=1)
    k = min(5, logits.shape[1])
    top5 = (np.argsort(-logits, axis=1, kind="stable")[:, :k] == labels[:, None]).any(axis=1)
    per_class = [float((pred[labels == c] == c).mean()) if (labels == c).any() else None
                 for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {"top1": float((pred == labels).mean()), "top5": float(top5.mean()),
            "mean_class_acc": float(np.mean(present)), "per_class": per_class, "num_samples": int(len(labels))}


def load_batches(test_source, *, npoints: int, point_all: int, batch_size: int, seed: int,
                 normalize: bool = True) -> list[dict | None]:
    """The test split as fixed-size batches (`pipelines.padded_batches`), those this process computes
    (`hosts.assignment`) loaded, the others None."""
    from ddjax.data import pipelines
    count = pipelines.num_batches(test_source, batch_size)
    mine = {i for i, _ in hosts.assignment(count)} or {0}  # none: batch 0 gives `hosts.run_items` the shapes
    return pipelines.padded_batches(test_source, npoints=npoints, point_all=point_all, batch_size=batch_size,
                                    seed=seed, normalize=normalize, wanted=mine)


def _on_device(variables, text_features):
    """compute(i, device) helpers: the variables and text features placed once per device."""
    placed = {}

    def get(device):
        if device not in placed:
            placed[device] = jax.device_put((variables, jnp.asarray(text_features)), device)
        return placed[device]
    return get


def _valid_rows(outs: list[dict], name: str) -> np.ndarray:
    return np.concatenate([o[name][o["valid"]] for o in outs])


def score_batches(infer, variables, batches: list[dict | None], text_features, *, ratios: Iterable[float], t: int,
                  num_paths: int, key: jax.Array, feature_types=("image", "text"), on_batch=None,
                  ) -> tuple[dict, np.ndarray]:
    """Runs `infer` (jitted, static t/num_paths) on every batch of `load_batches`, batch i with fold_in(key, i)
    on its own device (`hosts.run_items`: any number of processes and devices give the same numbers), and
    scores the same features with each text ratio: ({ratio: logits f32[M, C]}, labels int[M]), in every
    process. `on_batch()` follows each of this process's batches."""
    ratios = list(ratios)
    placed = _on_device(variables, text_features)

    def compute(i, device):
        v, text = placed(device)
        feats = infer(v, jax.device_put(batches[i]["points"], device), jax.random.fold_in(key, i), t=t,
                      num_paths=num_paths)
        return {**{f"logits{j}": cosine_logits(ensemble(feats, r, feature_types), text) for j, r in enumerate(ratios)},
                "label": batches[i]["label"], "valid": batches[i]["valid"]}

    outs = hosts.run_items(len(batches), compute, on_item=on_batch)
    return ({r: _valid_rows(outs, f"logits{j}") for j, r in enumerate(ratios)}, _valid_rows(outs, "label"))


def evaluate(infer, variables, batches: list[dict | None], text_features, *, ratio: float, t: int, num_paths: int,
             key: jax.Array, feature_types=("image", "text")) -> dict:
    """The accuracy report of `score_batches` at one ratio."""
    logits, labels = score_batches(infer, variables, batches, text_features, ratios=[ratio], t=t,
                                   num_paths=num_paths, key=key, feature_types=feature_types)
    report = accuracy_report(logits[ratio], labels, np.shape(text_features)[0])
    report.update({"N": num_paths, "t": t, "ratio": ratio})
    return report


def open_eval_dataset(dataset: str, data_dir: str):
    """The prepared evaluation dataset; the built-in synthetic set is prepared on first use."""
    from ddjax.data import prepare
    if dataset.startswith("synthetic"):  # process 0 prepares it, the others then open it
        return hosts.main_first("prepare", lambda: prepare.prepare(dataset, data_dir),
                                then=lambda: prepare.open_dataset(dataset, data_dir))
    return prepare.open_dataset(dataset, data_dir)


def restore_run(run_dir: str) -> tuple[dict, dict, int]:
    """(run config as a dict, variables {'params', 'batch_stats'}, step) of a pretraining (or converted) run's
    latest checkpoint, restored into the shapes of its own model config."""
    import pathlib

    import ml_collections
    import orbax.checkpoint as ocp

    from ddjax import baselines
    from ddjax.models import dual_denoising as dd

    root = pathlib.Path(run_dir).expanduser().resolve()
    if not (root / "config.json").is_file():
        raise errors.CheckpointError(root, "not a pretraining run folder (no config.json)")
    run_config = read_run_config(root)
    if "teacher" in run_config.get("resolved", {}):  # './teacher' lies inside the run folder, wherever it is now
        run_config["resolved"]["teacher"] = run_folder.resolve_path(root, run_config["resolved"]["teacher"])
    model_config = ml_collections.ConfigDict(run_config["model"])
    manager = ocp.CheckpointManager(root / "checkpoints")
    step = manager.latest_step()
    if step is None:
        raise errors.CheckpointError(root / "checkpoints", "no checkpoint (the run has not saved one yet)")
    state = run_folder.restore_state(manager, step, root / "checkpoints")
    manager.close()
    # This process's own copy, uncommitted: each evaluation batch runs on whichever device it is dealt to.
    variables = jax.tree_util.tree_map(jnp.asarray, hosts.local_copy(
        {"params": state["params"], "batch_stats": state["batch_stats"]}))
    if not baselines.is_baseline(model_config) and dd.is_unrolled(variables):
        variables = dd.stack_layers(variables)  # saved before the block stacks were scanned: the same model
    init = baselines.init_variables if baselines.is_baseline(model_config) else dd.init_variables
    shapes = jax.eval_shape(lambda k: init(model_config, k), jax.random.key(0))
    run_folder.check_tree(shapes, variables, root / "checkpoints" / str(step))
    return run_config, variables, int(step)


def classnames_for(dataset: str, builder, scan_spelling: str) -> list[str]:
    """Prompt class names: ScanObjectNN's fixed list (with the chosen spelling), else the dataset's texts."""
    if dataset.startswith("scanobjectnn"):
        return list(prompts.scanobjectnn_classes(scan_spelling))
    from ddjax.teachers import cache
    return cache.class_texts(builder)


SWEEP_N = (1, 2, 4, 8, 16)
SWEEP_T = tuple(range(0, 1000, 100))


def write_sweep(out, rows: list[dict], name: str = "") -> None:
    """sweep.csv (N,t,top1,top5,mean_class_acc), sweep.md laid out as the paper's Table 5 (rows N, columns
    t, top-1 in %), and sweep.png/.pdf (the same as an annotated heatmap, the best cell outlined)."""
    from ddjax import figures
    lines = ["N,t,top1,top5,mean_class_acc"] + [
        f"{r['N']},{r['t']},{r['top1']:.6f},{r['top5']:.6f},{r['mean_class_acc']:.6f}" for r in rows]
    run_folder.write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    ns, ts = sorted({r["N"] for r in rows}), sorted({r["t"] for r in rows})
    top1 = {(r["N"], r["t"]): r["top1"] for r in rows}
    md = ["| N \\ t | " + " | ".join(str(t) for t in ts) + " |", "|---" * (len(ts) + 1) + "|"]
    md += [f"| {n} | " + " | ".join(f"{100 * top1[n, t]:.1f}" for t in ts) + " |" for n in ns]
    run_folder.write_text(out / "sweep.md", "Zero-shot top-1 (%) by number of noise paths N and noise step t\n\n"
                                  + "\n".join(md) + "\n")
    figures.save(figures.sweep_figure(rows, title=f"{name or 'zero-shot'}: top-1 by N and t"), out / "sweep.png")


def run_sweep(config, out, infer, variables, batches, text, num_classes, feature_types, on_batch=None) -> list[dict]:
    """Table 5: every (N, t) of SWEEP_N x SWEEP_T in one pass over the test split (`load_batches`, dealt
    out as in `score_batches`). Per batch and t, the 16 paths are computed once (at t = 0 with one shared
    encoder pass) and N uses the first N of them."""
    paths = jax.jit(infer.paths, static_argnames=("t", "num_paths"))
    key = jax.random.key(config.seed)
    placed = _on_device(variables, text)

    def compute(i, device):
        v, text_on_device = placed(device)
        points, logits = jax.device_put(batches[i]["points"], device), {}
        for t in SWEEP_T:
            outs = paths(v, points, jax.random.fold_in(key, i), t=t, num_paths=max(SWEEP_N))  # (16, B, k, D)
            for n in SWEEP_N:
                feats = jnp.mean(outs[:n], axis=0)
                logits[f"N{n}_t{t}"] = cosine_logits(ensemble(feats, config.ratio, feature_types), text_on_device)
        return logits | {"label": batches[i]["label"], "valid": batches[i]["valid"]}

    outs = hosts.run_items(len(batches), compute, on_item=on_batch)
    labels = _valid_rows(outs, "label")
    rows = []
    for n in SWEEP_N:
        for t in SWEEP_T:
            report = accuracy_report(_valid_rows(outs, f"N{n}_t{t}"), labels, num_classes)
            rows.append({"N": n, "t": t, **{k: report[k] for k in ("top1", "top5", "mean_class_acc")}})
    write_sweep(out, rows, config.name)
    return rows


class Evaluation(NamedTuple):
    """What a zero-shot or attack job needs from a run and a dataset (`load_evaluation`)."""
    model_config: Any  # the run's model config, with the job's tokenization (num_groups, group_size)
    variables: dict
    step: int
    builder: Any  # the prepared tfds builder of the evaluation dataset
    class_names: list
    text_features: np.ndarray  # f32[C, D], raw sums of the prompt embeddings
    teacher: str  # the teacher's source (hub name or directory), or the text-features file


def load_evaluation(config, out) -> Evaluation:
    """Restores config.checkpoint, opens config.dataset and computes (or reads from `out`, where it is
    cached once per teacher, template and class list) the class text features."""
    import hashlib
    import json
    import pathlib

    import ml_collections

    run_config, variables, step = restore_run(config.checkpoint)
    model_config = ml_collections.ConfigDict(run_config["model"])
    if config.num_groups and not model_config.get("own_tokenization", False):
        model_config.num_groups, model_config.group_size = config.num_groups, config.group_size
    builder = open_eval_dataset(config.dataset, config.data_dir)
    names = classnames_for(config.dataset, builder, config.scan_spelling)
    if config.get("text_features"):
        text_features, given = read_text_features(config.text_features, model_config.teacher_dim)
        if len(given) != len(names):
            raise errors.ConfigError("text_features", f"{len(given)} classes in the file, {len(names)} in "
                                     f"{config.dataset}", "make the features for this dataset's classes")
        return Evaluation(model_config, variables, step, builder, names, text_features,
                          f"text features {pathlib.Path(config.text_features).expanduser().resolve()}")
    teacher = clip.load(run_config["resolved"]["teacher"])
    if teacher.dim != model_config.teacher_dim:
        raise errors.CheckpointError(config.checkpoint, f"its teacher {teacher.source} embeds text in "
                                     f"{teacher.dim} dimensions, the model's features have {model_config.teacher_dim}",
                                     "convert it with the right --config.teacher, or pass --config.text_features")
    digest = hashlib.sha1(json.dumps([teacher.source, config.template, names]).encode()).hexdigest()[:12]
    cache_file = out / f"text_features_{digest}.npy"  # computed once per (teacher, prompts, classes)
    text_features = None
    if cache_file.is_file():
        try:
            text_features = np.load(cache_file, allow_pickle=False)
        except (ValueError, OSError, EOFError):  # damaged (an older, non-atomic write): computed again
            text_features = None
    if text_features is None or text_features.shape != (len(names), teacher.dim):
        text_features = class_text_features(teacher, names, config.template)
        run_folder.save_npy(cache_file, text_features)
    return Evaluation(model_config, variables, step, builder, names, text_features, teacher.source)


def run(config, workdir: str | None) -> dict:
    """The zeroshot job (configs/zeroshot.py)."""
    import pathlib

    from ddjax import metrics

    check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = load_evaluation(config, out)
    num_paths, t = noise_setting(config, {"model": ev.model_config.to_dict()})
    model_config, variables, step, builder, names = ev.model_config, ev.variables, ev.step, ev.builder, ev.class_names
    text_features = ev.text_features
    batches = load_batches(builder.as_data_source("test"), npoints=config.npoints, point_all=config.point_all,
                           batch_size=config.batch_size, seed=config.seed, normalize=config.normalize)
    bar = progress.bar(total=sum(b is not None for b in batches), unit="batch",
                       desc=f"zero-shot {config.name}" + (" sweep (N x t)" if config.sweep else ""), first_step=True)
    infer_fn, _ = make_inference(model_config)
    infer = jax.jit(infer_fn, static_argnames=("t", "num_paths"))
    text = jnp.asarray(text_features)
    types = tuple(model_config.feature_types)
    if config.sweep:
        rows = run_sweep(config, out, infer_fn, variables, batches, text, len(names), types, on_batch=bar.update)
        bar.close()
        best = max(rows, key=lambda r: r["top1"])
        print(f"zero-shot sweep {config.name}: {len(rows)} settings written to {out / 'sweep.csv'}; best top-1 "
              f"{best['top1']:.4f} at N={best['N']}, t={best['t']}")
        return {"sweep": rows}
    ratios = parse_ratios(config.ratios)
    by_ratio, labels = score_batches(infer, variables, batches, text, ratios=[config.ratio, *ratios], t=t,
                                     num_paths=num_paths, key=jax.random.key(config.seed),
                                     feature_types=types, on_batch=bar.update)  # one pass, every ratio scored
    bar.close()
    logits = by_ratio[config.ratio]
    if ratios:
        lines = ["ratio,top1,top5,mean_class_acc"]
        for r in ratios:
            rep = accuracy_report(by_ratio[r], labels, len(names))
            lines.append(f"{r},{rep['top1']:.6f},{rep['top5']:.6f},{rep['mean_class_acc']:.6f}")
        run_folder.write_text(out / "ratios.csv", "\n".join(lines) + "\n")
    result = accuracy_report(logits, labels, len(names))
    result.update({"N": num_paths, "t": t, "ratio": config.ratio, "dataset": config.name,
                   "model": model_config.get("kind", "dual_denoising"),
                   "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
                   "checkpoint_step": step, "teacher": ev.teacher, "class_names": names,
                   "num_groups": model_config.num_groups, "group_size": model_config.group_size})
    metrics.write_json(out / "zeroshot.json", result)
    from ddjax import figures
    figures.save(figures.confusion_figure(labels, logits.argmax(axis=1), names,
                                          title=f"{config.name}: zero-shot, N={num_paths}, t={t}"),
                 out / "confusion.png")
    print(f"zero-shot {config.name}: top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
          f"mean class {result['mean_class_acc']:.4f}  (N={num_paths}, t={t}, ratio={config.ratio}, "
          f"{result['num_samples']} test shapes, checkpoint step {step})")
    return result
