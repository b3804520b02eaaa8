"""The zeroshot job (configs/zeroshot.py): zero-shot classification of a run on a test split (paper
Table 1), the Table 5 sweep over (num_paths, t), and the ensemble-ratio sweep.

Writes DIR/zeroshot.json and DIR/confusion.png (or sweep.csv/md/png with config.sweep; ratios.csv
with config.ratios) and prints a one-line summary. Scoring is ddjax/scoring.py; the run, data and
text features come from ddjax/evaluation.py.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp

from ddjax import (
    config_checks,
    errors,
    evaluation,
    figures,
    metrics,
    progress,
    run_folder,
    scoring,
    tensorboard_events,
)

KEYS = {
    "": evaluation.EVALUATION_KEYS
    | {"job", "t", "num_paths", "batch_size", "seed", "sweep", "ratios"}
}


def check_config(config, workdir: str | None) -> dict:
    """The zeroshot job's checks, before any data, checkpoint or compilation; returns the run's
    record."""
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "zeroshot", "zeroshot.json and confusion.png")
    config_checks.refuse_run_folder(workdir, "zeroshot")
    run_config = evaluation.check_evaluation(config)
    evaluation.check_noise_setting(config, run_config)
    config_checks.check_int(config, "batch_size", 1)
    config_checks.check_seed(config)
    config_checks.check_choice(config, "sweep", (True, False))
    if config.sweep and evaluation.inference(run_config).deterministic:
        raise errors.ConfigError(
            "sweep",
            f"{config.checkpoint} is a deterministic {run_config['model']['kind']} "
            "model: it has no N x t settings to sweep",
            "drop --config.sweep",
        )
    parse_ratios(config)
    sweep = (max(scoring.SWEEP_N), max(scoring.SWEEP_T))
    evaluation.check_memory(
        run_config,
        config.batch_size,
        *(sweep if config.sweep else (config.num_paths, config.t)),
    )
    return run_config


def parse_ratios(config) -> list[float]:
    """config.ratios '0,0.1,0.25' -> [0.0, 0.1, 0.25] (may be empty); ConfigError unless finite
    numbers >= 0."""
    ratios = config_checks.parse_list(
        config,
        "ratios",
        float,
        what="numbers",
        example="0,0.1,0.25",
        allow_empty=True,
        finite=False,
    )
    if any(not math.isfinite(r) or r < 0 for r in ratios):
        raise errors.ConfigError(
            "ratios", f"{config.ratios!r}: every text weight must be a finite number >= 0"
        )
    return ratios


def write_sweep(out: pathlib.Path, rows: list[dict], name: str = "") -> None:
    """sweep.csv (num_paths,t,top1,top5,mean_class_acc), sweep.md laid out as the paper's Table 5
    (rows N, columns t, top-1 in %), and sweep.png/.pdf (the same as an annotated heatmap, the best
    cell outlined)."""
    lines = ["num_paths,t,top1,top5,mean_class_acc"] + [
        f"{r['num_paths']},{r['t']},{r['top1']:.6f},{r['top5']:.6f},{r['mean_class_acc']:.6f}"
        for r in rows
    ]
    run_folder.write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    ns, ts = sorted({r["num_paths"] for r in rows}), sorted({r["t"] for r in rows})
    top1 = {(r["num_paths"], r["t"]): r["top1"] for r in rows}
    md = ["| N \\ t | " + " | ".join(str(t) for t in ts) + " |", "|---" * (len(ts) + 1) + "|"]
    md += [f"| {n} | " + " | ".join(f"{100 * top1[n, t]:.1f}" for t in ts) + " |" for n in ns]
    run_folder.write_text(
        out / "sweep.md",
        "Zero-shot top-1 (%) by number of noise paths N and noise step t\n\n"
        + "\n".join(md)
        + "\n",
    )
    figures.save(
        figures.sweep_figure(rows, title=f"{name or 'zero-shot'}: top-1 by N and t"),
        out / "sweep.png",
    )


def write_ratios(
    out: pathlib.Path, by_ratio: dict, ratios: list[float], labels, num_classes: int
) -> None:
    """ratios.csv: the accuracy at each extra text weight of config.ratios, from the
    same features."""
    lines = ["ratio,top1,top5,mean_class_acc"]
    for r in ratios:
        rep = scoring.accuracy_report(by_ratio[r], labels, num_classes)
        lines.append(f"{r},{rep['top1']:.6f},{rep['top5']:.6f},{rep['mean_class_acc']:.6f}")
    run_folder.write_text(out / "ratios.csv", "\n".join(lines) + "\n")


def run(config, workdir: str | None) -> dict:
    """The zeroshot job (configs/zeroshot.py)."""
    run_config = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation.load_evaluation(config, out)
    num_paths, t = ev.inference.setting(config.num_paths, config.t)
    batches = scoring.load_batches(
        ev.builder.as_data_source("test"),
        npoints=config.npoints,
        point_all=config.point_all,
        batch_size=config.batch_size,
        seed=config.seed,
        normalize=config.normalize,
    )
    bar = progress.bar(
        total=sum(b is not None for b in batches),
        unit="batch",
        first_step=True,
        desc=f"zero-shot {config.name}" + (" sweep (N x t)" if config.sweep else ""),
    )
    text = jnp.asarray(ev.text_features)
    key = jax.random.key(config.seed)
    if config.sweep:
        rows = scoring.sweep(
            ev.inference,
            ev.variables,
            batches,
            text,
            ratio=config.ratio,
            key=key,
            on_batch=bar.update,
        )
        bar.close()
        write_sweep(out, rows, config.name)
        tensorboard_events.write_summary(
            out,
            "zeroshot_sweep",
            ev.step,
            {
                f"sweep/N{r['num_paths']}_t{r['t']}/{k}": r[k]
                for r in rows
                for k in scoring.ACCURACIES
            },
            [("sweep/top1", out / "sweep.png")],
        )
        best = max(rows, key=lambda r: r["top1"])
        print(
            f"zero-shot sweep {config.name}: {len(rows)} settings written to {out / 'sweep.csv'}; "
            f"best top-1 {best['top1']:.4f} at N={best['num_paths']}, t={best['t']}"
        )
        return {"sweep": rows}
    ratios = parse_ratios(config)
    infer = jax.jit(ev.inference.infer, static_argnames=("t", "num_paths"))
    by_ratio, labels = scoring.score_batches(  # one pass, every ratio scored
        infer,
        ev.variables,
        batches,
        text,
        ratios=[config.ratio, *ratios],
        t=t,
        num_paths=num_paths,
        key=key,
        feature_types=ev.inference.feature_types,
        on_batch=bar.update,
        ratio_keys=("ratio",) + ("ratios",) * len(ratios),
    )
    bar.close()
    if ratios:
        write_ratios(out, by_ratio, ratios, labels, len(ev.class_names))
    return write_result(out, config, run_config, ev, by_ratio[config.ratio], labels, num_paths, t)


def write_result(
    out: pathlib.Path,
    config,
    run_config: dict,
    ev: evaluation.Evaluation,
    logits,
    labels,
    num_paths: int,
    t: int,
) -> dict:
    """zeroshot.json (the accuracy report and what produced it) and confusion.png/.pdf; prints the
    one-line summary."""
    names = ev.class_names
    result = scoring.accuracy_report(logits, labels, len(names))
    result.update(
        {
            "num_paths": num_paths,
            "t": t,
            "ratio": config.ratio,
            "dataset": config.name,
            "model": run_config["model"].get("kind", "dual_denoising"),
            "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
            "checkpoint_step": ev.step,
            "teacher": ev.teacher,
            "class_names": names,
            "num_groups": ev.model_config.num_groups,
            "group_size": ev.model_config.group_size,
        }
    )
    metrics.write_json(out / "zeroshot.json", result)
    title = f"{config.name}: zero-shot, N={num_paths}, t={t}"
    figures.save(
        figures.confusion_figure(labels, logits.argmax(axis=1), names, title=title),
        out / "confusion.png",
    )
    tensorboard_events.write_summary(
        out,
        "zeroshot",
        ev.step,
        {f"zeroshot/{k}": result[k] for k in scoring.ACCURACIES},
        [("zeroshot/confusion", out / "confusion.png")],
    )
    print(
        f"zero-shot {config.name}: top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
        f"mean class {result['mean_class_acc']:.4f}  (N={num_paths}, t={t}, ratio={config.ratio}, "
        f"{result['num_samples']} test shapes, checkpoint step {ev.step})"
    )
    return result
