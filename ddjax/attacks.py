"""Targeted adversarial attacks on zero-shot classification (paper section 4.3 and Appendix A; spec
section 6.3 and decision D9): IFGM, PGD and C&W, each in two gradient modes.

Every attack is written against a *logit function* `logits_fn(points f32[B, N, 3], key) -> f32[B,
C]`, which may be random (the Dual Denoising model draws point and feature noise from `key`). For
the model, `zero_shot_logits` builds it: 100 x the cosine between the N-path-averaged point feature
and each class's text feature (CLIP's logit scale, the paper's Eq. 1), with FPS and kNN recomputed
on the perturbed cloud in every forward pass and gradients reaching the coordinates through the
gathers (spec D4).

Gradient modes:
  'paper'  one forward pass per gradient, with a fresh key each time (the model as it runs; the
           paper's setting as far as it says).
  'eot'    expectation over transformation (Athalye et al. 2018): each gradient is the mean over M
           forward passes with independent keys; the adaptive attack on a randomised model.
Draw j of a gradient step uses `fold_in(step_key, j)`; the paper mode's one draw is j = 0, so 'eot'
with M = 1 is the paper mode.

Success is judged robustly, never by the single noisy pass that computes a gradient: an iterate
counts as having reached the target when the target wins a strict majority of `success_draws`
(default 8) forward passes with fresh keys of their own (`reaches_target`). PGD and IFGM return, per
cloud, an iterate that passed this check (else the final iterate), verifying only the iterates
their gradient passes already saw on target, the most confident first, at most two per cloud; C&W
judges the iterates after their update (never the starting point) by the same check, where it can
change what C&W keeps.

All loops are `lax` loops over the whole batch; `pgd` takes a traced epsilon, so several epsilons
run in one call under `jax.vmap`.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ddjax import losses, scoring

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]
ATTACKS = ("ifgm", "pgd", "cw")
MODES = ("paper", "eot")
LOGIT_SCALE = 100.0  # CLIP's: logits = 100 x cosine for every attack (spec D9)


def second_best(logits: jax.Array) -> jax.Array:
    """The attack target: the class with the second-highest logit, int32[B] (ties to the lower
    index)."""
    return jax.lax.top_k(logits, 2)[1][:, 1]


def targeted_cross_entropy(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Cross-entropy of the target class, f32[B]; IFGM/PGD descend it."""
    picked = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def cw_margin(logits: jax.Array, target: jax.Array) -> jax.Array:
    """C&W's targeted margin max(max_{i != target} Z_i - Z_target, 0), f32[B]: 0 once the target
    leads."""
    return jnp.maximum(cw_margin_signed(logits, target), 0.0)


def l2_norm(delta: jax.Array) -> jax.Array:
    """||delta||_2 per cloud, f32[B], over all N x 3 coordinates (differentiable at 0)."""
    return jnp.sqrt(jnp.sum(delta * delta, axis=(1, 2)) + 1e-24)


def distortion(adversarial: jax.Array, clean: jax.Array) -> dict:
    """Per-cloud distortion of adversarial against clean, each f32[B]: 'linf' (max |coordinate
    change|), 'l2' (over all coordinates) and 'chamfer' (Chamfer-L2 between the two clouds: mean
    squared nearest-neighbour distance both ways, as the training loss)."""
    delta = adversarial - clean
    d1, d2 = losses.chamfer_l2_sides(adversarial, clean)  # (B, N), (B, N)
    return {
        "linf": jnp.max(jnp.abs(delta), axis=(1, 2)),
        "l2": jnp.sqrt(jnp.sum(delta * delta, axis=(1, 2))),
        "chamfer": jnp.mean(d1, axis=1) + jnp.mean(d2, axis=1),
    }


def check_mode(mode: str, eot_samples: int) -> None:
    if mode not in MODES:
        raise ValueError(f"attack mode must be one of {MODES}, got {mode!r}")
    if not isinstance(eot_samples, int) or eot_samples < 1:
        raise ValueError(f"eot_samples must be a positive int, got {eot_samples!r}")


