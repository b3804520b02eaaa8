"""Certified robustness by randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019) for the zero-shot
classifier: `configs/certify.py:DATASET`.

Base classifier f(x~): the zero-shot prediction (argmax of the cosine logits of ratio * text + image) of one
noisy path on x~ = x + eps, eps ~ N(0, sigma^2 I) over all N x 3 coordinates, with FPS and kNN run on x~
itself, the network's time input t' = t // Delta for sigma = sigma_t, and fresh feature noise per draw.
(Eq. 4's inference runs FPS on the clean cloud, which makes f depend on x directly and voids the
certificate.) The smoothed classifier g(x) = argmax_c P(f(x + eps) = c) is certified by CERTIFY: n0
selection draws pick c_A, n estimation draws bound p_A from below (one-sided Clopper-Pearson at 1 - alpha),
radius R = sigma * Phi^-1(p_A_lower), abstaining when p_A_lower < 1/2. With N > 1 paths, f averages N noisy
copies' features before the argmax: that is a base classifier of the N copies, certified in the product
space with radius R, so the radius in x is R / sqrt(N).

The algorithms (`certify`, `predict`, `lower_confidence_bound`) take a sampler `counts_fn(num) -> int[B, C]`
(class counts of `num` draws for each of B inputs), so they are tested on base classifiers whose p_A is known
in closed form.
"""
from __future__ import annotations

import hashlib
import json
import math
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import errors
from ddjax import progress
from ddjax import robustness
from ddjax import run_folder
from ddjax import zeroshot

ABSTAIN = -1
RADII = tuple(round(0.05 * i, 2) for i in range(41))  # certified accuracy reported at 0, 0.05, ..., 2.0


# -------------------------------------------------------------------------------------------- statistics

def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from `count` successes in `n` trials: the p
    with P(Binomial(n, p) >= count) = alpha, i.e. the alpha quantile of Beta(count, n - count + 1); 0 when
    count = 0. Found by bisection on the regularised incomplete beta function."""
    from scipy.special import betainc
    if not 0 <= count <= n or n < 1:
        raise ValueError(f"need 0 <= count <= n and n >= 1, got count={count}, n={n}")
    if count == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(100):  # betainc(a, b, p) is the Beta(a, b) CDF, increasing in p
        mid = 0.5 * (lo + hi)
        if betainc(count, n - count + 1, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def certify(counts_fn: Callable[[int], np.ndarray], *, n0: int, n: int, alpha: float, sigma: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CERTIFY for B inputs at once: (prediction int[B] with ABSTAIN = -1, radius f32[B], estimation counts
    int[B, C]). Selection and estimation use separate draws."""
    from scipy.stats import norm
    selection = np.asarray(counts_fn(n0))  # (B, C)
    top = selection.argmax(axis=1)  # (B,)
    counts = np.asarray(counts_fn(n))  # (B, C)
    predictions, radii = np.full(len(top), ABSTAIN), np.zeros(len(top))
    for b, c in enumerate(top):
        p_lower = lower_confidence_bound(int(counts[b, c]), n, alpha)
        if p_lower >= 0.5:
            predictions[b], radii[b] = c, sigma * norm.ppf(p_lower)
    return predictions, radii, counts


def predict(counts_fn: Callable[[int], np.ndarray], *, n: int, alpha: float) -> np.ndarray:
    """PREDICT for B inputs: the top class of n draws, or ABSTAIN unless a two-sided binomial test rejects
    'the top two classes are equally likely' at level alpha. int[B]."""
    from scipy.stats import binomtest
    counts = np.asarray(counts_fn(n))  # (B, C)
    order = np.argsort(-counts, axis=1, kind="stable")
    out = np.full(len(counts), ABSTAIN)
    for b in range(len(counts)):
        n_a, n_b = int(counts[b, order[b, 0]]), int(counts[b, order[b, 1]]) if counts.shape[1] > 1 else 0
        if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
            out[b] = order[b, 0]
    return out


# ------------------------------------------------------------------------------------ the smoothed model

