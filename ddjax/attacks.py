"""Targeted adversarial attacks on zero-shot classification (paper section 4.3 and Appendix A; spec
section 6.3 and decision D9): IFGM, PGD and C&W, each in two gradient modes.

Every attack is written against a *logit function* `logits_fn(points f32[B, N, 3], key) -> f32[B, C]`,
which may be random (the Dual Denoising model draws point and feature noise from `key`). For the model,
`zero_shot_logits` builds it: 100 x the cosine between the N-path-averaged point feature and each class's
text feature (CLIP's logit scale, the paper's Eq. 1), with FPS and kNN recomputed on the perturbed cloud
in every forward pass and gradients reaching the coordinates through the gathers (spec D4).

Gradient modes:
  'paper'  one forward pass per gradient, with a fresh key each time (the model as it runs; the paper's
           setting as far as it says).
  'eot'    expectation over transformation (Athalye et al. 2018): each gradient is the mean over M forward
           passes with independent keys; the adaptive attack on a randomised model.
Draw j of a gradient step uses `fold_in(step_key, j)`; the paper mode's one draw is j = 0, so 'eot' with
M = 1 is the paper mode.

All loops are `lax` loops over the whole batch; `pgd` takes a traced epsilon, so several epsilons run in
one call under `jax.vmap`.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ddjax import losses

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]
ATTACKS = ("ifgm", "pgd", "cw")
MODES = ("paper", "eot")
LOGIT_SCALE = 100.0  # CLIP's: logits = 100 x cosine for every attack (spec D9)


def second_best(logits: jax.Array) -> jax.Array:
    """The attack target: the class with the second-highest logit, int32[B] (ties to the lower index)."""
    return jax.lax.top_k(logits, 2)[1][:, 1]


def targeted_cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Cross-entropy of the target class, f32[B]; IFGM/PGD descend it."""
    picked = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def cw_margin(logits: jax.Array, target: jax.Array) -> jax.Array:
    """C&W's targeted margin max(max_{i != target} Z_i - Z_target, 0), f32[B]: 0 once the target leads."""
    is_target = jax.nn.one_hot(target, logits.shape[1], dtype=bool)  # (B, C)
    picked = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
    other = jnp.max(jnp.where(is_target, -jnp.inf, logits), axis=1)
    return jnp.maximum(other - picked, 0.0)


def l2_norm(delta: jax.Array) -> jax.Array:
    """||delta||_2 per cloud, f32[B], over all N x 3 coordinates (differentiable at 0)."""
    return jnp.sqrt(jnp.sum(delta * delta, axis=(1, 2)) + 1e-24)


def distortion(adversarial: jax.Array, clean: jax.Array) -> dict:
    """Per-cloud distortion of adversarial against clean, each f32[B]: 'linf' (max |coordinate change|),
    'l2' (over all coordinates) and 'chamfer' (Chamfer-L2 between the two clouds: mean squared
    nearest-neighbour distance both ways, as the training loss)."""
    delta = adversarial - clean
    d1, d2 = losses.chamfer_l2_sides(adversarial, clean)  # (B, N), (B, N)
    return {"linf": jnp.max(jnp.abs(delta), axis=(1, 2)), "l2": jnp.sqrt(jnp.sum(delta * delta, axis=(1, 2))),
            "chamfer": jnp.mean(d1, axis=1) + jnp.mean(d2, axis=1)}


def check_mode(mode: str, eot_samples: int) -> None:
    if mode not in MODES:
        raise ValueError(f"attack mode must be one of {MODES}, got {mode!r}")
    if not isinstance(eot_samples, int) or eot_samples < 1:
        raise ValueError(f"eot_samples must be a positive int, got {eot_samples!r}")