def check_check_rounds(attack: str, check_rounds: int) -> None:
    """The candidates verified per cloud (PGD) or per search step (C&W): a positive int."""
    if not isinstance(check_rounds, int) or check_rounds < 1:
        raise ValueError(f"{attack}: check_rounds must be a positive int, got {check_rounds!r}")


def check_success_draws(success_draws: int) -> None:
    if not isinstance(success_draws, int) or success_draws < 0:
        raise ValueError(
            "success_draws must be an int >= 0 (0: no check, the last iterate), got "
            f"{success_draws!r}"
        )


def reaches_target(
    logits_fn: LogitsFn,
    x: jax.Array,
    target: jax.Array,
    key: jax.Array,
    draws: int,
    draws_per_step: int | None = None,
) -> jax.Array:
    """bool[B]: the target wins a strict majority of `draws` forward passes, draw j with
    fold_in(key, j).

    With a deterministic logit function every draw agrees and this is plain `argmax == target`.
    The draws are evaluated `draws_per_step` at a time (None: all in one vmap)."""
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(draws))  # (D,)
    hits = jax.lax.map(
        lambda k: jnp.argmax(logits_fn(x, k), axis=1) == target,
        keys,
        batch_size=draws_per_step or draws,
    )  # (D, B)
    return 2 * jnp.sum(hits, axis=0) > draws


def gradient(
    loss_fn: Callable,
    x: jax.Array,
    key: jax.Array,
    *,
    mode: str = "paper",
    eot_samples: int = 1,
    draws_per_step: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(d sum_b loss_b / dx, logits) for `loss_fn(x, key) -> (loss f32[B], logits f32[B, C])`.

    'paper': one draw with fold_in(key, 0). 'eot': the mean of the gradients and of the logits over
    draws fold_in(key, j), j < eot_samples, evaluated `draws_per_step` at a time (None: all in one
    vmap). Clouds are independent (no batch statistics at evaluation), so the summed loss gives
    per-cloud gradients.
    """
    check_mode(mode, eot_samples)
    summed = lambda x, k: (lambda loss, logits: (jnp.sum(loss), logits))(*loss_fn(x, k))
    grad_fn = jax.grad(summed, has_aux=True)
    if mode == "paper":
        return grad_fn(x, jax.random.fold_in(key, 0))
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(eot_samples))  # (M,)
    grads, logits = jax.lax.map(
        lambda k: grad_fn(x, k), keys, batch_size=draws_per_step or eot_samples
    )  # (M, B, N, 3), (M, B, C)
    return jnp.mean(grads, axis=0), jnp.mean(logits, axis=0)


def _check_pgd(mode, eot_samples, success_draws, steps, curve_every, eval_key, check_rounds):
    check_check_rounds("pgd", check_rounds)
    check_mode(mode, eot_samples)
    check_success_draws(success_draws)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pgd: steps must be a positive int, got {steps!r}")
    if curve_every and (steps % curve_every or eval_key is None):
        raise ValueError(
            f"pgd: curve_every={curve_every} must divide steps={steps} and needs eval_key"
        )


def pgd_step(
    logits_fn,
    points,
    target,
    key,
    *,
    eps,
    step_size,
    mode,
    eot_samples,
    draws_per_step,
    keep_iterates,
):
    """PGD's loop body (i, (x, iterates, gates)) -> the same: a signed gradient step from x =
    iterate i and the projection onto the ball. With `keep_iterates`, iterate i + 1 is stored in
    iterates[i] f32[steps, B, N, 3], and gates[i - 1] f32[steps, B] records the target's margin in
    the gradient pass's own logits on iterate i (`target_margin`; the start, iterate 0, is never a
    candidate); else both stay None."""

    def loss_fn(x, k):
        logits = logits_fn(x, k)
        return targeted_cross_entropy(logits, target), logits

    def step(i, state):
        x, iterates, gates = state  # (B, N, 3), (steps, B, N, 3), (steps, B)
        g, logits = gradient(
            loss_fn,
            x,
            jax.random.fold_in(key, i + 1),
            mode=mode,
            eot_samples=eot_samples,
            draws_per_step=draws_per_step,
        )
        x = x - step_size * jnp.sign(g)
        x = points + jnp.clip(x - points, -eps, eps)  # projection onto the ball
        if keep_iterates:
            # (B,): the pass's own view of iterate i (the start, i = 0, is never a candidate)
            margin = jnp.where(i > 0, target_margin(logits, target), -jnp.inf)
            gates = jnp.where(i > 0, gates.at[i - 1].set(margin), gates)
            iterates = iterates.at[i].set(x)
        return x, iterates, gates

    return step


def target_margin(logits: jax.Array, target: jax.Array) -> jax.Array:
    """The target's logit minus the best other one, f32[B]: > 0 where the target is on top."""
    return -cw_margin_signed(logits, target)


