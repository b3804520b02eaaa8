"""The robustness evaluation protocol (the attack job, ddjax/jobs/attack.py, and benchmarks run it):
robust zero-shot accuracy under targeted IFGM, PGD and C&W (paper Table 2 and Figure 8, the
adversarial half of Table 5); the algorithms are ddjax/attacks.py.

Protocol, per (N, t) setting, gradient mode, attack and evaluation seed r:
  * evaluation key r: the model's noise for every *scored* forward pass; batch i uses
    fold_in(fold_in(fold_in(key(seed), r), 0), i). Clean logits with it give the clean accuracy and
    the target (the second-highest clean logit), and the adversarial clouds are scored with the same
    key.
  * attack key r: fold_in(fold_in(fold_in(key(seed), r), 1), i); the attack's own forward passes
    draw their noise from it (fresh per step, see ddjax/attacks.py).
  * the attack itself decides which iterate to return with its own multi-draw check (`success_draws`
    fresh draws, ddjax/attacks.py); attack_success_rate is the share it believed reached the target.
  * robust accuracy = accuracy against the true label on the adversarial clouds; success rate =
    share predicted as the target; kept_correct = share of the clean-correct clouds still correct.
    Each is taken over the test set, then reported as the mean (robust accuracy also the standard
    deviation, numpy's, ddof = 0) over the R seeds; distortions are means over shapes and seeds, and
    `l2_distribution` gives the quantiles of the L2 distortion of the clouds the attack believed
    successful (near_clean counts those within 1e-4 of the clean cloud).
  * config.fixed_noise: every forward pass (attack, check, scoring) uses one fixed key, a
    deterministic model; otherwise even N = 1, t = 0 is random (the feature branch's input noise is
    drawn).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import attacks, config_checks, distributed, errors, scoring
from ddjax.data import pipelines
from ddjax.models import registry


def parse_settings(text: str, field: str = "settings") -> list[tuple[int, int]]:
    """'8:100,16:500' -> [(8, 100), (16, 500)] (N noise paths, noise step t)."""
    settings = []
    for item in str(text).split(","):
        n, _, t = item.partition(":")
        try:
            settings.append((int(n), int(t)))
        except ValueError:
            raise errors.ConfigError(
                field, f"{item!r} is not N:t", "e.g. --config.settings=8:100,16:500"
            ) from None
    return config_checks.refuse_repeats(field, settings)


def load_batches(builder, config) -> list[dict]:
    """The test split (its first config.max_shapes shapes) as fixed-size batches {'points', 'label',
    'valid'} (`pipelines.padded_batches`)."""
    batches = pipelines.padded_batches(
        builder.as_data_source("test"),
        npoints=config.npoints,
        point_all=config.point_all,
        batch_size=config.batch_size,
        seed=config.seed,
        normalize=config.normalize,
        max_shapes=config.max_shapes,
    )
    if not batches:
        raise errors.ConfigError("dataset", f"the test split of {config.dataset} is empty")
    return batches


def make_attack_step(
    logits_fn,
    attack: str,
    *,
    mode: str,
    eot_samples: int,
    draws_per_step,
    steps: int,
    curve_every: int,
    cw_config,
    success_draws: int = 8,
):
    """A jitted (points, eval_key, attack_key, eps f32[E]) -> per-cloud results for one batch.

    Returns {'clean_pred', 'target': int[B], 'pred': int[E, B] (E = 1 for C&W), 'reached': bool[E,
    B] (the attack's own multi-draw verdict), 'linf', 'l2', 'chamfer': f32[E, B], 'curve': int[E, S,
    B] predictions every curve_every steps (IFGM / PGD with curve_every), 'clean_finite': bool[B],
    'adversarial_finite': bool[E, B] (the logits behind the predictions are finite)}.
    """

    def fn(points, eval_key, attack_key, eps):
        clean_logits = logits_fn(points, eval_key)
        target = attacks.second_best(clean_logits)
        curve = None
        if attack in ("ifgm", "pgd"):
            run = lambda e: attacks.pgd(
                logits_fn,
                points,
                target,
                attack_key,
                eps=e,
                steps=steps,
                random_start=attack == "pgd",
                mode=mode,
                eot_samples=eot_samples,
                draws_per_step=draws_per_step,
                curve_every=curve_every,
                eval_key=eval_key,
                success_draws=success_draws,
            )
            # (E, B, N, 3), {'reached': (E, B), 'curve': (E, S, B) or None}
            adv, info = jax.vmap(run)(eps)
            reached, curve = info["reached"], info["curve"]
        else:
            adv, history = attacks.cw(
                logits_fn,
                points,
                target,
                attack_key,
                search_steps=cw_config.search_steps,
                iterations=cw_config.iterations,
                learning_rate=cw_config.learning_rate,
                initial_lambda=cw_config.initial_lambda,
                lambda_bounds=(cw_config.lower, cw_config.upper),
                mode=mode,
                eot_samples=eot_samples,
                draws_per_step=draws_per_step,
                success_draws=success_draws,
            )
            # (1, B, N, 3), (1, B)
            adv, reached = adv[None], jnp.any(history["reached"], axis=0)[None]
        adv_logits = jax.vmap(lambda x: logits_fn(x, eval_key))(adv)  # (E, B, C)
        out = {
            "clean_finite": jnp.isfinite(clean_logits).all(axis=-1),
            "adversarial_finite": jnp.isfinite(adv_logits).all(axis=-1),
            "clean_pred": jnp.argmax(clean_logits, axis=1),
            "target": target,
            "pred": jnp.argmax(adv_logits, axis=-1),  # (E, B)
            "reached": reached,
            "adversarial": adv,
            **jax.vmap(lambda x: attacks.distortion(x, points))(adv),
        }
        if curve is not None:
            out["curve"] = curve
        return out

    return jax.jit(fn)


def seed_keys(seed: int, r: int, i: int) -> tuple[jax.Array, jax.Array]:
    """(evaluation key, attack key) of seed r and batch i."""
    base = jax.random.fold_in(jax.random.key(seed), r)
    return jax.random.fold_in(jax.random.fold_in(base, 0), i), jax.random.fold_in(
        jax.random.fold_in(base, 1), i
    )


def run_unit(
    step_fn,
    batches,
    eps_list,
    *,
    seeds: int,
    seed: int,
    examples: dict | None = None,
    on_batch=None,
) -> dict:
    """Runs one attack over every batch and seed; returns per-seed dataset-level numbers. The (seed,
    batch) pairs are dealt out over every device of every process (`distributed.run_items`: each
    batch whole on one device, with keys that depend only on the seed and the batch index, so the
    numbers do not depend on the process or device count) and gathered into every process.
    `examples` (a dict) receives, in process 0, the first EXAMPLES shapes of seed 0's first batch:
    clean and adversarial clouds (f32[S, N, 3] and f32[E, S, N, 3]), labels, targets and adversarial
    predictions (int[E, S]). `on_batch()` is called after each of this process's batches (the job's
    progress line)."""
    eps = jnp.asarray(eps_list, jnp.float32)

    def compute(item: int, device):
        r, i = divmod(item, len(batches))
        eval_key, attack_key = seed_keys(seed, r, i)
        out = step_fn(jax.device_put(batches[i]["points"], device), eval_key, attack_key, eps)
        adversarial = out.pop("adversarial")  # (E, B, N, 3)
        if examples is not None and item == 0:  # item 0 runs in process 0 (on its first device)
            k = min(EXAMPLES, int(batches[0]["valid"].sum()))
            examples.update(
                clean=batches[0]["points"][:k],
                adversarial=np.asarray(adversarial[:, :k]),
                label=batches[0]["label"][:k],
                target=np.asarray(out["target"][:k]),
                pred=np.asarray(out["pred"][:, :k]),
            )
        return out

    outs = distributed.run_items(seeds * len(batches), compute, on_item=on_batch)
    per_seed = []
    for r in range(seeds):
        parts = []
        for i, batch in enumerate(batches):
            out, v = outs[r * len(batches) + i], batch["valid"]
            # batch last
            parts.append({k: a[..., v] for k, a in out.items()} | {"label": batch["label"][v]})
        cat = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
        label = cat["label"]
        correct = cat["clean_pred"] == label
        seed_result = {
            # clouds whose predictions came from logits that are not numbers (`check_finite`)
            "non_finite": {
                "clean": int(np.sum(~cat["clean_finite"])),
                "adversarial": int(np.sum(~cat["adversarial_finite"])),
                "of": int(len(label)),
            },
            "clean_acc": float(np.mean(correct)),
            # Of the clean-correct clouds, the share still correct (the targeted protocol also
            # "fixes" wrong predictions whose runner-up is the true label, which robust_acc counts
            # as correct).
            "kept_correct": np.sum((cat["pred"] == label) & correct, axis=-1)
            / max(int(correct.sum()), 1),
            "robust_acc": np.mean(cat["pred"] == label, axis=-1),  # (E,)
            "success_rate": np.mean(cat["pred"] == cat["target"], axis=-1),
            "attack_success_rate": np.mean(cat["reached"], axis=-1),
            # Per epsilon, the L2 distortions of the clouds the attack believed successful (for
            # quantiles).
            "l2_reached": [cat["l2"][e][cat["reached"][e]].tolist() for e in range(len(cat["l2"]))],
            **{k: np.mean(cat[k], axis=-1) for k in ("linf", "l2", "chamfer")},
        }
        if "curve" in cat:
            seed_result["curve"] = np.mean(cat["curve"] == label, axis=-1)  # (E, S)
        per_seed.append(seed_result)
    return per_seed


def check_finite(per_seed: list[dict], unit: str, diagnose) -> None:
    """NonFiniteError unless every prediction of `run_unit`'s output came from finite logits: the
    clean ones explained by `diagnose()` (scoring.require_finite on the clean clouds, naming the
    checkpoint or the ratio), the adversarial ones as the attack's."""
    bad = [s["non_finite"] for s in per_seed]
    if any(b["clean"] for b in bad):
        diagnose()  # raises with the cause
    if any(b["clean"] or b["adversarial"] for b in bad):
        worst = max(bad, key=lambda b: (b["clean"], b["adversarial"]))
        raise scoring.NonFiniteError(
            f"attack unit {unit}",
            f"the logits of {worst['clean']} clean and {worst['adversarial']} adversarial of "
            f"{worst['of']} clouds (x eps) are NaN or infinite: the attack moved points where the "
            "model's output is not a number",
            "report it with the command: no robust accuracy is written from such clouds",
        )


