"""The Dual Denoising model, its loss and its inference function, on the tiny config."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax.models import blocks
from ddjax.models import dual_denoising as dd

CONFIG = dd.model_config("tiny")
B, N = 3, 96


@pytest.fixture(scope="module")
def variables():
    return jax.jit(lambda k: dd.init_variables(CONFIG, k))(jax.random.key(0))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return {
        "points": jnp.asarray(rng.normal(size=(B, N, 3)).astype(np.float32)),
        "image_features": jnp.asarray(rng.normal(size=(B, CONFIG.teacher_dim)).astype(np.float32)),
        "text_features": jnp.asarray(rng.normal(size=(B, CONFIG.teacher_dim)).astype(np.float32)),
    }


@pytest.fixture(scope="module")
def inference():
    inference = dd.make_inference(CONFIG)
    infer, infer_path = inference.infer, inference.infer_path
    return (
        jax.jit(infer, static_argnames=("t", "num_paths", "share_encoder_at_t0", "paths_per_step")),
        jax.jit(infer_path, static_argnames=("t",)),
    )


def perturbed(variables, scale=0.05):
    """Every parameter plus noise, so that zero-initialised modulations become active."""
    leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(jax.random.key(42), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return {**variables, "params": jax.tree_util.tree_unflatten(treedef, leaves)}


def inputs(batch, t=500):
    from ddjax import pointcloud

    groups = pointcloud.group(batch["points"], CONFIG.num_groups, CONFIG.group_size)
    noise = jax.random.normal(jax.random.key(1), (B, 2, CONFIG.teacher_dim))
    return groups.neighborhoods, groups.centers, jnp.full((B,), t // CONFIG.delta), noise


def test_every_pointdae_block_is_the_identity_at_init(variables, batch):
    model = dd.build_model(CONFIG)
    (_, _), aux = model.apply(variables, *inputs(batch))
    pos = model.apply(variables, inputs(batch)[1], method=lambda m, c: m.pos_embed(c))
    layers = [aux[f"enc/block{i:02d}"] for i in range(CONFIG.depth)]
    # block i-1 returned its input unchanged: layer_i = layer_{i-1} + pos
    for i in range(1, CONFIG.depth):
        np.testing.assert_allclose(
            np.asarray(layers[i]), np.asarray(layers[i - 1] + pos), rtol=1e-6, atol=1e-6
        )
    # The block class itself, with either init (encoder: normal 0.02; decoder: Xavier), exactly: it
    # adds the position and nothing else, and hands back its input.
    x = jax.random.normal(jax.random.key(2), (2, 5, 32))
    pos = jax.random.normal(jax.random.key(5), (2, 5, 32))
    c = jax.random.normal(jax.random.key(3), (2, 32))
    for init in (blocks.normal_002, blocks.xavier_uniform):
        block = blocks.AdaLNZeroBlock(num_heads=2, kernel_init=init)
        params = block.init(jax.random.key(4), x, 0.0, pos, c)
        out, block_input = block.apply(params, x, 0.0, pos, c)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x + pos))
        np.testing.assert_array_equal(np.asarray(block_input), np.asarray(x + pos))
    # and the model's own blocks (all layers) start with zero modulation
    for name in ("encoder", "decoder"):
        stacked = variables["params"][name]["blocks"]["adaLN_modulation"]["kernel"]
        assert stacked.shape[0] == (CONFIG.depth if name == "encoder" else CONFIG.decoder_depth)
        assert not np.any(np.asarray(stacked))


def test_feature_block_ffn_is_gated_to_zero_at_init_but_cross_attention_is_not():
    block = blocks.FeatureBlock(num_heads=2)
    h = jax.random.normal(jax.random.key(0), (2, 2, 32))
    pts = jax.random.normal(jax.random.key(1), (2, 7, 32))
    emb = jax.random.normal(jax.random.key(2), (2, 32))
    pos = jnp.zeros((1, 2, 32))
    params = block.init(jax.random.key(3), h, pts, 0.0, pos, emb)
    out = block.apply(params, h, pts, 0.0, pos, emb)[0]
    assert not np.allclose(np.asarray(out), np.asarray(h))  # the cross-attention acts at init
    p = flax.core.unfreeze(params)
    proj = p["params"]["cross_attn"]["proj"]
    proj["kernel"] = jnp.zeros_like(proj["kernel"])
    proj["bias"] = jnp.zeros_like(proj["bias"])
    # FFN gated off
    np.testing.assert_array_equal(
        np.asarray(block.apply(p, h, pts, 0.0, pos, emb)[0]), np.asarray(h)
    )


POINT_DAE = (
    "patch_embed",
    "pos_embed",
    "timestep_embedder",
    "encoder",
    "decoder_pos_embed",
    "decoder",
)


def _grads(config, variables, batch, which):
    loss_fn = dd.make_train_loss(config)
    f = lambda p: loss_fn({**variables, "params": p}, batch, jax.random.key(5))[1][0][which]
    return jax.jit(jax.grad(f))(variables["params"])


def _max_abs(tree):
    return max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(tree))


def test_stop_gradient(variables, batch):
    variables = perturbed(variables)
    g_feat = _grads(CONFIG, variables, batch, "loss_features")
    for name in POINT_DAE:  # the feature loss never reaches PointDAE
        assert _max_abs(g_feat[name]) == 0.0, name
    assert _max_abs(g_feat["feature_branch"]) > 0
    g_rec = _grads(CONFIG, variables, batch, "loss_recon")
    # and the reconstruction loss never reaches the branch
    assert _max_abs(g_rec["feature_branch"]) == 0.0
    assert _max_abs(g_rec["encoder"]) > 0
    # Switched off (ablation), the feature loss does train the encoder.
    g_open = _grads(dd.model_config("tiny", stop_gradient=False), variables, batch, "loss_features")
    assert _max_abs(g_open["encoder"]) > 0 and _max_abs(g_open["patch_embed"]) > 0


def test_timesteps_merge_by_delta(variables, batch):
    model = dd.build_model(CONFIG)
    variables = perturbed(variables)
    nbh, centers, _, _ = inputs(batch)
    enc = jax.jit(
        lambda t: model.apply(
            variables, nbh, centers, dd.merged_timestep(t, 100), method=dd.DualDenoising.encode
        )["tokens"]
    )
    t500, t599, t600 = (np.asarray(enc(jnp.full((B,), t))) for t in (500, 599, 600))
    np.testing.assert_array_equal(t500, t599)
    assert np.abs(t600 - t500).max() > 1e-4
    assert dd.merged_timestep(600, 100) == 6 and dd.merged_timestep(100, 100) == 1
    assert dd.merged_timestep(999, 1000) == 0  # delta = T: no timestep conditioning


@pytest.mark.highest_precision
def test_parallel_noise_inference(variables, batch, inference):
    infer, infer_path = inference
    variables = perturbed(variables)
    points, key = batch["points"], jax.random.key(7)
    out = np.asarray(infer(variables, points, key, t=600, num_paths=3))
    assert out.shape == (B, 2, CONFIG.teacher_dim)
    # The vmapped mean equals the paths run one by one and averaged.
    loop = np.mean(
        [np.asarray(infer_path(variables, points, k, t=600)) for k in jax.random.split(key, 3)], 0
    )
    np.testing.assert_allclose(out, loop, rtol=1e-5, atol=1e-6)
    # one vmap over all 3 paths, or chunks of 2 (with a remainder) or 1: same mean
    for step in (3, 2, 1):
        chunked = np.asarray(infer(variables, points, key, t=600, num_paths=3, paths_per_step=step))
        np.testing.assert_allclose(chunked, loop, rtol=1e-5, atol=1e-6)
    # Same keys, same output; other keys, other output.
    np.testing.assert_array_equal(
        out, np.asarray(infer(variables, points, key, t=600, num_paths=3))
    )
    assert not np.allclose(
        out, np.asarray(infer(variables, points, jax.random.key(8), t=600, num_paths=3))
    )
    # t = 0: the shared-encoder fast path equals the general path.
    fast = np.asarray(infer(variables, points, key, t=0, num_paths=3))
    general = np.asarray(infer(variables, points, key, t=0, num_paths=3, share_encoder_at_t0=False))
    np.testing.assert_allclose(fast, general, rtol=1e-5, atol=1e-6)


def test_inference_group_sizes_come_from_the_config(variables):
    # ScanObjectNN-style tokenization: other G x K than training, same weights (max-pool over K).
    config = dd.model_config("tiny", num_groups=8, group_size=16)
    infer = dd.make_inference(config).infer
    points = jax.random.normal(jax.random.key(0), (2, 64, 3))
    out = jax.jit(infer, static_argnames=("t", "num_paths"))(
        variables, points, jax.random.key(1), t=100, num_paths=2
    )
    assert out.shape == (2, 2, config.teacher_dim) and np.all(np.isfinite(np.asarray(out)))


def test_train_loss(variables, batch):
    loss_fn = jax.jit(dd.make_train_loss(CONFIG))
    loss, (metrics, new_stats) = loss_fn(variables, batch, jax.random.key(3))
    np.testing.assert_allclose(
        float(loss), float(metrics["loss_recon"] + metrics["loss_features"]), rtol=1e-6
    )
    np.testing.assert_allclose(
        float(metrics["loss_features"]),
        float(metrics["loss_image"] + metrics["loss_text"]),
        rtol=1e-6,
    )
    assert 0.9936 <= float(metrics["lambda_t"]) <= 1.0
    # BatchNorm statistics move in training.
    assert _max_abs(jax.tree_util.tree_map(jnp.subtract, new_stats, variables["batch_stats"])) > 0
    # Same key, same loss.
    assert float(loss_fn(variables, batch, jax.random.key(3))[0]) == float(loss)


def test_reconstruction_head_is_not_zero_initialised(variables, batch):
    (recon, _), _ = dd.build_model(CONFIG).apply(variables, *inputs(batch))
    # (B, G, 3): the K predicted points of a token differ
    spread = np.asarray(jnp.std(recon, axis=2))
    assert spread.min() > 1e-3


def test_ablation_switches(batch):
    key = jax.random.key(0)
    # Masking: the encoder sees G - int(0.6 G) tokens; the loss still runs on all G reconstructions.
    masked = dd.model_config("tiny", mask_ratio=0.6)
    v = dd.init_variables(masked, key)
    assert v["params"]["mask_token"].shape == (1, 1, masked.width)
    loss, (metrics, _) = jax.jit(dd.make_train_loss(masked))(v, batch, key)
    assert np.isfinite(float(loss)) and dd.num_visible(masked) == 16 - 9
    # Learned feature tokens (ReCon's queries): the output does not depend on the noise.
    learned = dd.model_config("tiny", feature_input="learned")
    model = dd.build_model(learned)
    v = dd.init_variables(learned, key)
    nbh, centers, t, noise = inputs(batch)
    a = model.apply(v, nbh, centers, t, noise)[0][1]
    b = model.apply(v, nbh, centers, t, noise + 1.0)[0][1]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # s = 0: no point noise, so every timestep sees the clean cloud (sigma_t = 0).
    clean = dd.model_config("tiny", noise_scale=0.0)
    v = dd.init_variables(clean, key)
    _, (metrics, _) = jax.jit(dd.make_train_loss(clean))(v, batch, key)
    assert float(metrics["sigma_t"]) == 0.0 and float(metrics["lambda_t"]) == 1.0


def test_reconstruction_target_frames():
    from ddjax import pointcloud

    rng = np.random.default_rng(3)
    clean = rng.normal(size=(2, 40, 3)).astype(np.float32)
    noisy = clean + 0.05 * rng.normal(size=clean.shape).astype(np.float32)
    groups = pointcloud.group_noisy(clean, noisy, 5, 4)
    # absolute clean points
    clean_abs = np.asarray(groups.clean.neighborhoods + groups.clean.centers[:, :, None])
    np.testing.assert_allclose(
        np.asarray(dd.reconstruction_target(groups, "clean")),
        clean_abs - np.asarray(groups.clean.centers)[:, :, None],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        np.asarray(dd.reconstruction_target(groups, "noisy")),
        clean_abs - np.asarray(groups.noisy.centers)[:, :, None],
        atol=1e-6,
    )


def test_bfloat16_compute_keeps_float32_parameters(variables, batch):
    config = dd.model_config("tiny", dtype="bfloat16")
    key = jax.random.key(4)
    loss16, _ = jax.jit(dd.make_train_loss(config))(variables, batch, key)
    loss32, _ = jax.jit(dd.make_train_loss(CONFIG))(variables, batch, key)
    assert loss16.dtype == jnp.float32
    # same model, lower precision
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=0.05)


def test_parameter_counts_match_the_architecture():
    counts = dd.parameter_counts(CONFIG)
    v = dd.init_variables(CONFIG, jax.random.key(0))
    assert counts["total"] == sum(x.size for x in jax.tree_util.tree_leaves(v["params"]))
    c, hidden, depth = CONFIG.width, int(CONFIG.width * CONFIG.mlp_ratio), CONFIG.depth
    # An AdaLN-Zero block by the formula: qkv 3C^2, proj C^2 + C, MLP 2 C H + H + C, modulation 6C^2
    # + 6C.
    block = 3 * c * c + c * c + c + 2 * c * hidden + hidden + c + 6 * c * c + 6 * c
    assert counts["encoder"] == depth * block + 2 * c  # + the final LayerNorm
    base = dd.parameter_counts(dd.model_config("base"))
    assert base["encoder"] == 12 * (18 * 384**2 + 8 * 384 + 1536) + 2 * 384


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(noise_scale=-0.1), r"config.model.noise_scale\): must be >= 0"),
        (dict(delta=0), r"config.model.delta\): must be an integer >= 1"),
        (dict(delta=2000), r"config.model.delta\): must be <= num_timesteps"),
        (dict(feature_input="zeros"), r"config.model.feature_input\): must be one of"),
        (dict(target_frame="x"), r"config.model.target_frame\): must be one of"),
        (dict(mask_ratio=1.0), r"config.model.mask_ratio\): must be in \[0, 1\)"),
        (dict(num_heads=3), r"config.model.width\): must be divisible by num_heads=3"),
        (dict(patch_widths=(32, 64)), r"config.model.patch_widths\): must be three integers"),
        (dict(patch_widths=(32, 0, 8)), r"config.model.patch_widths\): must be three integers"),
    ],
)
def test_bad_config_values_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        dd.model_config("tiny", **overrides)


def test_too_few_points_is_a_clear_error(variables, inference):
    infer, _ = inference
    few = jnp.zeros((2, 10, 3))  # tiny needs 16 centers
    with pytest.raises(
        ValueError, match=r"N=10 points, fewer than the tokenizer needs \(num_groups=16"
    ):
        infer(variables, few, jax.random.key(0), t=0, num_paths=1)
    with pytest.raises(ValueError, match=r"fewer than the tokenizer needs"):
        dd.make_train_loss(CONFIG)(variables, {"points": few}, jax.random.key(0))


def test_concat_dense_equals_dense_on_the_concatenation():
    from ddjax.models.tokenizer import ConcatDense

    g = jax.random.normal(jax.random.key(0), (2, 3, 1, 4))
    f = jax.random.normal(jax.random.key(1), (2, 3, 5, 6))
    layer = ConcatDense(7)
    params = layer.init(jax.random.key(2), g, f)
    params = jax.tree_util.tree_map(lambda x: x + 0.1, params)  # non-zero bias too
    concat = jnp.concatenate([jnp.broadcast_to(g, (2, 3, 5, 4)), f], axis=-1)
    np.testing.assert_allclose(
        np.asarray(layer.apply(params, g, f)),
        np.asarray(nn_dense_apply(params, concat)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.highest_precision
def test_mini_pointnet_widths_follow_the_config():
    # The mini-PointNet with hidden widths (h1, h2, h3) = (4, 6, 8) against numpy: Linear 3->h1,
    # BatchNorm over every point of the batch (training mode: the batch's mean and biased
    # variance, eps 1e-5), ReLU, Linear h1->h2 = f; g = max over the group; Linear [g ; f]
    # 2*h2->h3, BatchNorm, ReLU, Linear h3->C; max over the group. The model's patch embedding
    # takes the config's widths.
    from ddjax.models.tokenizer import MiniPointNet

    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 3, 5, 3)))  # (B, G, K, 3)
    net = MiniPointNet(7, (4, 6, 8))
    variables = net.init(jax.random.key(1), x, train=True)
    params = jax.tree_util.tree_map(lambda v: np.asarray(v) + 0.1, variables["params"])
    got, _ = net.apply(
        {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
    )  # (B, G, 7)

    def bn(h, p):
        mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
        return (h - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]

    lin = lambda h, p: h @ p["kernel"] + p["bias"]
    f = lin(np.maximum(bn(lin(x, params["conv1a"]), params["bn1"]), 0), params["conv1b"])
    g = np.broadcast_to(f.max(axis=2, keepdims=True), f.shape)  # (B, G, K, 6)
    h = lin(np.concatenate([g, f], axis=-1), params["conv2a"])  # (B, G, K, 8)
    want = lin(np.maximum(bn(h, params["bn2"]), 0), params["conv2b"]).max(axis=2)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)

    config = dd.model_config("tiny", patch_widths=(4, 6, 8))
    shapes = jax.eval_shape(lambda k: dd.init_variables(config, k), jax.random.key(0))["params"]
    embed = shapes["patch_embed"]
    assert embed["conv1a"]["kernel"].shape == (3, 4)
    assert embed["conv2a"]["kernel"].shape == (12, 8)
    assert embed["conv2b"]["kernel"].shape == (8, CONFIG.width)
    assert dd.parameter_counts(config)["total"] == sum(
        x.size for x in jax.tree_util.tree_leaves(shapes)
    )


def nn_dense_apply(params, x):
    import flax.linen as nn

    return nn.Dense(7).apply(params, x)


@pytest.mark.highest_precision
def test_scanned_stacks_equal_the_blocks_applied_one_by_one(variables, batch):
    # The reference is the model as it was before the stacks were scanned: each layer's parameters
    # (a slice of the stacked ones, i.e. the unrolled checkpoint layout `block00`, `block01`, ...)
    # applied by its block in a Python loop, the encoder's block inputs feeding the feature branch's
    # blocks one by one.
    import flax.linen as nn

    variables = perturbed(variables)
    nbh, centers, t, noise = inputs(batch)
    model = dd.build_model(CONFIG)
    (recon, features), aux = jax.jit(model.apply)(variables, nbh, centers, t, noise)
    old = dd.unstack_layers(variables["params"])
    assert sorted(k for k in old["encoder"] if k.startswith("block")) == ["block00", "block01"]

    sub = lambda name: lambda m, *a: getattr(m, name)(*a)
    x = model.apply(variables, nbh, False, method=sub("patch_embed"))  # (B, G, C)
    pos = model.apply(variables, centers, method=sub("pos_embed"))
    cond = model.apply(variables, t, method=sub("timestep_embedder"))
    c, heads, hidden = CONFIG.width, CONFIG.num_heads, CONFIG.mlp_ratio
    norm = lambda p, h: blocks.layer_norm().apply({"params": p}, h)
    layers = []
    for i in range(CONFIG.depth):
        x, block_input = blocks.AdaLNZeroBlock(heads, hidden).apply(
            {"params": old["encoder"][f"block{i:02d}"]}, x, 0.0, pos, cond
        )
        layers.append(block_input)
    tokens = norm(old["encoder"]["norm"], x)
    np.testing.assert_allclose(np.asarray(aux["tokens"]), np.asarray(tokens), rtol=1e-5, atol=1e-6)
    for i, layer in enumerate(layers):
        np.testing.assert_allclose(
            np.asarray(aux[f"enc/block{i:02d}"]), np.asarray(layer), rtol=1e-5, atol=1e-6
        )

    branch = old["feature_branch"]
    h = nn.Dense(c).apply({"params": branch["noise_embed"]}, noise)
    emb = nn.Embed(2, c).apply({"params": branch["type_embed"]}, jnp.arange(2))
    for i, layer in enumerate(layers):
        h, _ = blocks.FeatureBlock(heads, hidden).apply(
            {"params": branch[f"block{i:02d}"]}, h, layer, 0.0, branch["type_pos"], emb
        )
    h = norm(branch["norm"], h)
    want = jnp.stack(
        [
            nn.Dense(CONFIG.teacher_dim).apply({"params": branch[f"{n}_proj"]}, h[:, j])
            for j, n in enumerate(CONFIG.feature_types)
        ],
        axis=1,
    )
    np.testing.assert_allclose(np.asarray(features), np.asarray(want), rtol=1e-5, atol=1e-6)

    dec = old["decoder"]
    y = tokens
    dpos = model.apply(variables, centers, method=sub("decoder_pos_embed"))
    for i in range(CONFIG.decoder_depth):
        y, _ = blocks.AdaLNZeroBlock(heads, hidden).apply(
            {"params": dec[f"block{i:02d}"]}, y, 0.0, dpos, cond
        )
    y = nn.Dense(3 * CONFIG.group_size).apply(
        {"params": dec["reconstruction_head"]}, norm(dec["norm"], y)
    )
    np.testing.assert_allclose(
        np.asarray(recon), np.asarray(y.reshape(recon.shape)), rtol=1e-5, atol=1e-6
    )
    # And back: the unrolled layout stacks into exactly the model's parameters.
    for a, b in zip(
        jax.tree_util.tree_leaves(dd.stack_layers(old)),
        jax.tree_util.tree_leaves(variables["params"]),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_remat_changes_memory_not_values(variables, batch):
    # Recomputing each block in the backward pass (config.model.remat) gives the same loss and
    # gradients.
    variables = perturbed(variables)
    loss_and_grads = lambda config: jax.jit(
        jax.value_and_grad(
            lambda p: dd.make_train_loss(config)(
                {**variables, "params": p}, batch, jax.random.key(5)
            )[0]
        )
    )(variables["params"])
    (loss, grads), (loss_r, grads_r) = (
        loss_and_grads(CONFIG),
        loss_and_grads(dd.model_config("tiny", remat=True)),
    )
    assert float(loss) == float(loss_r)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_r)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_feature_types_are_checked_in_the_form_of_use():
    """A string where a tuple of names belongs (it once trained a teacher and compiled for a
    minute, then failed on the missing text loss) is refused at once, naming the field."""
    import ml_collections

    from ddjax import errors

    def with_types(types):  # a config file may build the ConfigDict itself, with any types
        return ml_collections.ConfigDict(
            {**dd.model_config("tiny").to_dict(), "feature_types": types}
        )

    for bad in ("image", ("image", 3), (), ("image", "image"), ("depth",)):
        with pytest.raises(errors.ConfigError, match=r"model\.feature_types"):
            dd.validate_config(with_types(bad))
    dd.validate_config(with_types(("text",)))
    dd.validate_config(with_types(["image", "text"]))