def cw_margin_signed(logits: jax.Array, target: jax.Array) -> jax.Array:
    """max_{i != target} Z_i - Z_target, f32[B] (C&W's margin before its clamp at 0)."""
    is_target = jax.nn.one_hot(target, logits.shape[1], dtype=bool)  # (B, C)
    picked = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
    return jnp.max(jnp.where(is_target, -jnp.inf, logits), axis=1) - picked


def _verified(logits_fn, iterates, scores, candidates, target, key, draws, draws_per_step, rounds):
    """(index int[B], reached bool[B], rounds used int32[]): per cloud, the index in K of a
    candidate (iterates f32[K, B, N, 3], candidates bool[K, B]) that `reaches_target` over `draws`
    fresh draws. Candidates are tried best score first (scores f32[K, B]; ties to the later one),
    round r with fold_in(key, r), at most `rounds` per cloud, all clouds of the batch at once;
    reached False where none passed."""
    steps, b = scores.shape
    rows = jnp.arange(b)

    def undecided(state):
        r, _, _, active = state
        return (r < rounds) & jnp.any(active)

    def verify(state):
        r, remaining, best_idx, active = state
        # (B,): the best unverified candidate, the later one on a tie
        idx = steps - 1 - jnp.argmax(jnp.where(remaining, scores, -jnp.inf)[::-1], axis=0)
        ok = reaches_target(
            logits_fn,
            iterates[idx, rows],  # (B, N, 3)
            target,
            jax.random.fold_in(key, r),
            draws,
            draws_per_step,
        )
        best_idx = jnp.where(active & ok, idx, best_idx)
        remaining = remaining.at[idx, rows].set(remaining[idx, rows] & ~active)
        return r + 1, remaining, best_idx, active & ~ok & jnp.any(remaining, axis=0)

    init = (jnp.int32(0), candidates, jnp.full((b,), -1), jnp.any(candidates, axis=0))
    used, _, best_idx, _ = jax.lax.while_loop(undecided, verify, init)
    return jnp.maximum(best_idx, 0), best_idx >= 0, used


def _uniform_start(points, key, eps):
    """PGD's random start f32[B, N, 3], uniform in the L-inf ball of radius eps (key 0)."""
    u = jax.random.uniform(jax.random.fold_in(key, 0), points.shape, points.dtype, -1.0, 1.0)
    return u * eps


def _pgd_finish(
    logits_fn, target, key, steps, success_draws, draws_per_step, check_rounds, x, iterates, gates
):
    """PGD's result (adversarial f32[B, N, 3], info) from its final iterate x, the kept iterates
    f32[steps, B, N, 3] and their gradient passes' target margins f32[steps, B] (`pgd`)."""
    b = x.shape[0]
    if not success_draws:
        return x, {"reached": jnp.zeros((b,), bool), "check_rounds": jnp.int32(0)}
    final = target_margin(logits_fn(x, jax.random.fold_in(key, steps + 2)), target)
    margins = gates.at[steps - 1].set(final)  # (steps, B)
    idx, reached, rounds = _verified(
        logits_fn,
        iterates,
        margins,
        margins > 0,
        target,
        jax.random.fold_in(key, steps + 1),
        success_draws,
        draws_per_step,
        check_rounds,
    )
    best = iterates[idx, jnp.arange(b)]  # (B, N, 3)
    return jnp.where(reached[:, None, None], best, x), {"reached": reached, "check_rounds": rounds}