NEAR_CLEAN_L2 = 1e-4
EXAMPLES = 3  # shapes drawn in adversarial_examples.png


def l2_distribution(values: list[float]) -> dict:
    """Quantiles of L2 distortions, and how many are within NEAR_CLEAN_L2 of the clean cloud."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"count": 0, "near_clean": 0}
    q = np.quantile(v, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {
        "count": int(len(v)),
        "near_clean": int(np.sum(v < NEAR_CLEAN_L2)),
        **{name: float(x) for name, x in zip(("min", "p10", "p25", "p50", "p75", "p90", "max"), q)},
    }


def summarize(
    per_seed: list[dict], *, attack: str, mode: str, n: int, t: int, eps_list, curve_every: int
) -> dict:
    """Result rows (one per epsilon; C&W: one with eps None) and curves from `run_unit`'s output."""
    stack = lambda k: np.stack([s[k] for s in per_seed])  # (R, E)
    clean = np.array([s["clean_acc"] for s in per_seed])
    rows, curves = [], []
    eps_values = list(eps_list) if attack != "cw" else [None]
    for e, eps in enumerate(eps_values):
        rows.append(
            {
                "attack": attack,
                "eps": eps,
                "mode": mode,
                "num_paths": n,
                "t": t,
                "robust_acc": float(stack("robust_acc")[:, e].mean()),
                "robust_acc_std": float(stack("robust_acc")[:, e].std()),
                "success_rate": float(stack("success_rate")[:, e].mean()),
                "attack_success_rate": float(stack("attack_success_rate")[:, e].mean()),
                "kept_correct": float(stack("kept_correct")[:, e].mean()),
                "l2_distribution": l2_distribution(
                    [v for s in per_seed for v in s["l2_reached"][e]]
                ),
                "linf": float(stack("linf")[:, e].mean()),
                "l2": float(stack("l2")[:, e].mean()),
                "chamfer": float(stack("chamfer")[:, e].mean()),
                "clean_acc": float(clean.mean()),
                "clean_acc_std": float(clean.std()),
            }
        )
        if "curve" in per_seed[0]:
            acc = stack("curve")[:, e]  # (R, S)
            curves.append(
                {
                    "attack": attack,
                    "eps": eps,
                    "mode": mode,
                    "num_paths": n,
                    "t": t,
                    "steps": [j * curve_every for j in range(acc.shape[1])],
                    "acc": acc.mean(0).tolist(),
                    "acc_std": acc.std(0).tolist(),
                }
            )
    return {"rows": rows, "curves": curves}


def build_logits(model_config, variables, text_features, ratio, n: int, t: int, fixed_key=None):
    """The model's attack logits at (num_paths n, t); with `fixed_key`, every forward pass uses that
    key."""
    inference = registry.inference(model_config)
    fn = attacks.zero_shot_logits(
        inference.infer,
        variables,
        jnp.asarray(text_features),
        ratio=ratio,
        t=t,
        num_paths=n,
        feature_types=inference.feature_types,
    )
    return fn if fixed_key is None else attacks.fixed_noise(fn, fixed_key)
