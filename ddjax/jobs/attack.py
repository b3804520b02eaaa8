"""The attack job (configs/attack.py): robust zero-shot accuracy under targeted IFGM, PGD and C&W
(paper Table 2 and Figure 8, the adversarial half of Table 5), by the protocol of
ddjax/robustness.py.

Writes DIR/attack.json, table2.md, figure8.png/.pdf and adversarial_examples.png/.pdf (with
config.sweep: sweep.csv, sweep.md, sweep.png); `--config.checkpoint=RUN_A,RUN_B` attacks each run
into its own subfolder and writes a Table 2 with one column per model. Finished (setting, mode,
attack) units are appended to DIR/attack_progress.jsonl, so a killed job run again with the same
config continues where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import time

import jax
import ml_collections
import numpy as np

from ddjax import (
    attacks,
    config_checks,
    distributed,
    errors,
    evaluation,
    figures,
    metrics,
    progress,
    robustness,
    run_folder,
    scoring,
    tensorboard_events,
)
from ddjax.models import dual_denoising as dd

KEYS = {
    "": evaluation.EVALUATION_KEYS
    | {
        "job",
        "max_shapes",
        "batch_size",
        "settings",
        "attacks",
        "modes",
        "eps",
        "steps",
        "curve_every",
        "eot_samples",
        "draws_per_step",
        "success_draws",
        "fixed_noise",
        "cw",
        "seeds",
        "seed",
        "sweep",
        "sweep_num_paths",
        "sweep_t",
        "sweep_steps",
        "sweep_eps",
    },
    "cw": {"search_steps", "iterations", "learning_rate", "initial_lambda", "lower", "upper"},
}


def check_config(config, workdir: str | None = None) -> dict:
    """Parses and checks every value of the job before any data, checkpoint or compilation; returns
    the lists as a dict. ConfigError names the key."""
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "attack", "attack.json, table2.md and figure8.png")
    config_checks.refuse_run_folder(workdir, "attack")
    run_config = evaluation.check_evaluation(config)
    parsed = {
        "settings": robustness.parse_settings(config.settings),
        "attacks": config_checks.parse_list(config, "attacks", str),
        "modes": config_checks.parse_list(config, "modes", str),
        "eps": config_checks.parse_list(config, "eps", float),
        "sweep_num_paths": config_checks.parse_list(config, "sweep_num_paths", int),
        "sweep_t": config_checks.parse_list(config, "sweep_t", int),
    }
    for field, known in (("attacks", attacks.ATTACKS), ("modes", attacks.MODES)):
        bad = [v for v in parsed[field] if v not in known]
        if bad:
            raise errors.ConfigError(field, f"{bad} not in {list(known)}")
    parsed["model"] = run_config["model"].get("kind", "dual_denoising")
    parsed["deterministic"] = evaluation.inference(run_config).deterministic
    if parsed["deterministic"]:  # one setting, and EOT would average equal gradients
        if config.sweep:
            raise errors.ConfigError(
                "sweep",
                f"{config.checkpoint} is a deterministic {parsed['model']} model: "
                "it has no N x t settings to sweep",
                "drop --config.sweep",
            )
        parsed["settings"], parsed["modes"], parsed["sweep_num_paths"], parsed["sweep_t"] = (
            [(1, 0)],
            ["paper"],
            [1],
            [0],
        )
    for field in ("steps", "sweep_steps", "eot_samples", "seeds", "batch_size"):
        config_checks.check_int(config, field, 1)
    timesteps = run_config["model"]["num_timesteps"]
    for field, pairs in (
        ("settings", parsed["settings"]),
        (
            "sweep_num_paths/sweep_t",
            [(n, t) for n in parsed["sweep_num_paths"] for t in parsed["sweep_t"]],
        ),
    ):
        for n, t in pairs:
            if n < 1 or not 0 <= t < timesteps:
                raise errors.ConfigError(
                    field, f"N={n}, t={t}: need N >= 1 and 0 <= t < {timesteps}"
                )
            key = "settings" if field == "settings" else "sweep_num_paths"
            evaluation.check_memory(run_config, config.batch_size, n, t, key)
    if any(e < 0 for e in parsed["eps"]):
        raise errors.ConfigError("eps", f"must be >= 0, got {parsed['eps']}")
    config_checks.check_number(config, "sweep_eps", 0.0)
    for field in ("max_shapes", "curve_every", "draws_per_step", "success_draws"):
        config_checks.check_int(config, field, 0)
    config_checks.check_seed(config)
    config_checks.check_choice(config, "fixed_noise", (True, False))
    config_checks.check_choice(config, "sweep", (True, False))
    if config.curve_every and config.steps % config.curve_every:
        raise errors.ConfigError(
            "curve_every", f"{config.curve_every} does not divide config.steps={config.steps}"
        )
    config_checks.check_int(config, "cw.search_steps", 1)
    config_checks.check_int(config, "cw.iterations", 1)
    config_checks.check_number(config, "cw.learning_rate", 0.0, low_open=True)
    config_checks.check_number(config, "cw.lower", 0.0)
    config_checks.check_number(config, "cw.upper", config.cw.lower)
    config_checks.check_number(config, "cw.initial_lambda", config.cw.lower, config.cw.upper)
    if parsed["deterministic"]:
        # every draw of a deterministic model gives the same prediction: one decides the majority
        config.success_draws = min(config.success_draws, 1)
    return parsed


def pct(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def write_table(
    path: pathlib.Path, results: list[dict], eps_list, dataset: str, seeds: int
) -> None:
    """Table 2's layout (one row per (N, t, mode); clean, IFGM and PGD at each epsilon, C&W; robust
    top-1 in %, mean ± std over the seeds, no ± with one seed), then one row per attack with the
    success rate as scored, the attack's own verdict, kept_correct and the median L2 of the clouds
    it believed successful."""
    std = (lambda r, key: r[key + "_std"]) if seeds > 1 else (lambda r, key: None)
    columns = [("ifgm", e) for e in eps_list] + [("pgd", e) for e in eps_list] + [("cw", None)]
    present = [c for c in columns if any((r["attack"], r["eps"]) == c for r in results)]
    name = lambda a, e: ("C&W" if a == "cw" else a.upper()) + (f" {e:g}" if e is not None else "")
    head = ["N", "t", "mode", "clean"] + [name(a, e) for a, e in present]
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [
        f"Robust zero-shot top-1 (%) on {dataset}, targeted attacks ({spread})",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    keys = []
    for r in results:
        if (r["num_paths"], r["t"], r["mode"]) not in keys:
            keys.append((r["num_paths"], r["t"], r["mode"]))
    for n, t, mode in keys:
        mine = {
            (r["attack"], r["eps"]): r
            for r in results
            if (r["num_paths"], r["t"], r["mode"]) == (n, t, mode)
        }
        first = next(iter(mine.values()))
        cells = [str(n), str(t), mode, pct(first["clean_acc"], std(first, "clean_acc"))]
        cells += [
            pct(mine[c]["robust_acc"], std(mine[c], "robust_acc")) if c in mine else ""
            for c in present
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per attack (%): success as scored with the evaluation noise, success as the attack judged "
        "it "
        "(its multi-draw check), clean-correct shapes still correct, and the median L2 of the "
        "clouds it "
        "judged successful",
        "",
        "| N | t | mode | attack | robust top-1 | success | attack's verdict | kept_correct | "
        "median L2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        dist = r.get("l2_distribution", {})
        lines.append(
            f"| {r['num_paths']} | {r['t']} | {r['mode']} | {name(r['attack'], r['eps'])} | "
            f"{pct(r['robust_acc'], std(r, 'robust_acc'))} | {pct(r['success_rate'])} | "
            f"{pct(r['attack_success_rate'])} | {pct(r['kept_correct'])} | "
            f"{format(dist['p50'], '.3g') if dist.get('count') else '–'} |"
        )
    run_folder.write_text(path, "\n".join(lines) + "\n")


def write_figure(path: pathlib.Path, curves: list[dict], eps: float, dataset: str) -> None:
    """Figure 8 (PNG and PDF): accuracy against PGD steps at `eps`, one line per (N, t) and mode
    (EOT dashed), the spread over seeds as a band."""
    chosen = [c for c in curves if c["attack"] == "pgd" and c["eps"] == eps]
    figures.save(
        figures.robustness_curve_figure(
            chosen, title=f"{dataset}: top-1 under targeted PGD, eps {eps:g}"
        ),
        path,
    )


def write_examples(path: pathlib.Path, class_names, dataset: str) -> None:
    """adversarial_examples.png/.pdf from the saved examples: clean and adversarial clouds side by
    side at the largest epsilon, the perturbation coloured by magnitude."""
    with np.load(path, allow_pickle=False) as saved:
        ex = {k: saved[k] for k in saved.files}
    e = len(ex["eps"]) - 1
    names = [f"{class_names[a]} -> {class_names[p]}" for a, p in zip(ex["label"], ex["pred"][e])]
    figures.save(
        figures.adversarial_figure(
            ex["clean"],
            ex["adversarial"][e],
            names,
            title=f"{dataset}: {ex['unit']}, eps {ex['eps'][e]:g} (true -> predicted)",
        ),
        path.with_suffix(".png"),
    )


def run(config, workdir: str | None) -> dict:
    """The attack job: Table 2 (attack.json, table2.md, figure8.png), or with config.sweep Table 5's
    adversarial half (sweep.csv, sweep.md)."""
    checkpoints = [c.strip() for c in str(config.checkpoint).split(",") if c.strip()]
    if len(checkpoints) > 1:
        return run_several(config, workdir, checkpoints)
    parsed = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation.load_evaluation(config, out)
    batches = robustness.load_batches(ev.builder, config)
    num_shapes = int(sum(b["valid"].sum() for b in batches))
    if config.sweep:
        units = [
            (n, t, mode, "pgd")
            for n in parsed["sweep_num_paths"]
            for t in parsed["sweep_t"]
            for mode in parsed["modes"]
        ]
        eps_list, steps, curve_every = [float(config.sweep_eps)], config.sweep_steps, 0
    else:
        units = [
            (n, t, mode, a)
            for n, t in parsed["settings"]
            for mode in parsed["modes"]
            for a in parsed["attacks"]
        ]
        eps_list, steps, curve_every = parsed["eps"], config.steps, config.curve_every
    print(
        f"attack {config.name}: {num_shapes} test shapes, {len(units)} units (setting x mode x "
        "attack), "
        f"{config.seeds} seeds, checkpoint step {ev.step}"
        + (
            f"; {parsed['model']} is deterministic: N=1, t=0, paper mode only"
            if parsed["deterministic"]
            else ""
        ),
        flush=True,
    )
    results, curves = run_units(
        config, ev, batches, units, out, eps_list=eps_list, steps=steps, curve_every=curve_every
    )
    meta = {
        "dataset": config.name,
        "num_samples": num_shapes,
        "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
        "checkpoint_step": ev.step,
        "teacher": ev.teacher,
        "ratio": config.ratio,
        "seeds": config.seeds,
        "eot_samples": config.eot_samples,
        "success_draws": config.success_draws,
        "fixed_noise": config.fixed_noise,
        "logit_scale": attacks.LOGIT_SCALE,
        "model": parsed["model"],
        "deterministic": parsed["deterministic"],
    }
    if config.sweep:
        return write_sweep(out, results, parsed["modes"], meta, config)
    return write_report(out, config, results, curves, meta, parsed["eps"], ev.class_names)


def run_units(
    config,
    ev: evaluation.Evaluation,
    batches: list[dict],
    units: list[tuple],
    out: pathlib.Path,
    *,
    eps_list: list[float],
    steps: int,
    curve_every: int,
) -> tuple[list[dict], list[dict]]:
    """Every (num_paths, t, mode, attack) unit not finished before
    (DIR/<attack|sweep>_progress.jsonl), with a progress line and one result line per unit; returns
    every unit's rows and Figure 8 curves."""
    draws = config.draws_per_step or dd.default_paths_per_step()
    digest = hashlib.sha1(
        json.dumps([config.to_dict(), ev.step], sort_keys=True, default=str).encode()
    ).hexdigest()
    done_units = run_folder.FinishedUnits(
        out / ("sweep_progress.jsonl" if config.sweep else "attack_progress.jsonl"), digest[:16]
    )
    # per call
    cost = lambda attack: config.cw.search_steps * config.cw.iterations if attack == "cw" else steps
    pending = [a for n, t, mode, a in units if f"N={n},t={t},{mode},{a}" not in done_units.done]
    # the (seed, batch) pairs this process attacks
    mine = len(distributed.assignment(config.seeds * len(batches)))
    bar = progress.bar(
        total=sum(cost(a) for a in pending) * mine,
        unit="step",
        desc=f"attack {config.name}" + (" sweep" if config.sweep else ""),
        first_step=True,
    )
    results, curves = [], []
    for u, (n, t, mode, attack) in enumerate(units):
        unit = f"N={n},t={t},{mode},{attack}"
        took = "done earlier"
        if unit not in done_units.done:
            start = time.perf_counter()
            summary = attack_unit(
                config,
                ev,
                batches,
                out,
                unit,
                n,
                t,
                mode,
                attack,
                draws=draws,
                eps_list=eps_list,
                steps=steps,
                curve_every=curve_every,
                on_batch=lambda attack=attack: bar.update(cost(attack)),
            )
            done_units.add(unit, summary)
            took = f"{time.perf_counter() - start:.0f} s"
        done = done_units.done[unit]
        results += done["rows"]
        curves += done["curves"]
        print(
            f"[{u + 1}/{len(units)}] {unit_line(unit, done['rows'], config.seeds)}  ({took})",
            flush=True,
        )
    bar.close()
    return results, curves


