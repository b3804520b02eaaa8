"""The certify job (configs/certify.py:DATASET): certified robustness of a run's zero-shot
classifier by randomized smoothing (ddjax/smoothing.py): certify.tsv (Cohen et al.'s columns),
certify.json (certified accuracy against radius per noise level) and certify.png/.pdf. Finished (t,
shape) units are recorded in DIR/certify_progress.jsonl: a killed job run again continues where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import (
    config_checks,
    errors,
    evaluation,
    figures,
    memory,
    metrics,
    progress,
    run_folder,
    smoothing,
    tensorboard_events,
)
from ddjax.data import pipelines

KEYS = {
    "": evaluation.EVALUATION_KEYS
    | {
        "job",
        "t_values",
        "num_paths",
        "n0",
        "n",
        "alpha",
        "draws_per_step",
        "batch_shapes",
        "max_shapes",
        "skip",
        "seed",
    }
}


def parse_ts(config, run_config: dict) -> list[int]:
    """config.t_values '300,600,900' -> [300, 600, 900], every t in [1, T)."""
    ts = config_checks.parse_list(
        config, "t_values", int, what="integers", example="300,600,900", allow_empty=True
    )
    steps = run_config["model"]["num_timesteps"]
    if not ts or any(not 1 <= t < steps for t in ts):
        raise errors.ConfigError(
            "t_values",
            f"{ts}: every t must be in [1, {steps}) (t = 0 is sigma = 0: nothing to certify)",
        )
    return ts


def check_config(config, workdir: str | None) -> tuple[dict, list[int]]:
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "certify", "certify.tsv, certify.json and certify.png")
    config_checks.refuse_run_folder(workdir, "certify")
    run_config = evaluation.check_evaluation(config)
    if evaluation.inference(run_config).on_noisy is None:
        raise errors.ConfigError(
            "checkpoint",
            f"{config.checkpoint} is a converted {run_config['model']['kind']} "
            "model: certification needs Dual Denoising's noise schedule (sigma_t)",
            "pass a Dual Denoising run",
        )
    ts = parse_ts(config, run_config)
    config_checks.check_int(config, "num_paths", 1)
    config_checks.check_int(config, "n0", 1)
    config_checks.check_int(config, "n", 1)
    config_checks.check_number(config, "alpha", 0.0, 0.5, low_open=True)
    config_checks.check_int(config, "draws_per_step", 1)
    config_checks.check_int(config, "batch_shapes", 1)
    config_checks.check_int(config, "max_shapes", 0)
    config_checks.check_int(config, "skip", 1)
    config_checks.check_seed(config)
    # one step: batch_shapes x draws_per_step draws of num_paths noisy clouds each, together
    draws = config.batch_shapes * config.draws_per_step
    memory.check_fits(
        "num_paths",
        f"N={config.num_paths} noise paths for {config.draws_per_step} draws of "
        f"{config.batch_shapes} shapes per step",
        memory.inference_bytes(
            run_config["model"], draws, config.num_paths, draws * config.num_paths
        ),
        "lower config.num_paths, config.draws_per_step or config.batch_shapes",
    )
    return run_config, ts


def evaluation_shapes(builder, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index in the test split int[M], points f32[M, N, 3], labels int[M]): every `skip`-th test
    shape, at most `max_shapes`, prepared as the zero-shot job prepares them."""
    points, labels = [], []
    for batch in pipelines.zeroshot_batches(
        builder.as_data_source("test"),
        npoints=config.npoints,
        point_all=config.point_all,
        batch_size=64,
        seed=config.seed,
        normalize=config.normalize,
    ):
        points.append(np.asarray(batch["points"]))
        labels.append(np.asarray(batch["label"]))
    points, labels = np.concatenate(points), np.concatenate(labels)
    index = np.arange(0, len(labels), config.skip)
    if config.max_shapes:
        index = index[: config.max_shapes]
    return index, points[index], labels[index]


def run(config, workdir: str | None) -> dict:
    """The certify job: certify.tsv, certify.json and certify.png (certified accuracy against
    radius)."""
    _, ts = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation.load_evaluation(config, out)
    index, points, labels = evaluation_shapes(ev.builder, config)
    digest = hashlib.sha1(
        json.dumps([config.to_dict(), ev.step], sort_keys=True, default=str).encode()
    ).hexdigest()
    # unit f"t={t},idx={idx}" -> its row
    done = run_folder.FinishedUnits(out / "certify_progress.jsonl", digest[:16])
    todo = [(t, i) for t in ts for i in range(len(index)) if unit(t, index[i]) not in done.done]
    draws = config.n0 + config.n
    print(
        f"certify {config.name}: {len(index)} test shapes x {len(ts)} noise levels, "
        f"n0={config.n0}, n={config.n}, alpha={config.alpha}, N={config.num_paths} "
        f"({draws * config.num_paths} forward passes per shape and level); "
        f"{len(ts) * len(index) - len(todo)} done earlier",
        flush=True,
    )
    bar = progress.bar(
        total=len(todo) * draws, desc=f"certify {config.name}", unit="draw", first_step=True
    )
    for t in ts:
        certify_level(
            config,
            ev,
            t,
            [i for tt, i in todo if tt == t],
            index,
            points,
            labels,
            done,
            on_chunk=lambda shapes: bar.update(shapes * draws),
        )
    bar.close()
    return write_outputs(
        config,
        ev,
        out,
        [done.done[unit(t, i)] for t in ts for i in index],
        ts,
        num_points=int(points.shape[1]),
    )


