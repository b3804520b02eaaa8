"""The attack job (configs/attack.py): robust zero-shot accuracy under targeted IFGM, PGD and C&W (paper
Table 2 and Figure 8, the adversarial half of Table 5).

Protocol, per (N, t) setting, gradient mode, attack and evaluation seed r:
  * evaluation key r: the model's noise for every *scored* forward pass; batch i uses
    fold_in(fold_in(fold_in(key(seed), r), 0), i). Clean logits with it give the clean accuracy and the
    target (the second-highest clean logit), and the adversarial clouds are scored with the same key.
  * attack key r: fold_in(fold_in(fold_in(key(seed), r), 1), i); the attack's own forward passes draw
    their noise from it (fresh per step, see ddjax/attacks.py).
  * the attack itself decides which iterate to return with its own multi-draw check (`success_draws` fresh
    draws, ddjax/attacks.py); attack_success_rate is the share it believed reached the target.
  * robust accuracy = accuracy against the true label on the adversarial clouds; success rate = share
    predicted as the target; kept_correct = share of the clean-correct clouds still correct. Each is taken
    over the test set, then reported as the mean (robust accuracy also the standard deviation, numpy's,
    ddof = 0) over the R seeds; distortions are means over shapes and seeds, and `l2_distribution` gives
    the quantiles of the L2 distortion of the clouds the attack believed successful (near_clean counts those
    within 1e-4 of the clean cloud).
  * config.fixed_noise: every forward pass (attack, check, scoring) uses one fixed key, a deterministic
    model; otherwise even N = 1, t = 0 is random (the feature branch's input noise is drawn).
Finished (setting, mode, attack) units are appended to DIR/attack_progress.jsonl, so a killed job run again
with the same config continues where it stopped.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import attacks
from ddjax import errors
from ddjax import hosts
from ddjax import metrics
from ddjax import progress as progress_lines
from ddjax import figures
from ddjax import run_folder
from ddjax import zeroshot


def parse_list(config, field: str, kind=float) -> list:
    """A comma-separated config string as a list of `kind`; ConfigError naming the field."""
    text = str(config[field])
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise errors.ConfigError(field, f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    if not values:
        raise errors.ConfigError(field, "empty list")
    if kind is float and not all(np.isfinite(values)):
        raise errors.ConfigError(field, f"{text!r} holds a non-finite number")
    return values


def parse_settings(text: str, field: str = "settings") -> list[tuple[int, int]]:
    """'8:100,16:500' -> [(8, 100), (16, 500)] (N noise paths, noise step t)."""
    settings = []
    for item in str(text).split(","):
        n, _, t = item.partition(":")
        try:
            settings.append((int(n), int(t)))
        except ValueError:
            raise errors.ConfigError(field, f"{item!r} is not N:t", "e.g. --config.settings=8:100,16:500") from None
    return settings


def check_config(config, workdir: str | None = None) -> dict:
    """Parses and checks every value of the job before any data, checkpoint or compilation; returns the
    lists as a dict. ConfigError names the key."""
    errors.require_workdir(workdir, "attack", "attack.json, table2.md and figure8.png")
    run_config = zeroshot.check_evaluation(config)
    parsed = {
        "settings": parse_settings(config.settings),
        "attacks": parse_list(config, "attacks", str),
        "modes": parse_list(config, "modes", str),
        "eps": parse_list(config, "eps", float),
        "sweep_n": parse_list(config, "sweep_n", int),
        "sweep_t": parse_list(config, "sweep_t", int),
    }
    for field, known in (("attacks", attacks.ATTACKS), ("modes", attacks.MODES)):
        bad = [v for v in parsed[field] if v not in known]
        if bad:
            raise errors.ConfigError(field, f"{bad} not in {list(known)}")
    parsed["model"] = run_config["model"].get("kind", "dual_denoising")
    if zeroshot.is_baseline(run_config):  # deterministic: one setting, and EOT would average equal gradients
        if config.sweep:
            raise errors.ConfigError("sweep", f"{config.checkpoint} is a deterministic {parsed['model']} model: "
                                     "it has no N x t settings to sweep", "drop --config.sweep")
        parsed["settings"], parsed["modes"], parsed["sweep_n"], parsed["sweep_t"] = [(1, 0)], ["paper"], [1], [0]
    timesteps = run_config["model"]["num_timesteps"]
    for field, pairs in (("settings", parsed["settings"]),
                         ("sweep_n/sweep_t", [(n, t) for n in parsed["sweep_n"] for t in parsed["sweep_t"]])):
        for n, t in pairs:
            if n < 1 or not 0 <= t < timesteps:
                raise errors.ConfigError(field, f"N={n}, t={t}: need N >= 1 and 0 <= t < {timesteps}")
    if any(e < 0 for e in parsed["eps"]):
        raise errors.ConfigError("eps", f"must be >= 0, got {parsed['eps']}")
    errors.check_number(config, "sweep_eps", 0.0)
    for field in ("steps", "sweep_steps", "eot_samples", "seeds", "batch_size"):
        errors.check_int(config, field, 1)
    for field in ("max_shapes", "curve_every", "draws_per_step", "success_draws"):
        errors.check_int(config, field, 0)
    errors.check_int(config, "seed")
    errors.check_choice(config, "fixed_noise", (True, False))
    errors.check_choice(config, "sweep", (True, False))
    if config.curve_every and config.steps % config.curve_every:
        raise errors.ConfigError("curve_every", f"{config.curve_every} does not divide config.steps={config.steps}")
    errors.check_int(config, "cw.search_steps", 1)
    errors.check_int(config, "cw.iterations", 1)
    errors.check_number(config, "cw.learning_rate", 0.0, low_open=True)
    errors.check_number(config, "cw.lower", 0.0)
    errors.check_number(config, "cw.upper", config.cw.lower)
    errors.check_number(config, "cw.initial_lambda", config.cw.lower, config.cw.upper)
    return parsed


def load_batches(builder, config) -> list[dict]:
    """The test split (its first config.max_shapes shapes) as fixed-size batches {'points', 'label', 'valid'}
    (`pipelines.padded_batches`)."""
    from ddjax.data import pipelines
    batches = pipelines.padded_batches(builder.as_data_source("test"), npoints=config.npoints,
                                       point_all=config.point_all, batch_size=config.batch_size, seed=config.seed,
                                       normalize=config.normalize, max_shapes=config.max_shapes)
    if not batches:
        raise errors.ConfigError("dataset", f"the test split of {config.dataset} is empty")
    return batches


def make_attack_step(logits_fn, attack: str, *, mode: str, eot_samples: int, draws_per_step, steps: int,
                     curve_every: int, cw_config, success_draws: int = 8):
    """A jitted (points, eval_key, attack_key, eps f32[E]) -> per-cloud results for one batch.

    Returns {'clean_pred', 'target': int[B], 'pred': int[E, B] (E = 1 for C&W), 'reached': bool[E, B] (the
    attack's own multi-draw verdict), 'linf', 'l2', 'chamfer': f32[E, B], 'curve': int[E, S, B] predictions
    every curve_every steps (IFGM / PGD with curve_every)}.
    """
    def fn(points, eval_key, attack_key, eps):
        clean_logits = logits_fn(points, eval_key)
        target = attacks.second_best(clean_logits)
        curve = None
        if attack in ("ifgm", "pgd"):
            run = lambda e: attacks.pgd(logits_fn, points, target, attack_key, eps=e, steps=steps,
                                        random_start=attack == "pgd", mode=mode, eot_samples=eot_samples,
                                        draws_per_step=draws_per_step, curve_every=curve_every,
                                        eval_key=eval_key, success_draws=success_draws)
            adv, info = jax.vmap(run)(eps)  # (E, B, N, 3), {'reached': (E, B), 'curve': (E, S, B) or None}
            reached, curve = info["reached"], info["curve"]
        else:
            adv, history = attacks.cw(logits_fn, points, target, attack_key, search_steps=cw_config.search_steps,
                                      iterations=cw_config.iterations, learning_rate=cw_config.learning_rate,
                                      initial_lambda=cw_config.initial_lambda,
                                      lambda_bounds=(cw_config.lower, cw_config.upper), mode=mode,
                                      eot_samples=eot_samples, draws_per_step=draws_per_step,
                                      success_draws=success_draws)
            adv, reached = adv[None], jnp.any(history["reached"], axis=0)[None]  # (1, B, N, 3), (1, B)
        pred = jax.vmap(lambda x: jnp.argmax(logits_fn(x, eval_key), axis=1))(adv)  # (E, B)
        out = {"clean_pred": jnp.argmax(clean_logits, axis=1), "target": target, "pred": pred, "reached": reached,
               "adversarial": adv, **jax.vmap(lambda x: attacks.distortion(x, points))(adv)}
        if curve is not None:
            out["curve"] = curve
        return out

    return jax.jit(fn)


def seed_keys(seed: int, r: int, i: int) -> tuple[jax.Array, jax.Array]:
    """(evaluation key, attack key) of seed r and batch i."""
    base = jax.random.fold_in(jax.random.key(seed), r)
    return jax.random.fold_in(jax.random.fold_in(base, 0), i), jax.random.fold_in(jax.random.fold_in(base, 1), i)


def run_unit(step_fn, batches, eps_list, *, seeds: int, seed: int, examples: dict | None = None,
             on_batch=None) -> dict:
    """Runs one attack over every batch and seed; returns per-seed dataset-level numbers. The (seed, batch)
    pairs are dealt out over every device of every process (`hosts.run_items`: each batch whole on one
    device, with keys that depend only on the seed and the batch index, so the numbers do not depend on the
    process or device count) and gathered into every process. `examples` (a dict) receives, in process 0,
    the first EXAMPLES shapes of seed 0's first batch: clean and adversarial clouds (f32[S, N, 3] and
    f32[E, S, N, 3]), labels, targets and adversarial predictions (int[E, S]). `on_batch()` is called after
    each of this process's batches (the job's progress line)."""
    eps = jnp.asarray(eps_list, jnp.float32)

    def compute(item: int, device):
        r, i = divmod(item, len(batches))
        eval_key, attack_key = seed_keys(seed, r, i)
        out = step_fn(jax.device_put(batches[i]["points"], device), eval_key, attack_key, eps)
        adversarial = out.pop("adversarial")  # (E, B, N, 3)
        if examples is not None and item == 0:  # item 0 runs in process 0 (on its first device)
            k = min(EXAMPLES, int(batches[0]["valid"].sum()))
            examples.update(clean=batches[0]["points"][:k], adversarial=np.asarray(adversarial[:, :k]),
                            label=batches[0]["label"][:k], target=np.asarray(out["target"][:k]),
                            pred=np.asarray(out["pred"][:, :k]))
        return out

    outs = hosts.run_items(seeds * len(batches), compute, on_item=on_batch)
    per_seed = []
    for r in range(seeds):
        parts = []
        for i, batch in enumerate(batches):
            out, v = outs[r * len(batches) + i], batch["valid"]
            parts.append({k: a[..., v] for k, a in out.items()} | {"label": batch["label"][v]})  # batch last
        cat = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
        label = cat["label"]
        correct = cat["clean_pred"] == label
        seed_result = {
            "clean_acc": float(np.mean(correct)),
            # Of the clean-correct clouds, the share still correct (the targeted protocol also "fixes" wrong
            # predictions whose runner-up is the true label, which robust_acc counts as correct).
            "kept_correct": np.sum((cat["pred"] == label) & correct, axis=-1) / max(int(correct.sum()), 1),
            "robust_acc": np.mean(cat["pred"] == label, axis=-1),  # (E,)
            "success_rate": np.mean(cat["pred"] == cat["target"], axis=-1),
            "attack_success_rate": np.mean(cat["reached"], axis=-1),
            # Per epsilon, the L2 distortions of the clouds the attack believed successful (for quantiles).
            "l2_reached": [cat["l2"][e][cat["reached"][e]].tolist() for e in range(len(cat["l2"]))],
            **{k: np.mean(cat[k], axis=-1) for k in ("linf", "l2", "chamfer")},
        }
        if "curve" in cat:
            seed_result["curve"] = np.mean(cat["curve"] == label, axis=-1)  # (E, S)
        per_seed.append(seed_result)
    return per_seed


NEAR_CLEAN_L2 = 1e-4
EXAMPLES = 3  # shapes drawn in adversarial_examples.png


def l2_distribution(values: list[float]) -> dict:
    """Quantiles of L2 distortions, and how many are within NEAR_CLEAN_L2 of the clean cloud."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"count": 0, "near_clean": 0}
    q = np.quantile(v, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {"count": int(len(v)), "near_clean": int(np.sum(v < NEAR_CLEAN_L2)),
            **{name: float(x) for name, x in zip(("min", "p10", "p25", "p50", "p75", "p90", "max"), q)}}


def summarize(per_seed: list[dict], *, attack: str, mode: str, n: int, t: int, eps_list, curve_every: int) -> dict:
    """Result rows (one per epsilon; C&W: one with eps None) and curves from `run_unit`'s output."""
    stack = lambda k: np.stack([s[k] for s in per_seed])  # (R, E)
    clean = np.array([s["clean_acc"] for s in per_seed])
    rows, curves = [], []
    eps_values = list(eps_list) if attack != "cw" else [None]
    for e, eps in enumerate(eps_values):
        rows.append({"attack": attack, "eps": eps, "mode": mode, "N": n, "t": t,
                     "robust_acc": float(stack("robust_acc")[:, e].mean()),
                     "robust_acc_std": float(stack("robust_acc")[:, e].std()),
                     "success_rate": float(stack("success_rate")[:, e].mean()),
                     "attack_success_rate": float(stack("attack_success_rate")[:, e].mean()),
                     "kept_correct": float(stack("kept_correct")[:, e].mean()),
                     "l2_distribution": l2_distribution([v for s in per_seed for v in s["l2_reached"][e]]),
                     "linf": float(stack("linf")[:, e].mean()), "l2": float(stack("l2")[:, e].mean()),
                     "chamfer": float(stack("chamfer")[:, e].mean()),
                     "clean_acc": float(clean.mean()), "clean_acc_std": float(clean.std())})
        if "curve" in per_seed[0]:
            acc = stack("curve")[:, e]  # (R, S)
            curves.append({"attack": attack, "eps": eps, "mode": mode, "N": n, "t": t,
                           "steps": [j * curve_every for j in range(acc.shape[1])],
                           "acc": acc.mean(0).tolist(), "acc_std": acc.std(0).tolist()})
    return {"rows": rows, "curves": curves}


class Progress:
    """Finished units in DIR/<name>_progress.jsonl, keyed by the config that produced them."""

    def __init__(self, path: pathlib.Path, config_digest: str):
        self.path, self.digest, self.done = path, config_digest, {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by a kill
                if entry.get("config") == config_digest:
                    self.done[entry["unit"]] = entry["result"]

    def add(self, unit: str, result: dict) -> None:
        self.done[unit] = result
        if not hosts.is_writer():  # every process holds the result; process 0 records it
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"config": self.digest, "unit": unit, "result": result}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def pct(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def write_table(path: pathlib.Path, results: list[dict], eps_list, dataset: str, seeds: int) -> None:
    """Table 2's layout (one row per (N, t, mode); clean, IFGM and PGD at each epsilon, C&W; robust top-1 in
    %, mean ± std over the seeds, no ± with one seed), then one row per attack with the success rate as scored,
    the attack's own verdict, kept_correct and the median L2 of the clouds it believed successful."""
    std = (lambda r, key: r[key + "_std"]) if seeds > 1 else (lambda r, key: None)
    columns = [("ifgm", e) for e in eps_list] + [("pgd", e) for e in eps_list] + [("cw", None)]
    present = [c for c in columns if any((r["attack"], r["eps"]) == c for r in results)]
    name = lambda a, e: ("C&W" if a == "cw" else a.upper()) + (f" {e:g}" if e is not None else "")
    head = ["N", "t", "mode", "clean"] + [name(a, e) for a, e in present]
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [f"Robust zero-shot top-1 (%) on {dataset}, targeted attacks ({spread})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = []
    for r in results:
        if (r["N"], r["t"], r["mode"]) not in keys:
            keys.append((r["N"], r["t"], r["mode"]))
    for n, t, mode in keys:
        mine = {(r["attack"], r["eps"]): r for r in results if (r["N"], r["t"], r["mode"]) == (n, t, mode)}
        first = next(iter(mine.values()))
        cells = [str(n), str(t), mode, pct(first["clean_acc"], std(first, "clean_acc"))]
        cells += [pct(mine[c]["robust_acc"], std(mine[c], "robust_acc")) if c in mine else "" for c in present]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per attack (%): success as scored with the evaluation noise, success as the attack judged it "
              "(its multi-draw check), clean-correct shapes still correct, and the median L2 of the clouds it "
              "judged successful", "",
              "| N | t | mode | attack | robust top-1 | success | attack's verdict | kept_correct | median L2 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        dist = r.get("l2_distribution", {})
        lines.append(f"| {r['N']} | {r['t']} | {r['mode']} | {name(r['attack'], r['eps'])} | "
                     f"{pct(r['robust_acc'], std(r, 'robust_acc'))} | {pct(r['success_rate'])} | "
                     f"{pct(r['attack_success_rate'])} | {pct(r['kept_correct'])} | "
                     f"{format(dist['p50'], '.3g') if dist.get('count') else '–'} |")
    run_folder.write_text(path, "\n".join(lines) + "\n")


def write_figure(path: pathlib.Path, curves: list[dict], eps: float, dataset: str) -> None:
    """Figure 8 (PNG and PDF): accuracy against PGD steps at `eps`, one line per (N, t) and mode (EOT
    dashed), the spread over seeds as a band."""
    chosen = [c for c in curves if c["attack"] == "pgd" and c["eps"] == eps]
    figures.save(figures.robustness_curve_figure(chosen, title=f"{dataset}: top-1 under targeted PGD, "
                                                               f"eps {eps:g}"), path)


def write_examples(path: pathlib.Path, class_names, dataset: str) -> None:
    """adversarial_examples.png/.pdf from the saved examples: clean and adversarial clouds side by side at the
    largest epsilon, the perturbation coloured by magnitude."""
    with np.load(path, allow_pickle=False) as saved:
        ex = {k: saved[k] for k in saved.files}
    e = len(ex["eps"]) - 1
    names = [f"{class_names[a]} -> {class_names[p]}" for a, p in zip(ex["label"], ex["pred"][e])]
    figures.save(figures.adversarial_figure(ex["clean"], ex["adversarial"][e], names,
                                            title=f"{dataset}: {ex['unit']}, eps {ex['eps'][e]:g} "
                                                  "(true -> predicted)"), path.with_suffix(".png"))


def build_logits(model_config, variables, text_features, ratio, n: int, t: int, fixed_key=None):
    """The model's attack logits at (N, t); with `fixed_key`, every forward pass uses that key."""
    infer, _ = zeroshot.make_inference(model_config)
    fn = attacks.zero_shot_logits(infer, variables, jnp.asarray(text_features), ratio=ratio, t=t, num_paths=n,
                                  feature_types=tuple(model_config.feature_types))
    return fn if fixed_key is None else attacks.fixed_noise(fn, fixed_key)


def run(config, workdir: str | None) -> dict:
    """The attack job: Table 2 (attack.json, table2.md, figure8.png), or with config.sweep Table 5's
    adversarial half (sweep.csv, sweep.md)."""
    from ddjax.models import dual_denoising as dd

    checkpoints = [c.strip() for c in str(config.checkpoint).split(",") if c.strip()]
    if len(checkpoints) > 1:
        return run_several(config, workdir, checkpoints)
    parsed = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = zeroshot.load_evaluation(config, out)
    batches = load_batches(ev.builder, config)
    num_shapes = int(sum(b["valid"].sum() for b in batches))
    draws = config.draws_per_step or dd.default_paths_per_step()
    digest = hashlib.sha1(json.dumps([config.to_dict(), ev.step], sort_keys=True, default=str).encode()).hexdigest()
    progress = Progress(out / ("sweep_progress.jsonl" if config.sweep else "attack_progress.jsonl"), digest[:16])
    if config.sweep:
        units = [(n, t, mode, "pgd") for n in parsed["sweep_n"] for t in parsed["sweep_t"] for mode in parsed["modes"]]
        eps_list, steps, curve_every = [float(config.sweep_eps)], config.sweep_steps, 0
    else:
        units = [(n, t, mode, a) for n, t in parsed["settings"] for mode in parsed["modes"] for a in parsed["attacks"]]
        eps_list, steps, curve_every = parsed["eps"], config.steps, config.curve_every
    print(f"attack {config.name}: {num_shapes} test shapes, {len(units)} units (setting x mode x attack), "
          f"{config.seeds} seeds, checkpoint step {ev.step}" + (f"; {parsed['model']} is deterministic: N=1, t=0, "
          "paper mode only" if parsed["model"] != "dual_denoising" else ""), flush=True)
    results, curves = [], []
    cost = lambda attack: config.cw.search_steps * config.cw.iterations if attack == "cw" else steps  # per call
    pending = [a for n, t, mode, a in units if f"N={n},t={t},{mode},{a}" not in progress.done]
    mine = len(hosts.assignment(config.seeds * len(batches)))  # the (seed, batch) pairs this process attacks
    bar = progress_lines.bar(total=sum(cost(a) for a in pending) * mine, unit="step",
                             desc=f"attack {config.name}" + (" sweep" if config.sweep else ""), first_step=True)
    for u, (n, t, mode, attack) in enumerate(units):
        unit = f"N={n},t={t},{mode},{attack}"
        if unit not in progress.done:
            fixed_key = jax.random.key(config.seed) if config.fixed_noise else None
            logits_fn = build_logits(ev.model_config, ev.variables, ev.text_features, config.ratio, n, t, fixed_key)
            step_fn = make_attack_step(logits_fn, attack, mode=mode, eot_samples=config.eot_samples,
                                       draws_per_step=draws, steps=steps, curve_every=curve_every,
                                       cw_config=config.cw, success_draws=config.success_draws)
            start = time.perf_counter()
            examples = {} if attack == "pgd" and not (out / "adversarial_examples.npz").is_file() else None
            per_seed = run_unit(step_fn, batches, eps_list, seeds=config.seeds, seed=config.seed, examples=examples,
                                on_batch=lambda: bar.update(cost(attack)))
            if examples:  # the first PGD unit's: drawn into adversarial_examples.png at the end
                buf = io.BytesIO()
                np.savez(buf, eps=np.asarray(eps_list, np.float32), unit=np.asarray(unit), **examples)
                run_folder.write_bytes(out / "adversarial_examples.npz", buf.getvalue())
            progress.add(unit, summarize(per_seed, attack=attack, mode=mode, n=n, t=t, eps_list=eps_list,
                                         curve_every=curve_every))
            took = f"{time.perf_counter() - start:.0f} s"
        else:
            took = "done earlier"
        done = progress.done[unit]
        results += done["rows"]
        curves += done["curves"]
        accs = "  ".join(f"{'eps ' + format(r['eps'], 'g') if r['eps'] is not None else 'C&W'}: "
                         f"{pct(r['robust_acc'], r['robust_acc_std'] if config.seeds > 1 else None)}% "
                         f"(success {pct(r['success_rate'])}%, attack's verdict {pct(r['attack_success_rate'])}%)"
                         for r in done["rows"])
        print(f"[{u + 1}/{len(units)}] {unit}: clean {pct(done['rows'][0]['clean_acc'])}%  robust {accs}  ({took})",
              flush=True)
    bar.close()
    meta = {"dataset": config.name, "num_samples": num_shapes, "checkpoint": str(pathlib.Path(config.checkpoint)
            .expanduser().resolve()), "checkpoint_step": ev.step, "teacher": ev.teacher, "ratio": config.ratio,
            "seeds": config.seeds, "eot_samples": config.eot_samples, "success_draws": config.success_draws,
            "fixed_noise": config.fixed_noise, "logit_scale": attacks.LOGIT_SCALE, "model": parsed["model"]}
    if config.sweep:
        return write_sweep(out, results, parsed["modes"], meta, config)
    clean = []
    for r in results:
        entry = {"N": r["N"], "t": r["t"], "acc": r["clean_acc"], "acc_std": r["clean_acc_std"]}
        if entry not in clean:
            clean.append(entry)
    report = {"clean_acc": clean, "results": results, "curves": curves, **meta, "steps": config.steps,
              "cw": config.cw.to_dict()}
    metrics.write_json(out / "attack.json", report)
    write_table(out / "table2.md", results, parsed["eps"], config.name, config.seeds)
    fig_eps = 0.01 if 0.01 in parsed["eps"] else min(parsed["eps"])
    written = ["attack.json", "table2.md"]
    if curves:
        write_figure(out / "figure8.png", curves, fig_eps, config.name)
        written.append("figure8.png/.pdf")
    if (out / "adversarial_examples.npz").is_file():
        write_examples(out / "adversarial_examples.npz", ev.class_names, config.name)
        written.append("adversarial_examples.png/.pdf")
    print(f"attack {config.name}: wrote {', '.join(written)} in {out}")
    return report


def write_sweep(out: pathlib.Path, results: list[dict], modes, meta: dict, config) -> dict:
    """sweep.csv (one row per (N, t): clean accuracy, then robust accuracy, its std and the success rate per
    mode), sweep.md (rows N, columns t, robust top-1 in % per mode) and sweep.png/.pdf (clean and robust
    top-1 heatmaps side by side, the first mode's)."""
    by = {(r["N"], r["t"], r["mode"]): r for r in results}
    ns, ts = sorted({r["N"] for r in results}), sorted({r["t"] for r in results})
    head = ["N", "t", "clean_acc"] + [f"{m}_{k}" for m in modes for k in ("robust_acc", "robust_acc_std",
                                                                             "success_rate")]
    lines = [",".join(head)]
    rows = []
    for n in ns:
        for t in ts:
            row = {"N": n, "t": t, "clean_acc": by[n, t, modes[0]]["clean_acc"]}
            for m in modes:
                row.update({f"{m}_{k}": by[n, t, m][k] for k in ("robust_acc", "robust_acc_std", "success_rate")})
            rows.append(row)
            lines.append(",".join(str(row[h]) if h in ("N", "t") else f"{row[h]:.6f}" for h in head))
    run_folder.write_text(out / "sweep.csv", "\n".join(lines) + "\n")
    md = [f"Robust zero-shot top-1 (%) on {meta['dataset']} under targeted PGD ({config.sweep_steps} steps, "
          f"eps {config.sweep_eps:g}), mean over {meta['seeds']} seeds, by N (rows) and t (columns)"]
    for m in modes:
        md += ["", f"Gradient mode `{m}`", "", "| N \\ t | " + " | ".join(str(t) for t in ts) + " |",
               "|---" * (len(ts) + 1) + "|"]
        md += [f"| {n} | " + " | ".join(pct(by[n, t, m]["robust_acc"]) for t in ts) + " |" for n in ns]
    run_folder.write_text(out / "sweep.md", "\n".join(md) + "\n")
    figures.save(figures.sweep_figure(rows, key="clean_acc", adversarial=rows,
                                      adversarial_key=f"{modes[0]}_robust_acc",
                                      title=f"{meta['dataset']}: top-1 by N and t"), out / "sweep.png")
    metrics.write_json(out / "sweep.json", {"rows": rows, **meta, "steps": config.sweep_steps, "eps": config.sweep_eps})
    print(f"attack sweep {config.name}: {len(rows)} settings written to {out / 'sweep.csv'}")
    return {"sweep": rows}


MODEL_NAMES = {"dual_denoising": "Ours", "recon": "ReCon", "ulip_pointbert": "ULIP (Point-BERT)"}


def run_several(config, workdir: str | None, checkpoints: list[str]) -> dict:
    """`--config.checkpoint=RUN_A,RUN_B,...`: the attack job on each run, into DIR/<run folder name>/ (each
    resumable on its own), then DIR/table2.md with one column per model and setting (Table 2's layout) and
    DIR/attack.json listing the runs. Every run's config is checked before any work."""
    import ml_collections

    errors.require_workdir(workdir, "attack", "one folder per run, table2.md and attack.json")
    if config.sweep:
        raise errors.ConfigError("sweep", "the sweep takes one run at a time", "pass one --config.checkpoint")
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
        print(f"attack {config.name}: run {i + 1}/{len(configs)}: {one.checkpoint} -> {out / name}", flush=True)
        reports.append(run(one, str(out / name)))
    eps_list = parse_list(config, "eps", float)
    write_comparison(out / "table2.md", list(zip(names, reports)), eps_list, config.name, config.seeds)
    summary = {"dataset": config.name, "runs": [{"folder": name, "checkpoint": r["checkpoint"], "model": r["model"],
                                                 "clean_acc": r["clean_acc"]} for name, r in zip(names, reports)]}
    metrics.write_json(out / "attack.json", summary)
    print(f"attack {config.name}: wrote table2.md (one column per model) and attack.json in {out}")
    return summary


def write_comparison(path: pathlib.Path, entries: list[tuple[str, dict]], eps_list, dataset: str, seeds: int) -> None:
    """Table 2 as the paper lays it out: one row per attack (clean, IFGM and PGD at each epsilon, C&W), one
    column per model and (N, t, mode); robust top-1 in %, mean ± std over the seeds."""
    std = (lambda r, key: r[key + "_std"]) if seeds > 1 else (lambda r, key: None)
    columns = []  # (heading, {(attack, eps): row})
    for name, report in entries:
        label = MODEL_NAMES.get(report["model"], report["model"])
        settings = []
        for r in report["results"]:
            if (r["N"], r["t"], r["mode"]) not in settings:
                settings.append((r["N"], r["t"], r["mode"]))
        for n, t, mode in settings:
            rows = {(r["attack"], r["eps"]): r for r in report["results"] if (r["N"], r["t"], r["mode"]) == (n, t, mode)}
            heading = label if report["model"] != "dual_denoising" else f"{label} N={n} t={t} {mode}"
            columns.append((f"{heading} ({name})", rows))
    attack_rows = [("ifgm", e) for e in eps_list] + [("pgd", e) for e in eps_list] + [("cw", None)]
    attack_rows = [a for a in attack_rows if any(a in rows for _, rows in columns)]
    title = lambda a, e: ("C&W" if a == "cw" else a.upper()) + (f" {e:g}" if e is not None else "")
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    lines = [f"Robust zero-shot top-1 (%) on {dataset}, targeted attacks ({spread}); one column per model", "",
             "| attack | " + " | ".join(h for h, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    first = lambda rows: next(iter(rows.values()))
    lines.append("| clean | " + " | ".join(pct(first(rows)["clean_acc"], std(first(rows), "clean_acc"))
                                          for _, rows in columns) + " |")
    for a, e in attack_rows:
        lines.append(f"| {title(a, e)} | " + " | ".join(
            pct(rows[a, e]["robust_acc"], std(rows[a, e], "robust_acc")) if (a, e) in rows else "" for _, rows in columns)
            + " |")
    run_folder.write_text(path, "\n".join(lines) + "\n")