def attack_unit(
    config,
    ev: evaluation.Evaluation,
    batches: list[dict],
    out: pathlib.Path,
    unit: str,
    n: int,
    t: int,
    mode: str,
    attack: str,
    *,
    draws: int,
    eps_list: list[float],
    steps: int,
    curve_every: int,
    on_batch,
) -> dict:
    """One unit over every seed and batch: its summary (robustness.summarize). The first PGD unit
    also keeps adversarial examples (DIR/adversarial_examples.npz, drawn at the end)."""
    fixed_key = jax.random.key(config.seed) if config.fixed_noise else None
    logits_fn = robustness.build_logits(
        ev.model_config, ev.variables, ev.text_features, config.ratio, n, t, fixed_key
    )
    step_fn = robustness.make_attack_step(
        logits_fn,
        attack,
        mode=mode,
        eot_samples=config.eot_samples,
        draws_per_step=draws,
        steps=steps,
        curve_every=curve_every,
        cw_config=config.cw,
        success_draws=config.success_draws,
    )
    examples = {} if attack == "pgd" and not (out / "adversarial_examples.npz").is_file() else None
    per_seed = robustness.run_unit(
        step_fn,
        batches,
        eps_list,
        seeds=config.seeds,
        seed=config.seed,
        examples=examples,
        on_batch=on_batch,
    )
    robustness.check_finite(
        per_seed,
        unit,
        lambda: scoring.diagnose(
            ev.inference,
            ev.variables,
            batches,
            ev.text_features,
            ratio=config.ratio,
            t=t,
            num_paths=n,
            ratio_key="ratio",
        ),
    )
    if examples:
        buf = io.BytesIO()
        np.savez(buf, eps=np.asarray(eps_list, np.float32), unit=np.asarray(unit), **examples)
        run_folder.write_bytes(out / "adversarial_examples.npz", buf.getvalue())
    return robustness.summarize(
        per_seed, attack=attack, mode=mode, n=n, t=t, eps_list=eps_list, curve_every=curve_every
    )


