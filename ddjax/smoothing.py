"""Certified robustness by randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019) for the
zero-shot classifier; the certify job (configs/certify.py, ddjax/jobs/certify.py) runs it.

Base classifier f(x~): the zero-shot prediction (argmax of the cosine logits of ratio * text +
image) of one noisy path on x~ = x + eps, eps ~ N(0, sigma^2 I) over all N x 3 coordinates, with FPS
and kNN run on x~ itself, the network's time input t' = t // Delta for sigma = sigma_t, and fresh
feature noise per draw. (Eq. 4's inference runs FPS on the clean cloud, which makes f depend on x
directly and voids the certificate.) The smoothed classifier g(x) = argmax_c P(f(x + eps) = c) is
certified by CERTIFY: n0 selection draws pick c_A, n estimation draws bound p_A from below
(one-sided Clopper-Pearson at 1 - alpha), radius R = sigma * Phi^-1(p_A_lower), abstaining when
p_A_lower < 1/2. With N > 1 paths, f averages N noisy copies' features before the argmax: that is a
base classifier of the N copies, certified in the product space with radius R, so the radius in x is
R / sqrt(N).

The algorithms (`certify`, `predict`, `lower_confidence_bound`) take a sampler `counts_fn(num) ->
int[B, C]` (class counts of `num` draws for each of B inputs), so they are tested on base
classifiers whose p_A is known in closed form.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import betainc
from scipy.stats import binomtest, norm

from ddjax import scoring
from ddjax.models import registry

ABSTAIN = -1
BAD_CODES = (
    scoring.BAD_FEATURES,
    scoring.BAD_ENSEMBLE,
)  # the statuses a draw's vote is refused for
# certified accuracy reported at 0, 0.05, ..., 2.0
RADII = tuple(round(0.05 * i, 2) for i in range(41))


# --------------------------------------------------------------------------------------------
# statistics


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on p from `count` successes in `n` trials:
    the p with P(Binomial(n, p) >= count) = alpha, i.e. the alpha quantile of Beta(count, n - count
    + 1); 0 when count = 0. Found by bisection on the regularised incomplete beta function."""
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


def certify(
    counts_fn: Callable[[int], np.ndarray], *, n0: int, n: int, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CERTIFY for B inputs at once: (prediction int[B] with ABSTAIN = -1, radius f32[B], estimation
    counts int[B, C]). Selection and estimation use separate draws."""
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
    """PREDICT for B inputs: the top class of n draws, or ABSTAIN unless a two-sided binomial test
    rejects 'the top two classes are equally likely' at level alpha. int[B]."""
    counts = np.asarray(counts_fn(n))  # (B, C)
    order = np.argsort(-counts, axis=1, kind="stable")
    out = np.full(len(counts), ABSTAIN)
    for b in range(len(counts)):
        n_a, n_b = (
            int(counts[b, order[b, 0]]),
            int(counts[b, order[b, 1]]) if counts.shape[1] > 1 else 0,
        )
        if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha:
            out[b] = order[b, 0]
    return out


# ----------------------------------------------------------------------------------- the smoothed
# model


def make_counts_fn(
    model_config,
    variables,
    text_features,
    *,
    ratio: float,
    t: int,
    sigma: float,
    num_paths: int,
    draws_per_step: int,
) -> Callable:
    """counts(points f32[B, N, 3], keys [B], num) -> int[B, C]: the base classifier's votes over
    `num` draws per shape, shape b's draws from keys[b] alone (so a shape's counts do not depend on
    its batch). A draw whose logits are not numbers is refused (scoring.NonFiniteError), never
    counted as a vote."""
    inference = registry.inference(model_config)
    on_noisy = inference.on_noisy
    text = jnp.asarray(text_features)
    types = inference.feature_types
    num_classes = text.shape[0]
    m = draws_per_step

    # cloud (N, 3); m draws of which the first `valid` count
    def votes(variables, cloud, key, valid):
        k_points, k_feat = jax.random.split(key)
        eps = jax.random.normal(k_points, (m, num_paths, *cloud.shape))  # (m, P, N, 3)
        # (m * P, N, 3)
        noisy = (cloud[None, None] + sigma * eps).reshape(m * num_paths, *cloud.shape)
        # (m * P, k, D), fresh feature noise per draw and path
        feats = on_noisy(variables, noisy, k_feat, t)
        # (m, k, D): the N-path average
        feats = feats.reshape(m, num_paths, *feats.shape[1:]).mean(axis=1)
        logits, status = scoring.point_logits(feats, ratio, text, types)  # (m, C), (m,)
        counted = jnp.arange(m) < valid  # (m,)
        hits = jax.nn.one_hot(jnp.argmax(logits, axis=1), num_classes, dtype=jnp.int32)  # (m, C)
        bad = [jnp.sum(counted & (status == code)) for code in BAD_CODES]
        return jnp.sum(hits * counted[:, None], axis=0), jnp.stack(bad)  # (C,), (2,)

    step = jax.jit(jax.vmap(votes, in_axes=(None, 0, 0, None)))  # shapes vmapped: (B, C), (B, 2)

    def counts(points, keys, num: int) -> np.ndarray:
        total = np.zeros((len(points), num_classes), np.int64)
        bad = np.zeros(len(BAD_CODES), np.int64)  # draws whose logits were not numbers, by cause
        points = jnp.asarray(points)
        for i in range(-(-num // m)):
            step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
            hits, bad_i = step(variables, points, step_keys, min(m, num - i * m))
            total += np.asarray(hits)
            bad += np.asarray(bad_i).sum(axis=0)
        scoring.require_finite_counts(
            *map(int, bad), len(points) * num, ratio=ratio, ratio_key="ratio", clouds="noisy draws"
        )
        return total

    return counts


def sigma_of(model_config, t: int) -> float:
    return float(model_config.noise_scale) * t / (model_config.num_timesteps - 1)


def summarize(rows: list[dict], sigma: float, t: int) -> dict:
    """Per sigma: certified accuracy at RADII (correct and radius >= r) and on a fine grid up to the
    largest radius (`curve`, the plot), the average certified radius (radius of correct predictions,
    0 otherwise), the abstention rate and g's clean accuracy (the top class of the n estimation
    draws, no abstention)."""
    radius = np.array([r["radius"] for r in rows])
    correct = np.array([r["correct"] for r in rows], bool)
    grid = np.linspace(0.0, 1.1 * max(radius.max(initial=0.0), 0.01), 201)  # the plotted curve
    return {
        "t": t,
        "sigma": sigma,
        "num_shapes": len(rows),
        "certified_accuracy": {f"{r:g}": float(np.mean(correct & (radius >= r))) for r in RADII},
        "curve": {
            "radius": grid.tolist(),
            "accuracy": [float(np.mean(correct & (radius >= r))) for r in grid],
        },
        "average_certified_radius": float(np.mean(np.where(correct, radius, 0.0))),
        "abstention_rate": float(np.mean([r["predict"] == ABSTAIN for r in rows])),
        "clean_accuracy": float(np.mean([r["top_class"] == r["label"] for r in rows])),
    }
