"""CLIP teachers and prompts: ReCon / PointCLIP prompt text, class lists, and the Flax CLIP
wrappers.

The CLIP model here is a tiny random-weight one saved to a temporary directory (no downloads); the
tokenizer is the real OpenAI CLIP BPE that ships in the package (ddjax/teachers/clip_tokenizer).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from ddjax.data import classnames
from ddjax.teachers import clip, prompts, tiny_clip
from tests.conftest import reference_path

CLASSES = ["airplane", "night_stand"]


# ---------------------------------------------------------------------------------------------
# prompts


def test_recon_prompts_word_for_word():
    ps = prompts.recon_prompts("airplane")
    assert len(ps) == 60 == prompts.NUM_RECON_PROMPTS
    assert len(prompts.RECON_PREFIXES) == 20 and len(prompts.RECON_SUFFIXES) == 3
    assert ps[0] == "airplane."
    assert ps[1] == "A airplane."
    assert ps[5] == "A image of a airplane."
    assert ps[13] == "A point cloud model of a airplane."
    assert ps[19] == "A 3D rendering image of a airplane."
    assert ps[20] == "airplane with white background."
    assert ps[27] == "A 3D model of a airplane with white background."
    assert ps[40] == "airplane with black context."
    assert ps[59] == "A 3D rendering image of a airplane with black context."
    expected_prefixes = [
        "", "A ", "A model of ", "A model of a ", "A image of ", "A image of a ", "A 3D model of ",
        "A 3D model of a ", "A rendering model of ", "A rendering model of a ", "A point cloud of ",
        "A point cloud of a ", "A point cloud model of ", "A point cloud model of a ",
        "A 3D rendering model of ", "A 3D rendering model of a ", "A rendering image of ",
        "A rendering image of a ", "A 3D rendering image of ", "A 3D rendering image of a ",
    ]  # fmt: skip
    expected_suffixes = [".", " with white background.", " with black context."]
    assert ps == [p + "airplane" + s for s in expected_suffixes for p in expected_prefixes]
    for j in range(60):
        assert prompts.recon_prompt("airplane", j) == ps[j]
    with pytest.raises(ValueError):
        prompts.recon_prompt("airplane", 60)
    # Underscores are kept verbatim in ReCon prompts.
    assert prompts.recon_prompt("night_stand", 2) == "A model of night_stand."


def test_pointclip_prompt_and_dispatch():
    assert prompts.pointclip_prompts("night_stand") == ["point cloud depth map of a night stand."]
    assert prompts.prompts("night_stand", "pointclip") == [
        "point cloud depth map of a night stand."
    ]
    assert prompts.prompts("night_stand", "recon") == prompts.recon_prompts("night_stand")
    assert prompts.TEMPLATES == ("recon", "pointclip")
    with pytest.raises(ValueError, match="clip_v2"):
        prompts.prompts("chair", "clip_v2")


def test_class_lists():
    assert len(classnames.MODELNET40) == 40 and len(classnames.MODELNET10) == 10
    assert set(classnames.MODELNET10) <= set(classnames.MODELNET40)
    assert list(classnames.MODELNET40) == sorted(classnames.MODELNET40)
    default = classnames.scanobjectnn_classes()
    assert len(default) == 15 and default[-1] == "toile"
    assert default == classnames.scanobjectnn_classes("toile")
    fixed = classnames.scanobjectnn_classes("toilet")
    assert fixed[-1] == "toilet" and fixed[:14] == default[:14]
    assert fixed[:3] == ("bag", "bin", "box") and fixed[10] == "bed"
    with pytest.raises(ValueError, match="toilets"):
        classnames.scanobjectnn_classes("toilets")


@pytest.mark.reference_data
@pytest.mark.parametrize(
    "filename, expected",
    [
        ("modelnet40_shape_names.txt", lambda: list(classnames.MODELNET40)),
        ("modelnet10_shape_names.txt", lambda: list(classnames.MODELNET10)),
        # The official list spells the last class correctly; "toile" is ReCon's typo.
        ("scanobjectnn_shape_names.txt", lambda: list(classnames.scanobjectnn_classes("toilet"))),
    ],
)
def test_class_lists_match_official_files(filename, expected):
    path = reference_path("labels", filename)
    assert classnames.read_names_file(path) == expected()


def test_read_names_file(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("  chair\n\ntable \nsofa")  # no final newline: the last class is still read
    assert classnames.read_names_file(p) == ["chair", "table", "sofa"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt"):
        classnames.read_names_file(empty)


# ------------------------------------------------------------------------------------------- CLIP


def _copy_tokenizer(dst: pathlib.Path) -> None:
    assert tiny_clip.write_tokenizer(dst) == "clip"


@pytest.fixture(scope="module")
def tiny_dir(tiny_clip_dir):
    """A local directory with a tiny random-weight Flax CLIP and the package's CLIP tokenizer files
    (conftest)."""
    return tiny_clip_dir


@pytest.fixture(scope="module")
def teacher(tiny_dir):
    return clip.load(tiny_dir)


def test_load_offline(teacher, tiny_dir):
    assert teacher.source == str(tiny_dir)
    assert teacher.image_size == 32 and teacher.dim == 16 and teacher.context_length == 77


def test_real_tokenizer_ids(teacher):
    ids = clip.tokenize(
        teacher, ["a photo of a cat", "A point cloud model of a night_stand.", "word " * 200]
    )
    assert ids.shape == (3, 77) and ids.dtype == np.int32
    cat = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert ids[0].tolist() == cat + [49407] * (77 - len(cat))
    night = [49406, 320, 2301, 3887, 2863, 539, 320, 930, 318, 2087, 269, 49407]
    assert ids[1, : len(night)].tolist() == night
    assert ids[2, 0] == 49406 and ids[2, -1] == 49407  # truncated to 77


def test_text_features_match_model(teacher):
    texts = [f"a photo of a {w}" for w in ("cat", "dog", "night_stand")]
    feats = clip.text_features(teacher, texts)
    assert feats.shape == (3, 16) and feats.dtype == jnp.float32
    ref = teacher.model.get_text_features(clip.tokenize(teacher, texts), params=teacher.params)
    np.testing.assert_allclose(np.asarray(feats), np.asarray(ref), rtol=1e-5, atol=1e-5)
    norms = np.linalg.norm(np.asarray(feats), axis=-1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # raw, not L2-normalised


def test_padding_after_the_end_token_changes_nothing(teacher):
    # The tiny teacher trains on prompts padded to the longest, not to 77
    # (tiny_clip._training_data): the text tower is causal and pools the first end token, so the
    # features and every gradient are the same as with 77 positions.
    import io

    import jax
    from PIL import Image

    texts = [prompts.recon_prompt(name, j) for name in ("chair", "night stand") for j in (0, 7, 59)]
    full = jnp.asarray(clip.tokenize(teacher, texts))  # (6, 77)
    length = int(np.max(np.argmax(np.asarray(full) == 49407, axis=1))) + 1
    assert 5 < length < 40
    short = full[:, :length]  # (6, L)

    def loss(params, ids):
        return jnp.sum(jnp.sin(teacher.model.get_text_features(input_ids=ids, params=params)))

    want_feats = teacher.model.get_text_features(input_ids=full, params=teacher.params)
    got_feats = teacher.model.get_text_features(input_ids=short, params=teacher.params)
    np.testing.assert_allclose(np.asarray(got_feats), np.asarray(want_feats), rtol=1e-5, atol=1e-6)
    want, got = (jax.grad(loss)(teacher.params, ids) for ids in (full, short))
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(want)[0], jax.tree_util.tree_leaves(got)
    ):
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path)
        )

    # what the trainer tokenizes: ReCon's 60 prompts of each class, padded to the longest
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    source = [{"image": png.getvalue(), "label": 0}]
    _, _, ids = tiny_clip._training_data(
        source, ["chair", "night stand"], teacher.tokenizer, "clip", 32, seed=0
    )  # (2, 60, L)
    captions = [
        prompts.recon_prompt(name, j) for name in ("chair", "night stand") for j in range(60)
    ]
    padded = np.asarray(clip.tokenize(teacher, captions))  # (120, 77)
    longest = int(np.max(np.argmax(padded == 49407, axis=1)))
    assert ids.shape == (2, 60, longest + 1)
    np.testing.assert_array_equal(np.asarray(ids).reshape(120, -1), padded[:, : longest + 1])


def test_text_features_chunks_and_compile_count(teacher):
    texts = prompts.recon_prompts("chair")[:20]
    before = (
        teacher.encode_text._cache_size() if hasattr(teacher.encode_text, "_cache_size") else None
    )
    chunked = clip.text_features(teacher, texts, chunk_size=8)  # chunks of 8, 8, 4 (padded to 8)
    ref = teacher.model.get_text_features(clip.tokenize(teacher, texts), params=teacher.params)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(ref), rtol=1e-5, atol=1e-5)
    for n in (1, 5, 8):  # all padded to a batch of 8: no new compilation
        np.testing.assert_allclose(
            np.asarray(clip.text_features(teacher, texts[:n])),
            np.asarray(ref[:n]),
            rtol=1e-5,
            atol=1e-5,
        )
    if before is not None:
        assert teacher.encode_text._cache_size() - before <= 1
    assert clip.text_features(teacher, []).shape == (0, 16)
    with pytest.raises(TypeError):
        clip.text_features(teacher, "a single string")


def test_prompt_bank_and_class_text_features(teacher):
    bank = np.asarray(clip.prompt_bank(teacher, CLASSES))
    assert bank.shape == (2, 20, 3, 16)
    picks = [(0, 0, 0), (0, 13, 0), (1, 2, 0), (1, 7, 1), (0, 19, 2), (1, 0, 2)]
    texts = [prompts.recon_prompt(CLASSES[c], p + 20 * s) for c, p, s in picks]
    assert texts[2] == "A model of night_stand."
    single = np.asarray(clip.text_features(teacher, texts))
    for k, (c, p, s) in enumerate(picks):
        np.testing.assert_allclose(bank[c, p, s], single[k], rtol=1e-5, atol=1e-5)

    summed = np.asarray(clip.class_text_features(teacher, CLASSES))
    assert summed.shape == (2, 16)
    np.testing.assert_allclose(summed, bank.sum(axis=(1, 2)), rtol=1e-5, atol=1e-4)
    # Independent reference: the model's own features of the 60 prompts, summed.
    ref = teacher.model.get_text_features(
        clip.tokenize(teacher, prompts.recon_prompts("night_stand")), params=teacher.params
    )
    np.testing.assert_allclose(summed[1], np.asarray(ref).sum(axis=0), rtol=1e-4, atol=1e-4)

    pc = np.asarray(clip.class_text_features(teacher, CLASSES, template="pointclip"))
    ref_pc = np.asarray(
        clip.text_features(teacher, [prompts.pointclip_prompts(n)[0] for n in CLASSES])
    )
    np.testing.assert_allclose(pc, ref_pc, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bogus"):
        clip.class_text_features(teacher, CLASSES, template="bogus")


def test_image_features(teacher):
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)  # NHWC
    feats = clip.image_features(teacher, images)
    assert feats.shape == (2, 16) and feats.dtype == jnp.float32
    # HF takes NCHW
    ref = teacher.model.get_image_features(
        np.transpose(images, (0, 3, 1, 2)), params=teacher.params
    )
    np.testing.assert_allclose(np.asarray(feats), np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.linalg.norm(np.asarray(feats), axis=-1), 1.0, atol=1e-3)
    # Channel-last matters: the same data read as NCHW gives different features.
    assert not np.allclose(
        np.asarray(feats),
        np.asarray(
            teacher.model.get_image_features(images.reshape(2, 3, 32, 32), params=teacher.params)
        ),
    )


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 32, 32), (2, 16, 16, 3), (2, 32, 32, 4)])
def test_image_features_bad_shape(teacher, shape):
    with pytest.raises(ValueError, match=r"\(" + ", ".join(str(s) for s in shape)):
        clip.image_features(teacher, np.zeros(shape, np.float32))


def test_load_missing_directory(tmp_path):
    missing = tmp_path / "no_such_clip"
    with pytest.raises(clip.TeacherLoadError) as info:
        clip.load(missing)
    assert str(missing) in str(info.value)
    assert "local directory" in str(info.value)


def test_load_pt_safetensors_without_torch(teacher, tmp_path):
    """A directory holding only PyTorch-format safetensors (as on the hub) loads without torch."""
    from flax import traverse_util
    from safetensors.numpy import save_file

    state = {}
    for key, value in traverse_util.flatten_dict(teacher.params).items():
        value = np.asarray(value)
        *head, leaf = key
        # Flax (in, out) / (H, W, in, out) -> PyTorch (out, in) / (out, in, H, W)
        if leaf == "kernel":
            leaf, value = "weight", (value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T)
        elif leaf in ("scale", "embedding"):
            leaf = "weight"
        # (ascontiguousarray would make 0-d 1-d)
        state[".".join([*head, leaf])] = np.array(value, order="C")
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    teacher.model.config.save_pretrained(tmp_path)
    _copy_tokenizer(tmp_path)
    loaded = clip.load(tmp_path)
    a = traverse_util.flatten_dict(teacher.params)
    b = traverse_util.flatten_dict(loaded.params)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=str(k))


def test_load_pytorch_bin_error_is_clear(teacher, tmp_path):
    """Only pytorch_model.bin: Flax load fails, the from_pt retry is tried, and the
    error says both."""
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    teacher.model.config.save_pretrained(tmp_path)
    with pytest.raises(clip.TeacherLoadError) as info:
        clip.load(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "from_pt=True" in msg


def test_load_incomplete_flax_weights_is_refused(teacher, tmp_path):
    """The fast load skips the random initialisation, so a parameter missing from the file is an
    error, never a silently random weight."""
    from flax import serialization, traverse_util

    flat = traverse_util.flatten_dict(teacher.params)
    dropped = sorted(flat)[0]
    del flat[dropped]
    (tmp_path / "flax_model.msgpack").write_bytes(
        serialization.msgpack_serialize(
            traverse_util.unflatten_dict({k: np.asarray(v) for k, v in flat.items()})
        )
    )
    teacher.model.config.save_pretrained(tmp_path)
    _copy_tokenizer(tmp_path)
    with pytest.raises(clip.TeacherLoadError) as info:
        clip.load(tmp_path)
    assert "lacks 1 of the model's parameters" in str(info.value) and "/".join(dropped) in str(
        info.value
    )