def unit_line(unit: str, rows: list[dict], seeds: int) -> str:
    """A unit's result line: clean and robust accuracy, success as scored and as judged."""
    accs = "  ".join(
        f"{'eps ' + format(r['eps'], 'g') if r['eps'] is not None else 'C&W'}: "
        f"{pct(r['robust_acc'], r['robust_acc_std'] if seeds > 1 else None)}% "
        f"(success {pct(r['success_rate'])}%, attack's verdict {pct(r['attack_success_rate'])}%)"
        for r in rows
    )
    return f"{unit}: clean {pct(rows[0]['clean_acc'])}%  robust {accs}"


def write_report(
    out: pathlib.Path,
    config,
    results: list[dict],
    curves: list[dict],
    meta: dict,
    eps: list[float],
    class_names: list[str],
) -> dict:
    """attack.json, table2.md, figure8.png/.pdf and adversarial_examples.png/.pdf; returns the
    report."""
    clean = []
    for r in results:
        entry = {
            "num_paths": r["num_paths"],
            "t": r["t"],
            "acc": r["clean_acc"],
            "acc_std": r["clean_acc_std"],
        }
        if entry not in clean:
            clean.append(entry)
    report = {
        "clean_acc": clean,
        "results": results,
        "curves": curves,
        **meta,
        "steps": config.steps,
        "cw": config.cw.to_dict(),
    }
    metrics.write_json(out / "attack.json", report)
    write_table(out / "table2.md", results, eps, config.name, config.seeds)
    fig_eps = 0.01 if 0.01 in eps else min(eps)
    written = ["attack.json", "table2.md"]
    if curves:
        write_figure(out / "figure8.png", curves, fig_eps, config.name)
        written.append("figure8.png/.pdf")
    if (out / "adversarial_examples.npz").is_file():
        write_examples(out / "adversarial_examples.npz", class_names, config.name)
        written.append("adversarial_examples.png/.pdf")
    images = [
        (f"attack/{name}", out / f"{name}.png") for name in ("figure8", "adversarial_examples")
    ]
    tensorboard_events.write_summary(
        out,
        "attack",
        meta["checkpoint_step"],
        {**clean_scalars(results), **robust_scalars(results)},
        [(tag, png) for tag, png in images if png.is_file()],
    )
    print(f"attack {config.name}: wrote {', '.join(written)} in {out}")
    return report