def gradient(loss_fn: Callable, x: jax.Array, key: jax.Array, *, mode: str = "paper", eot_samples: int = 1,
             draws_per_step: int | None = None) -> tuple[jax.Array, jax.Array]:
    """(d sum_b loss_b / dx, logits) for `loss_fn(x, key) -> (loss f32[B], logits f32[B, C])`.

    'paper': one draw with fold_in(key, 0). 'eot': the mean of the gradients and of the logits over
    draws fold_in(key, j), j < eot_samples, evaluated `draws_per_step` at a time (None: all in one vmap).
    Clouds are independent (no batch statistics at evaluation), so the summed loss gives per-cloud gradients.
    """
    check_mode(mode, eot_samples)
    summed = lambda x, k: (lambda loss, logits: (jnp.sum(loss), logits))(*loss_fn(x, k))
    grad_fn = jax.grad(summed, has_aux=True)
    if mode == "paper":
        return grad_fn(x, jax.random.fold_in(key, 0))
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(eot_samples))  # (M,)
    grads, logits = jax.lax.map(lambda k: grad_fn(x, k), keys,
                                batch_size=draws_per_step or eot_samples)  # (M, B, N, 3), (M, B, C)
    return jnp.mean(grads, axis=0), jnp.mean(logits, axis=0)