def pgd(
    logits_fn: LogitsFn,
    points: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    eps,
    steps: int = 50,
    step_size=None,
    random_start=True,
    mode: str = "paper",
    eot_samples: int = 1,
    draws_per_step: int | None = None,
    curve_every: int = 0,
    eval_key: jax.Array | None = None,
    success_draws: int = 8,
    check_rounds: int = 2,
):
    """Targeted L-infinity PGD (random_start=True, Madry et al.) or IFGM (random_start=False, from
    the clean cloud): x <- Proj_{||x - points||_inf <= eps}(x - step_size * sign(grad CE(logits(x),
    target))).

    points f32[B, N, 3], target int[B]; eps and step_size (default eps / 10) may be traced scalars
    (vmap over eps), and so may random_start. Step i draws its gradient noise from fold_in(key, i +
    1) (key 0 is the random start). No clipping beyond the ball.

    The iterates swing in and out of the target, so the one returned per cloud is an iterate that
    passes `reaches_target` over `success_draws` fresh draws, else the final iterate (the starting
    point is never a candidate). The candidates are the iterates on which the gradient pass's own
    logits (made anyway; for the final iterate one forward draw of fold_in(key, steps + 2)) already
    put the target on top; at most `check_rounds` of them per cloud are verified, the most confident
    first (largest target margin; ties to the later iterate), round r with draws of
    fold_in(fold_in(key, steps + 1), r). So the check costs at most check_rounds x success_draws
    forward passes per attack instead of success_draws per step. `success_draws=0` skips the check
    and returns the final iterate.

    Returns (adversarial clouds f32[B, N, 3], info) with info = {'reached': bool[B] (some iterate
    passed the check), 'check_rounds': int32[] (the verification rounds of `success_draws` draws
    the check took), 'curve': int32[steps // k + 1, B] predictions of logits_fn(x, eval_key) for
    the current iterate at steps 0, k, 2k, ..., steps with curve_every = k > 0, else None}.
    """
    _check_pgd(mode, eot_samples, success_draws, steps, curve_every, eval_key, check_rounds)
    eps = jnp.asarray(eps, points.dtype)
    step_size = eps / 10 if step_size is None else jnp.asarray(step_size, points.dtype)
    x0 = points + jnp.where(random_start, _uniform_start(points, key, eps), 0.0)
    step = pgd_step(
        logits_fn,
        points,
        target,
        key,
        eps=eps,
        step_size=step_size,
        mode=mode,
        eot_samples=eot_samples,
        draws_per_step=draws_per_step,
        keep_iterates=bool(success_draws),
    )
    # the iterate f32[B, N, 3]; kept iterates f32[steps, B, N, 3] and their margins f32[steps, B]
    kept = (jnp.zeros((steps, *points.shape)), jnp.zeros((steps, points.shape[0])))
    state = (x0, *(x.astype(points.dtype) for x in kept)) if success_draws else (x0, None, None)

    finish = functools.partial(
        _pgd_finish, logits_fn, target, key, steps, success_draws, draws_per_step, check_rounds
    )

    if not curve_every:
        adversarial, info = finish(*jax.lax.fori_loop(0, steps, step, state))
        return adversarial, {**info, "curve": None}
    predict = lambda x: jnp.argmax(logits_fn(x, eval_key), axis=1).astype(jnp.int32)

    def block(state, k):
        state = jax.lax.fori_loop(k * curve_every, (k + 1) * curve_every, step, state)
        return state, predict(state[0])

    # (steps // k, B)
    state, preds = jax.lax.scan(block, state, jnp.arange(steps // curve_every))
    adversarial, info = finish(*state)
    return adversarial, {**info, "curve": jnp.concatenate([predict(x0)[None], preds], axis=0)}


def cw(
    logits_fn: LogitsFn,
    points: jax.Array,
    target: jax.Array,
    key: jax.Array,
    *,
    search_steps: int = 10,
    iterations: int = 500,
    learning_rate: float = 0.01,
    initial_lambda: float = 10.0,
    lambda_bounds: tuple[float, float] = (0.0, 80.0),
    mode: str = "paper",
    eot_samples: int = 1,
    draws_per_step: int | None = None,
    init_scale: float = 1e-7,
    success_draws: int = 8,
    check_rounds: int = 2,
):
    """C&W perturbation attack as Xiang et al. (CVPR 2019) run it (github.com/xiangchong1/3d-adv-pc,
    perturbation.py, `attack_one_batch`): per cloud, minimise
    cw_margin(logits(points + delta), target) + lambda * ||delta||_2 with Adam, `iterations` updates
    per search step, each search step restarting from delta ~ N(0, init_scale^2) with fresh Adam
    state.

    Bookkeeping, as in that file: every iterate is judged *after* its update (the starting point
    never is), and an iterate that reaches the target with a smaller L2 than the best so far becomes
    the best, within the search step and overall. A search step counts as a success when it found
    one and its best is the best overall (`bestdist <= o_bestdist`): then lower = max(lower,
    lambda), else upper = min(upper, lambda); next lambda = (lower + upper) / 2. The one change:
    "reaches the target" is `reaches_target` over `success_draws` fresh draws, not the single noisy
    pass that computed the gradient, and to keep its cost that of a few forward passes per search
    step it is spent on few iterates: an iterate is a candidate when its next gradient pass (for
    the last iterate, one forward draw of fold_in(fold_in(key, s), 2 * iterations + 1)) already put
    the target on top; the `check_rounds` smallest-L2 candidates of the step are kept, and at the
    step's end verified smallest first, round r with draws of fold_in(fold_in(fold_in(key, s),
    2 * iterations + 2), r), until one passes: the step's best is that one. (`success_draws=0`
    judges every iterate by one fresh draw, fold_in(fold_in(key, s), iterations + 1 + i) after
    update i.)

    Returns (adversarial f32[B, N, 3], history): the best iterate, or the clean cloud where none
    succeeded (Xiang et al. leave those entries unset); history = {'lambda': f32[S, B] (the lambda
    each search step used), 'success': bool[S, B] (the step counted as a success for the search),
    'reached': bool[S, B] (some iterate of the step reached the target), 'best_l2': f32[S, B] (the
    step's smallest successful L2, inf if none)}.
    """
    _check_cw(
        mode,
        eot_samples,
        success_draws,
        search_steps,
        iterations,
        initial_lambda,
        lambda_bounds,
        check_rounds,
    )
    lower0, upper0 = lambda_bounds
    b = points.shape[0]
    search_step = _cw_search_step(
        logits_fn,
        points,
        target,
        key,
        iterations=iterations,
        optimizer=optax.adam(learning_rate),
        mode=mode,
        eot_samples=eot_samples,
        draws_per_step=draws_per_step,
        init_scale=init_scale,
        success_draws=success_draws,
        check_rounds=check_rounds,
    )
    full = lambda v: jnp.full((b,), v, points.dtype)
    carry = (full(initial_lambda), full(lower0), full(upper0), points, full(jnp.inf))
    (_, _, _, best_adv, _), history = jax.lax.scan(search_step, carry, jnp.arange(search_steps))
    return best_adv, history


def _check_cw(
    mode,
    eot_samples,
    success_draws,
    search_steps,
    iterations,
    initial_lambda,
    lambda_bounds,
    check_rounds,
) -> None:
    check_mode(mode, eot_samples)
    check_check_rounds("cw", check_rounds)
    check_success_draws(success_draws)
    if not (
        isinstance(search_steps, int)
        and search_steps >= 1
        and isinstance(iterations, int)
        and iterations >= 1
    ):
        raise ValueError(
            f"cw: search_steps and iterations must be positive ints, got {search_steps!r}, "
            f"{iterations!r}"
        )
    lower0, upper0 = lambda_bounds
    if not lower0 <= initial_lambda <= upper0:
        raise ValueError(
            f"cw: initial_lambda={initial_lambda} is outside lambda_bounds={lambda_bounds}"
        )


def _cw_record(points, delta, success, best_adv, best_l2, step_best):
    """C&W's bookkeeping of one judged iterate points + delta (success bool[B]): (best_adv
    f32[B, N, 3], best_l2 f32[B], step_best f32[B])."""
    dist = l2_norm(delta)
    step_best = jnp.where(success, jnp.minimum(step_best, dist), step_best)
    better = success & (dist < best_l2)
    best_adv = jnp.where(better[:, None, None], points + delta, best_adv)
    return best_adv, jnp.where(better, dist, best_l2), step_best


def _cw_keep(delta, hit, kept, kept_l2):
    """Puts delta f32[B, N, 3] among the kept candidates f32[K, B, N, 3] (their L2 f32[K, B], inf
    for an empty slot) where its gradient pass saw the target (`hit`) and its L2 is below the
    largest kept one, in that one's slot: the K smallest-L2 hits of the step stay."""
    dist = l2_norm(delta)  # (B,)
    slot = jnp.argmax(kept_l2, axis=0)  # (B,)
    put = hit & (dist < jnp.max(kept_l2, axis=0))
    at = (jnp.arange(kept_l2.shape[0])[:, None] == slot) & put  # (K, B)
    kept = jnp.where(at[:, :, None, None], delta, kept)
    return kept, jnp.where(at, dist, kept_l2)


def _cw_loss(logits_fn, points, target, lam, delta, key):
    """(C&W's objective f32[B], logits f32[B, C]) at points + delta: margin + lambda * L2."""
    logits = logits_fn(points + delta, key)
    return cw_margin(logits, target) + lam * l2_norm(delta), logits


def _cw_bounds(step_best, best_l2, lam, lower, upper):
    """Xiang et al.'s lambda search after a step: (next lambda, lower, upper, history row)."""
    reached = jnp.isfinite(step_best)
    success = reached & (step_best <= best_l2)
    lower = jnp.where(success, jnp.maximum(lower, lam), lower)
    upper = jnp.where(success, upper, jnp.minimum(upper, lam))
    history = {"lambda": lam, "success": success, "reached": reached, "best_l2": step_best}
    return 0.5 * (lower + upper), lower, upper, history


def _cw_verify_kept(
    logits_fn, points, target, delta, kept, kept_l2, last_key, check_key, *, draws, draws_per_step
):
    """(found f32[B, N, 3], reached bool[B]): the end of a C&W search step. The last iterate
    points + delta joins the kept candidates (deltas f32[K, B, N, 3], L2 f32[K, B]) where one
    forward draw of `last_key` (standing in for a gradient pass) puts the target on top; then the
    kept ones are verified smallest L2 first over `draws` draws of fold_in(check_key, r), at most K
    rounds."""
    last = logits_fn(points + delta, last_key)
    kept, kept_l2 = _cw_keep(delta, jnp.argmax(last, axis=1) == target, kept, kept_l2)
    idx, reached, _ = _verified(
        logits_fn,
        points + kept,  # (K, B, N, 3)
        -kept_l2,
        jnp.isfinite(kept_l2),
        target,
        check_key,
        draws,
        draws_per_step,
        kept_l2.shape[0],
    )
    return kept[idx, jnp.arange(points.shape[0])], reached  # (B, N, 3), (B,)


def _cw_search_step(
    logits_fn,
    points,
    target,
    key,
    *,
    iterations,
    optimizer,
    mode,
    eot_samples,
    draws_per_step,
    init_scale,
    success_draws,
    check_rounds,
):
    """C&W's binary-search step (carry (lambda, lower, upper, best_adv, best_l2), s) -> (carry,
    history row): `iterations` Adam updates from a fresh delta, then the lambda bounds (`cw`)."""
    b = points.shape[0]

    def judge(delta, k):  # bool[B]: does points + delta reach the target? (success_draws=0)
        return jnp.argmax(logits_fn(points + delta, k), axis=1) == target

    record = functools.partial(_cw_record, points)
    verify_kept = functools.partial(
        _cw_verify_kept,
        logits_fn,
        points,
        target,
        draws=success_draws,
        draws_per_step=draws_per_step,
    )

    def search_step(carry, s):
        lam, lower, upper, best_adv, best_l2 = carry
        k_search = jax.random.fold_in(key, s)
        delta = init_scale * jax.random.normal(
            jax.random.fold_in(k_search, 0), points.shape, points.dtype
        )
        fn = functools.partial(_cw_loss, logits_fn, points, target, lam)

        def iteration(i, state):
            delta, opt_state, best_adv, best_l2, step_best, kept, kept_l2 = state
            g, logits = gradient(
                fn,
                delta,
                jax.random.fold_in(k_search, i + 1),
                mode=mode,
                eot_samples=eot_samples,
                draws_per_step=draws_per_step,
            )
            if success_draws:  # the previous iterate, the one this pass just saw, may be kept
                hit = (jnp.argmax(logits, axis=1) == target) & (i > 0)
                kept, kept_l2 = _cw_keep(delta, hit, kept, kept_l2)
            updates, opt_state = optimizer.update(g, opt_state, delta)
            delta = optax.apply_updates(delta, updates)  # judged after the update
            if not success_draws:
                success = judge(delta, jax.random.fold_in(k_search, iterations + 1 + i))  # (B,)
                best_adv, best_l2, step_best = record(delta, success, best_adv, best_l2, step_best)
            return delta, opt_state, best_adv, best_l2, step_best, kept, kept_l2

        # step_best f32[B], kept deltas f32[K, B, N, 3], their L2 f32[K, B]: none yet
        empty = (jnp.full((b,), jnp.inf), jnp.zeros((check_rounds, *points.shape)))
        empty = tuple(
            x.astype(points.dtype) for x in (*empty, jnp.full((check_rounds, b), jnp.inf))
        )
        init = (delta, optimizer.init(delta), best_adv, best_l2, *empty)
        state = jax.lax.fori_loop(0, iterations, iteration, init)
        delta, _, best_adv, best_l2, step_best, kept, kept_l2 = state
        if success_draws:  # the smallest-L2 kept candidate that passes the check
            last_key, check_key = (jax.random.fold_in(k_search, 2 * iterations + j) for j in (1, 2))
            found, reached = verify_kept(delta, kept, kept_l2, last_key, check_key)
            best_adv, best_l2, step_best = record(found, reached, best_adv, best_l2, step_best)
        lam, lower, upper, history = _cw_bounds(step_best, best_l2, lam, lower, upper)
        return (lam, lower, upper, best_adv, best_l2), history

    return search_step


def fixed_noise(logits_fn: LogitsFn, key: jax.Array) -> LogitsFn:
    """The same logit function with one fixed key for every forward pass: a deterministic model (the
    baseline against which the random model's robustness is read)."""
    return lambda points, _: logits_fn(points, key)


def zero_shot_logits(
    infer: Callable,
    variables: dict,
    text_features: jax.Array,
    *,
    ratio: float,
    t: int,
    num_paths: int,
    feature_types=("image", "text"),
    scale: float = LOGIT_SCALE,
) -> LogitsFn:
    """The Dual Denoising model's attack logits: scale x cosine(ratio * text + image of the N-path
    mean, class text features), f32[B, C]. `infer` is a model's `Inference.infer`; each call
    tokenizes its input cloud afresh (FPS and kNN on the perturbed points)."""

    def logits_fn(points, key):
        feats = infer(variables, points, key, t=t, num_paths=num_paths)  # (B, k, D)
        return scoring.cosine_logits(
            scoring.ensemble(feats, ratio, feature_types), text_features, scale
        )

    return logits_fn