def setting_tag(r: dict) -> str:
    return f"N{r['num_paths']}_t{r['t']}"


def clean_scalars(results: list[dict]) -> dict:
    """TensorBoard's clean accuracy per (N, t): `clean/N<n>_t<t>/acc`."""
    return {f"clean/{setting_tag(r)}/acc": r["clean_acc"] for r in results}


def robust_scalars(results: list[dict]) -> dict:
    """TensorBoard's scalars of Table 2's rows: `<attack>[_eps<eps>]/N<n>_t<t>/<mode>/<key>`."""
    out = {}
    for r in results:
        attack = r["attack"] if r["eps"] is None else f"{r['attack']}_eps{r['eps']:g}"
        for key in ("robust_acc", "success_rate", "attack_success_rate"):
            out[f"{attack}/{setting_tag(r)}/{r['mode']}/{key}"] = r[key]
    return out


def write_sweep(out: pathlib.Path, results: list[dict], modes, meta: dict, config) -> dict:
    """sweep.csv (one row per (N, t): clean accuracy, then robust accuracy, its std and the success
    rate per mode), sweep.md (rows N, columns t, robust top-1 in % per mode) and sweep.png/.pdf
    (clean and robust top-1 heatmaps side by side, the first mode's)."""
    by = {(r["num_paths"], r["t"], r["mode"]): r for r in results}
    ns, ts = sorted({r["num_paths"] for r in results}), sorted({r["t"] for r in results})
    head = ["num_paths", "t", "clean_acc"] + [
        f"{m}_{k}" for m in modes for k in ("robust_acc", "robust_acc_std", "success_rate")
    ]
    lines = [",".join(head)]
    rows = []
    for n in ns:
        for t in ts:
            row = {"num_paths": n, "t": t, "clean_acc": by[n, t, modes[0]]["clean_acc"]}
            for m in modes:
                row.update(
                    {
                        f"{m}_{k}": by[n, t, m][k]
                        for k in ("robust_acc", "robust_acc_std", "success_rate")
                    }
                )
            rows.append(row)
            lines.append(
                ",".join(str(row[h]) if h in ("num_paths", "t") else f"{row[h]:.6f}" for h in head)
            )
    run_folder.write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    md = [
        f"Robust zero-shot top-1 (%) on {meta['dataset']} under targeted PGD ({config.sweep_steps} "
        "steps, "
        f"eps {config.sweep_eps:g}), mean over {meta['seeds']} seeds, by N (rows) and t (columns)"
    ]
    for m in modes:
        md += [
            "",
            f"Gradient mode `{m}`",
            "",
            "| N \\ t | " + " | ".join(str(t) for t in ts) + " |",
            "|---" * (len(ts) + 1) + "|",
        ]
        md += [
            f"| {n} | " + " | ".join(pct(by[n, t, m]["robust_acc"]) for t in ts) + " |" for n in ns
        ]
    run_folder.write_text(out / "sweep.md", "\n".join(md) + "\n")
    figures.save(
        figures.sweep_figure(
            rows,
            key="clean_acc",
            adversarial=rows,
            adversarial_key=f"{modes[0]}_robust_acc",
            title=f"{meta['dataset']}: top-1 by N and t",
        ),
        out / "sweep.png",
    )
    metrics.write_json(
        out / "sweep.json",
        {"rows": rows, **meta, "steps": config.sweep_steps, "eps": config.sweep_eps},
    )
    tensorboard_events.write_summary(
        out,
        "attack_sweep",
        meta["checkpoint_step"],
        {**clean_scalars(results), **robust_scalars(results)},
        [("attack/sweep", out / "sweep.png")],
    )
    print(f"attack sweep {config.name}: {len(rows)} settings written to {out / 'sweep.csv'}")
    return {"sweep": rows}