def make_counts_fn(model_config, variables, text_features, *, ratio: float, t: int, sigma: float, num_paths: int,
                   draws_per_step: int) -> Callable:
    """counts(points f32[B, N, 3], keys [B], num) -> int[B, C]: the base classifier's votes over `num` draws
    per shape, shape b's draws from keys[b] alone (so a shape's counts do not depend on its batch)."""
    infer, _ = zeroshot.make_inference(model_config)
    on_noisy = infer.on_noisy
    text = jnp.asarray(text_features)
    types = tuple(model_config.feature_types)
    num_classes = text.shape[0]
    m = draws_per_step

    def votes(variables, cloud, key, valid):  # cloud (N, 3); m draws of which the first `valid` count
        k_points, k_feat = jax.random.split(key)
        eps = jax.random.normal(k_points, (m, num_paths, *cloud.shape))  # (m, P, N, 3)
        noisy = (cloud[None, None] + sigma * eps).reshape(m * num_paths, *cloud.shape)  # (m * P, N, 3)
        feats = on_noisy(variables, noisy, k_feat, t)  # (m * P, k, D), fresh feature noise per draw and path
        feats = feats.reshape(m, num_paths, *feats.shape[1:]).mean(axis=1)  # (m, k, D): the N-path average
        logits = zeroshot.cosine_logits(zeroshot.ensemble(feats, ratio, types), text)  # (m, C)
        hits = jax.nn.one_hot(jnp.argmax(logits, axis=1), num_classes, dtype=jnp.int32)  # (m, C)
        return jnp.sum(hits * (jnp.arange(m) < valid)[:, None], axis=0)  # (C,)

    step = jax.jit(jax.vmap(votes, in_axes=(None, 0, 0, None)))  # shapes vmapped: (B, C)

    def counts(points, keys, num: int) -> np.ndarray:
        total = np.zeros((len(points), num_classes), np.int64)
        points = jnp.asarray(points)
        for i in range(-(-num // m)):
            step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
            total += np.asarray(step(variables, points, step_keys, min(m, num - i * m)))
        return total

    return counts


# ------------------------------------------------------------------------------------------------- job

def parse_ts(config, run_config: dict) -> list[int]:
    try:
        ts = [int(v) for v in str(config.t_values).split(",") if v.strip()]
    except ValueError:
        raise errors.ConfigError("t_values", f"{config.t_values!r} is not a comma-separated list of integers",
                                 "e.g. --config.t_values=300,600,900") from None
    steps = run_config["model"]["num_timesteps"]
    if not ts or any(not 1 <= t < steps for t in ts):
        raise errors.ConfigError("t_values", f"{ts}: every t must be in [1, {steps}) (t = 0 is sigma = 0: nothing "
                                 "to certify)")
    return ts


def check_config(config, workdir: str | None) -> tuple[dict, list[int]]:
    errors.require_workdir(workdir, "certify", "certify.tsv, certify.json and certify.png")
    run_config = zeroshot.check_evaluation(config)
    if zeroshot.is_baseline(run_config):
        raise errors.ConfigError("checkpoint", f"{config.checkpoint} is a converted {run_config['model']['kind']} "
                                 "model: certification needs Dual Denoising's noise schedule (sigma_t)",
                                 "pass a Dual Denoising run")
    ts = parse_ts(config, run_config)
    errors.check_int(config, "num_paths", 1)
    errors.check_int(config, "n0", 1)
    errors.check_int(config, "n", 1)
    errors.check_number(config, "alpha", 0.0, 0.5, low_open=True)
    errors.check_int(config, "draws_per_step", 1)
    errors.check_int(config, "batch_shapes", 1)
    errors.check_int(config, "max_shapes", 0)
    errors.check_int(config, "skip", 1)
    errors.check_int(config, "seed")
    return run_config, ts


def sigma_of(model_config, t: int) -> float:
    return float(model_config.noise_scale) * t / (model_config.num_timesteps - 1)


def evaluation_shapes(builder, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index in the test split int[M], points f32[M, N, 3], labels int[M]): every `skip`-th test shape, at
    most `max_shapes`, prepared as the zero-shot job prepares them."""
    from ddjax.data import pipelines
    points, labels = [], []
    for batch in pipelines.zeroshot_batches(builder.as_data_source("test"), npoints=config.npoints,
                                            point_all=config.point_all, batch_size=64, seed=config.seed,
                                            normalize=config.normalize):
        points.append(np.asarray(batch["points"]))
        labels.append(np.asarray(batch["label"]))
    points, labels = np.concatenate(points), np.concatenate(labels)
    index = np.arange(0, len(labels), config.skip)
    if config.max_shapes:
        index = index[:config.max_shapes]
    return index, points[index], labels[index]


def summarize(rows: list[dict], sigma: float, t: int) -> dict:
    """Per sigma: certified accuracy at RADII (correct and radius >= r) and on a fine grid up to the largest
    radius (`curve`, the plot), the average certified radius (radius
    of correct predictions, 0 otherwise), the abstention rate and g's clean accuracy (the top class of the
    n estimation draws, no abstention)."""
    radius = np.array([r["radius"] for r in rows])
    correct = np.array([r["correct"] for r in rows], bool)
    grid = np.linspace(0.0, 1.1 * max(radius.max(initial=0.0), 0.01), 201)  # the plotted curve
    return {"t": t, "sigma": sigma, "num_shapes": len(rows),
            "certified_accuracy": {f"{r:g}": float(np.mean(correct & (radius >= r))) for r in RADII},
            "curve": {"radius": grid.tolist(), "accuracy": [float(np.mean(correct & (radius >= r))) for r in grid]},
            "average_certified_radius": float(np.mean(np.where(correct, radius, 0.0))),
            "abstention_rate": float(np.mean([r["predict"] == ABSTAIN for r in rows])),
            "clean_accuracy": float(np.mean([r["top_class"] == r["label"] for r in rows]))}


def run(config, workdir: str | None) -> dict:
    """The certify job: certify.tsv, certify.json and certify.png (certified accuracy against radius)."""
    from ddjax import figures, metrics
    run_config, ts = check_config(config, workdir)
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ev = zeroshot.load_evaluation(config, out)
    index, points, labels = evaluation_shapes(ev.builder, config)
    digest = hashlib.sha1(json.dumps([config.to_dict(), ev.step], sort_keys=True, default=str).encode()).hexdigest()
    done = robustness.Progress(out / "certify_progress.jsonl", digest[:16])  # unit f"t={t},idx={idx}" -> its row
    unit = lambda t, idx: f"t={t},idx={int(idx)}"
    todo = [(t, i) for t in ts for i in range(len(index)) if unit(t, index[i]) not in done.done]
    draws = config.n0 + config.n
    print(f"certify {config.name}: {len(index)} test shapes x {len(ts)} noise levels, n0={config.n0}, n={config.n}, "
          f"alpha={config.alpha}, N={config.num_paths} ({draws * config.num_paths} forward passes per shape and "
          f"level); {len(ts) * len(index) - len(todo)} done earlier", flush=True)
    bar = progress.bar(total=len(todo) * draws, desc=f"certify {config.name}", unit="draw", first_step=True)
    for t in ts:
        sigma = sigma_of(ev.model_config, t)
        counts_fn = make_counts_fn(ev.model_config, ev.variables, ev.text_features, ratio=config.ratio, t=t,
                                   sigma=sigma, num_paths=config.num_paths, draws_per_step=config.draws_per_step)
        pending = [i for tt, i in todo if tt == t]
        for start in range(0, len(pending), config.batch_shapes):
            chunk = pending[start:start + config.batch_shapes]
            keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), t), int(index[i]))
                              for i in chunk])
            key_pair = jax.vmap(jax.random.split)(keys)  # (B, 2): selection and estimation draws
            began = time.perf_counter()
            calls = iter((key_pair[:, 0], key_pair[:, 1]))  # certify draws twice: selection, then estimation
            pred, radius, counts = certify(lambda num: counts_fn(points[chunk], next(calls), num), n0=config.n0,
                                           n=config.n, alpha=config.alpha, sigma=sigma)
            took = (time.perf_counter() - began) / len(chunk)
            for b, i in enumerate(chunk):
                done.add(unit(t, index[i]), {
                    "t": t, "sigma": sigma, "idx": int(index[i]), "label": int(labels[i]), "predict": int(pred[b]),
                    "radius": float(radius[b]) / math.sqrt(config.num_paths), "correct": int(pred[b] == labels[i]),
                    "time": round(took, 3), "top_class": int(counts[b].argmax())})
            bar.update(len(chunk) * draws)
    bar.close()
    rows = [done.done[unit(t, i)] for t in ts for i in index]
    lines = ["t\tsigma\tidx\tlabel\tpredict\tradius\tcorrect\ttime"] + [
        f"{r['t']}\t{r['sigma']:.6g}\t{r['idx']}\t{r['label']}\t{r['predict']}\t{r['radius']:.6g}\t{r['correct']}"
        f"\t{r['time']:.3f}" for r in rows]
    run_folder.write_text(out / "certify.tsv", "\n".join(lines) + "\n")
    per_sigma = [summarize([r for r in rows if r["t"] == t], sigma_of(ev.model_config, t), t) for t in ts]
    report = {"dataset": config.name, "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
              "checkpoint_step": ev.step, "N": config.num_paths, "n0": config.n0, "n": config.n,
              "alpha": config.alpha, "ratio": config.ratio, "num_points": int(points.shape[1]),
              "radius_norm": "L2 over all N x 3 coordinates of the evaluated cloud", "per_sigma": per_sigma}
    metrics.write_json(out / "certify.json", report)
    figures.save(figures.certified_accuracy_figure(per_sigma, title=f"{config.name}: certified accuracy "
                                                   f"(N={config.num_paths}, n={config.n}, alpha={config.alpha:g})"),
                 out / "certify.png")
    for s in per_sigma:
        print(f"certify {config.name}: t={s['t']} sigma={s['sigma']:.4f}: certified accuracy at r=0 "
              f"{s['certified_accuracy']['0']:.3f}, at 0.05 {s['certified_accuracy']['0.05']:.3f}; average radius "
              f"{s['average_certified_radius']:.4f}; abstained {s['abstention_rate']:.3f}; g clean {s['clean_accuracy']:.3f}")
    print(f"certify {config.name}: wrote certify.tsv, certify.json, certify.png/.pdf in {out}")
    return report