def pgd(logits_fn: LogitsFn, points: jax.Array, target: jax.Array, key: jax.Array, *, eps, steps: int = 50,
        step_size=None, random_start=True, mode: str = "paper", eot_samples: int = 1,
        draws_per_step: int | None = None, curve_every: int = 0, eval_key: jax.Array | None = None):
    """Targeted L-infinity PGD (random_start=True, Madry et al.) or IFGM (random_start=False, from the clean
    cloud): x <- Proj_{||x - points||_inf <= eps}(x - step_size * sign(grad CE(logits(x), target))).

    points f32[B, N, 3], target int[B]; eps and step_size (default eps / 10) may be traced scalars (vmap
    over eps), and so may random_start. Step i draws its noise from fold_in(key, i + 1) (key 0 is the
    random start). No clipping beyond the ball.

    Returns the adversarial clouds f32[B, N, 3] and, with curve_every = k > 0, the predictions
    int32[steps // k + 1, B] of logits_fn(x, eval_key) at steps 0, k, 2k, ..., steps (else None).
    """
    check_mode(mode, eot_samples)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pgd: steps must be a positive int, got {steps!r}")
    if curve_every and (steps % curve_every or eval_key is None):
        raise ValueError(f"pgd: curve_every={curve_every} must divide steps={steps} and needs eval_key")
    eps = jnp.asarray(eps, points.dtype)
    step_size = eps / 10 if step_size is None else jnp.asarray(step_size, points.dtype)
    start = jax.random.uniform(jax.random.fold_in(key, 0), points.shape, points.dtype, -1.0, 1.0) * eps
    x0 = points + jnp.where(random_start, start, 0.0)

    def loss_fn(x, k):
        logits = logits_fn(x, k)
        return targeted_cross_entropy(logits, target), logits

    def step(i, x):
        g, _ = gradient(loss_fn, x, jax.random.fold_in(key, i + 1), mode=mode, eot_samples=eot_samples,
                        draws_per_step=draws_per_step)
        x = x - step_size * jnp.sign(g)
        return points + jnp.clip(x - points, -eps, eps)  # projection onto the ball

    if not curve_every:
        return jax.lax.fori_loop(0, steps, step, x0), None
    predict = lambda x: jnp.argmax(logits_fn(x, eval_key), axis=1).astype(jnp.int32)

    def block(x, b):
        x = jax.lax.fori_loop(b * curve_every, (b + 1) * curve_every, step, x)
        return x, predict(x)

    x, preds = jax.lax.scan(block, x0, jnp.arange(steps // curve_every))  # (steps // k, B)
    return x, jnp.concatenate([predict(x0)[None], preds], axis=0)


def cw(logits_fn: LogitsFn, points: jax.Array, target: jax.Array, key: jax.Array, *, search_steps: int = 10,
       iterations: int = 500, learning_rate: float = 0.01, initial_lambda: float = 10.0,
       lambda_bounds: tuple[float, float] = (0.0, 80.0), mode: str = "paper", eot_samples: int = 1,
       draws_per_step: int | None = None, init_scale: float = 1e-7):
    """C&W perturbation attack in Xiang et al. (2019)'s form: per cloud, minimise
    cw_margin(logits(points + delta), target) + lambda * ||delta||_2 with Adam, `iterations` steps per
    search step, then move lambda by binary search: after a search step in which the cloud reached the
    target (prediction == target at some iterate) lower = lambda, otherwise upper = lambda; next lambda =
    (lower + upper) / 2. Each search step restarts from delta ~ N(0, init_scale^2) with fresh Adam state.

    Every iterate is judged on the forward pass that computes its gradient; the returned cloud is the
    successful iterate with the smallest L2 distortion over all search steps, or the clean cloud if none
    succeeded. Returns (adversarial f32[B, N, 3], history) with history = {'lambda': f32[S, B] (the lambda
    each search step used), 'success': bool[S, B], 'best_l2': f32[S, B] (the smallest successful L2 within
    that step, inf if none)}.
    """
    check_mode(mode, eot_samples)
    if not isinstance(search_steps, int) or search_steps < 1 or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"cw: search_steps and iterations must be positive ints, got {search_steps!r}, "
                         f"{iterations!r}")
    lower0, upper0 = lambda_bounds
    if not lower0 <= initial_lambda <= upper0:
        raise ValueError(f"cw: initial_lambda={initial_lambda} is outside lambda_bounds={lambda_bounds}")
    b = points.shape[0]
    optimizer = optax.adam(learning_rate)

    def loss_fn(lam):
        def fn(delta, k):
            logits = logits_fn(points + delta, k)
            return cw_margin(logits, target) + lam * l2_norm(delta), logits
        return fn

    def search_step(carry, s):
        lam, lower, upper, best_adv, best_l2 = carry
        k_search = jax.random.fold_in(key, s)
        delta = init_scale * jax.random.normal(jax.random.fold_in(k_search, 0), points.shape, points.dtype)
        fn = loss_fn(lam)

        def iteration(i, state):
            delta, opt_state, best_adv, best_l2, step_best = state
            g, logits = gradient(fn, delta, jax.random.fold_in(k_search, i + 1), mode=mode,
                                 eot_samples=eot_samples, draws_per_step=draws_per_step)
            dist = l2_norm(delta)
            success = jnp.argmax(logits, axis=1) == target  # (B,)
            better = success & (dist < best_l2)
            best_adv = jnp.where(better[:, None, None], points + delta, best_adv)
            best_l2 = jnp.where(better, dist, best_l2)
            step_best = jnp.where(success, jnp.minimum(step_best, dist), step_best)
            updates, opt_state = optimizer.update(g, opt_state, delta)
            return optax.apply_updates(delta, updates), opt_state, best_adv, best_l2, step_best

        init = (delta, optimizer.init(delta), best_adv, best_l2, jnp.full((b,), jnp.inf, points.dtype))
        _, _, best_adv, best_l2, step_best = jax.lax.fori_loop(0, iterations, iteration, init)
        success = jnp.isfinite(step_best)
        lower = jnp.where(success, lam, lower)
        upper = jnp.where(success, upper, lam)
        history = {"lambda": lam, "success": success, "best_l2": step_best}
        return (0.5 * (lower + upper), lower, upper, best_adv, best_l2), history

    full = lambda v: jnp.full((b,), v, points.dtype)
    carry = (full(initial_lambda), full(lower0), full(upper0), points, full(jnp.inf))
    (_, _, _, best_adv, _), history = jax.lax.scan(search_step, carry, jnp.arange(search_steps))
    return best_adv, history


def zero_shot_logits(infer: Callable, variables: dict, text_features: jax.Array, *, ratio: float, t: int,
                     num_paths: int, feature_types=("image", "text"), scale: float = LOGIT_SCALE) -> LogitsFn:
    """The Dual Denoising model's attack logits: scale x cosine(ratio * text + image of the N-path mean,
    class text features), f32[B, C]. `infer` is `make_inference(config)[0]`; each call tokenizes its
    input cloud afresh (FPS and kNN on the perturbed points)."""
    from ddjax import zeroshot

    def logits_fn(points, key):
        feats = infer(variables, points, key, t=t, num_paths=num_paths)  # (B, k, D)
        return zeroshot.cosine_logits(zeroshot.ensemble(feats, ratio, feature_types), text_features, scale)

    return logits_fn