MODEL_NAMES = {
    "dual_denoising": "Ours",
    "recon": "ReCon",
    "ulip_pointbert": "ULIP (Point-BERT)",
    "ulip2_pointbert": "ULIP-2 (Point-BERT)",
    "uni3d": "Uni3D",
}


def run_several(config, workdir: str | None, checkpoints: list[str]) -> dict:
    """`--config.checkpoint=RUN_A,RUN_B,...`: the attack job on each run, into DIR/<run folder
    name>/ (each resumable on its own), then DIR/table2.md with one column per model and setting
    (Table 2's layout) and DIR/attack.json listing the runs. Every run's config is checked before
    any work."""
    config_checks.require_workdir(
        workdir, "attack", "one folder per run, table2.md and attack.json"
    )
    config_checks.refuse_run_folder(workdir, "attack")
    if config.sweep:
        raise errors.ConfigError(
            "sweep", "the sweep takes one run at a time", "pass one --config.checkpoint"
        )
    out = pathlib.Path(workdir).expanduser().resolve()
    configs, names = [], []
    for c in checkpoints:
        one = ml_collections.ConfigDict(config.to_dict())
        one.checkpoint = c
        check_config(one, workdir)
        configs.append(one)
        name = pathlib.Path(c).expanduser().resolve().name or "run"
        names.append(name if name not in names else f"{name}_{len(names)}")
    reports = []
    for i, (one, name) in enumerate(zip(configs, names)):
        print(
            f"attack {config.name}: run {i + 1}/{len(configs)}: {one.checkpoint} -> {out / name}",
            flush=True,
        )
        reports.append(run(one, str(out / name)))
    eps_list = config_checks.parse_list(config, "eps", float)
    write_comparison(
        out / "table2.md", list(zip(names, reports)), eps_list, config.name, config.seeds
    )
    summary = {
        "dataset": config.name,
        "runs": [
            {
                "folder": name,
                "checkpoint": r["checkpoint"],
                "model": r["model"],
                "clean_acc": r["clean_acc"],
            }
            for name, r in zip(names, reports)
        ],
    }
    metrics.write_json(out / "attack.json", summary)
    print(f"attack {config.name}: wrote table2.md (one column per model) and attack.json in {out}")
    return summary


