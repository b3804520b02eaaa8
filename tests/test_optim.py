"""ReCon's schedule and decay groups against the spec's formulas (section 3.3, trap 13-14)."""

import math

import jax.numpy as jnp
import numpy as np

from ddjax import optim


def spec_lr(e):
    """Spec 3.3 verbatim, for epoch index e of lr(e)."""
    if e < 10:
        return 1e-6 + e * (5e-4 - 1e-6) / 10
    if e < 300:
        return 1e-6 + 0.5 * (5e-4 - 1e-6) * (1 + math.cos(math.pi * e / 300))
    return 1e-6


def test_epoch_schedule_matches_recon():
    sched = optim.epoch_schedule(base_lr=5e-4, warmup_epochs=10, epochs=300, steps_per_epoch=7)
    for epoch in (0, 1, 2, 5, 10, 11, 150, 299, 300):
        want = 1e-6 if epoch <= 1 else spec_lr(epoch - 1)  # stepped at the end of each epoch
        for step in (epoch * 7, epoch * 7 + 6):  # constant within the epoch
            np.testing.assert_allclose(float(sched(jnp.int32(step))), want, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(
            optim.recon_lr(epoch, base_lr=5e-4, warmup_epochs=10, epochs=300),
            spec_lr(epoch),
            rtol=1e-12,
        )
    # The cosine runs on the raw epoch index, so the peak (epoch 11, at lr(10)) is just below 5e-4.
    np.testing.assert_allclose(
        float(sched(jnp.int32(11 * 7))),
        1e-6 + 0.5 * 4.99e-4 * (1 + math.cos(math.pi / 30)),
        rtol=1e-6,
    )
    assert float(sched(jnp.int32(11 * 7))) < 5e-4


def test_decay_mask_groups():
    params = {
        "encoder": {
            "block00": {
                "attn": {"qkv": {"kernel": jnp.zeros((4, 12))}, "proj": {"bias": jnp.zeros(4)}},
                "norm": {"scale": jnp.zeros(4)},
            }
        },
        "mask_token": jnp.zeros((1, 1, 4)),
        "feature_branch": {
            "feature_tokens": jnp.zeros((1, 2, 4)),
            "type_pos": jnp.zeros((1, 2, 4)),
        },
    }
    mask = optim.decay_mask(params)
    assert mask["encoder"]["block00"]["attn"]["qkv"]["kernel"] is True
    assert mask["encoder"]["block00"]["attn"]["proj"]["bias"] is False
    assert mask["encoder"]["block00"]["norm"]["scale"] is False
    assert mask["mask_token"] is False and mask["feature_branch"]["feature_tokens"] is False
    assert mask["feature_branch"]["type_pos"] is True  # *_pos tensors are decayed, as in ReCon
    # A scanned stack (leading layer axis): the same groups as one layer's parameters.
    stacked = {
        "encoder": {
            "blocks": {
                "attn": {
                    "qkv": {"kernel": jnp.zeros((3, 4, 12))},
                    "proj": {"bias": jnp.zeros((3, 4))},
                }
            }
        }
    }
    mask = optim.decay_mask(stacked)["encoder"]["blocks"]["attn"]
    assert mask["qkv"]["kernel"] is True and mask["proj"]["bias"] is False


def test_adamw_decays_only_the_masked_group():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx = optim.adamw(lambda s: 0.1, weight_decay=0.5)
    updates, _ = tx.update({"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * 0.5)  # decoupled: lr * wd * param
    np.testing.assert_allclose(np.asarray(updates["b"]), 0.0)