def unit(t: int, idx) -> str:
    """The name of a finished (noise level, test shape) in DIR/certify_progress.jsonl."""
    return f"t={t},idx={int(idx)}"


def certify_level(
    config,
    ev: evaluation.Evaluation,
    t: int,
    pending: list[int],
    index,
    points,
    labels,
    done: run_folder.FinishedUnits,
    on_chunk,
) -> None:
    """CERTIFY at noise level t for the `pending` shapes, config.batch_shapes at a time, each
    shape's draws from its own keys (selection, then estimation); each row recorded as it is done.
    """
    sigma = smoothing.sigma_of(ev.model_config, t)
    counts_fn = smoothing.make_counts_fn(
        ev.model_config,
        ev.variables,
        ev.text_features,
        ratio=config.ratio,
        t=t,
        sigma=sigma,
        num_paths=config.num_paths,
        draws_per_step=config.draws_per_step,
    )
    for start in range(0, len(pending), config.batch_shapes):
        chunk = pending[start : start + config.batch_shapes]
        keys = jnp.stack(
            [
                jax.random.fold_in(
                    jax.random.fold_in(jax.random.key(config.seed), t), int(index[i])
                )
                for i in chunk
            ]
        )
        key_pair = jax.vmap(jax.random.split)(keys)  # (B, 2): selection and estimation draws
        began = time.perf_counter()
        calls = iter((key_pair[:, 0], key_pair[:, 1]))  # certify draws twice
        pred, radius, counts = smoothing.certify(
            lambda num: counts_fn(points[chunk], next(calls), num),
            n0=config.n0,
            n=config.n,
            alpha=config.alpha,
            sigma=sigma,
        )
        took = (time.perf_counter() - began) / len(chunk)
        for b, i in enumerate(chunk):
            done.add(
                unit(t, index[i]),
                {
                    "t": t,
                    "sigma": sigma,
                    "idx": int(index[i]),
                    "label": int(labels[i]),
                    "predict": int(pred[b]),
                    "radius": float(radius[b]) / math.sqrt(config.num_paths),
                    "correct": int(pred[b] == labels[i]),
                    "time": round(took, 3),
                    "top_class": int(counts[b].argmax()),
                },
            )
        on_chunk(len(chunk))


def write_outputs(
    config,
    ev: evaluation.Evaluation,
    out: pathlib.Path,
    rows: list[dict],
    ts: list[int],
    *,
    num_points: int,
) -> dict:
    """certify.tsv (Cohen et al.'s columns), certify.json and certify.png/.pdf; the report."""
    head = "t\tsigma\tidx\tlabel\tpredict\tradius\tcorrect\ttime"
    lines = [head] + [
        f"{r['t']}\t{r['sigma']:.6g}\t{r['idx']}\t{r['label']}\t{r['predict']}\t"
        f"{r['radius']:.6g}\t{r['correct']}\t{r['time']:.3f}"
        for r in rows
    ]
    run_folder.write_text(out / "certify.tsv", "\n".join(lines) + "\n")
    per_sigma = [
        smoothing.summarize(
            [r for r in rows if r["t"] == t], smoothing.sigma_of(ev.model_config, t), t
        )
        for t in ts
    ]
    report = {
        "dataset": config.name,
        "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
        "checkpoint_step": ev.step,
        "num_paths": config.num_paths,
        "n0": config.n0,
        "n": config.n,
        "alpha": config.alpha,
        "ratio": config.ratio,
        "num_points": num_points,
        "radius_norm": "L2 over all N x 3 coordinates of the evaluated cloud",
        "per_sigma": per_sigma,
    }
    metrics.write_json(out / "certify.json", report)
    title = (
        f"{config.name}: certified accuracy (N={config.num_paths}, n={config.n}, "
        f"alpha={config.alpha:g})"
    )
    figures.save(figures.certified_accuracy_figure(per_sigma, title=title), out / "certify.png")
    scalars = {}
    for s in per_sigma:
        scalars.update(
            {f"certify/t{s['t']}/certified_acc_r{r}": v for r, v in s["certified_accuracy"].items()}
        )
        for key in ("average_certified_radius", "abstention_rate", "clean_accuracy"):
            scalars[f"certify/t{s['t']}/{key}"] = s[key]
    tensorboard_events.write_summary(
        out, "certify", ev.step, scalars, [("certify/figure", out / "certify.png")]
    )
    for s in per_sigma:
        print(
            f"certify {config.name}: t={s['t']} sigma={s['sigma']:.4f}: certified accuracy at r=0 "
            f"{s['certified_accuracy']['0']:.3f}, at 0.05 {s['certified_accuracy']['0.05']:.3f}; "
            f"average radius {s['average_certified_radius']:.4f}; abstained "
            f"{s['abstention_rate']:.3f}; g clean {s['clean_accuracy']:.3f}"
        )
    print(f"certify {config.name}: wrote certify.tsv, certify.json, certify.png/.pdf in {out}")
    return report