def write_comparison(
    path: pathlib.Path, entries: list[tuple[str, dict]], eps_list, dataset: str, seeds: int
) -> None:
    """Table 2 as the paper lays it out: one row per attack (clean, IFGM and PGD at each epsilon,
    C&W), one column per model and (N, t, mode); robust top-1 in %, mean ± std over the seeds."""
    std = (lambda r, key: r[key + "_std"]) if seeds > 1 else (lambda r, key: None)
    columns = []  # (heading, {(attack, eps): row})
    for name, report in entries:
        label = MODEL_NAMES.get(report["model"], report["model"])
        settings = []
        for r in report["results"]:
            if (r["num_paths"], r["t"], r["mode"]) not in settings:
                settings.append((r["num_paths"], r["t"], r["mode"]))
        for n, t, mode in settings:
            rows = {
                (r["attack"], r["eps"]): r
                for r in report["results"]
                if (r["num_paths"], r["t"], r["mode"]) == (n, t, mode)
            }
            heading = label if report.get("deterministic") else f"{label} N={n} t={t} {mode}"
            columns.append((f"{heading} ({name})", rows))
    attack_rows = [("ifgm", e) for e in eps_list] + [("pgd", e) for e in eps_list] + [("cw", None)]
    attack_rows = [a for a in attack_rows if any(a in rows for _, rows in columns)]
    title = lambda a, e: ("C&W" if a == "cw" else a.upper()) + (f" {e:g}" if e is not None else "")
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [
        f"Robust zero-shot top-1 (%) on {dataset}, targeted attacks ({spread}); one column per "
        "model",
        "",
        "| attack | " + " | ".join(h for h, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    first = lambda rows: next(iter(rows.values()))
    lines.append(
        "| clean | "
        + " | ".join(
            pct(first(rows)["clean_acc"], std(first(rows), "clean_acc")) for _, rows in columns
        )
        + " |"
    )
    for a, e in attack_rows:
        lines.append(
            f"| {title(a, e)} | "
            + " | ".join(
                pct(rows[a, e]["robust_acc"], std(rows[a, e], "robust_acc"))
                if (a, e) in rows
                else ""
                for _, rows in columns
            )
            + " |"
        )
    run_folder.write_text(path, "\n".join(lines) + "\n")
