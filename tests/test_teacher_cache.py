"""The cached teacher bank and the per-batch targets of both teacher modes."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from ddjax.data import image_augment, pipelines
from ddjax.teachers import cache, clip, prompts


@pytest.fixture(scope="module")
def teacher(tiny_clip_dir):
    return clip.load(str(tiny_clip_dir))


@pytest.fixture(scope="module")
def bank_dir(teacher, synthetic_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "bank"
    cache.build(
        teacher,
        synthetic_tiny,
        out,
        splits=("test",),
        views=2,
        image_pipeline="recon",
        batch_size=16,
        seed=3,
    )
    return out


def test_bank_contents(teacher, synthetic_tiny, bank_dir):
    text_bank, image_bank, manifest = cache.load(bank_dir, teacher=str(teacher.source), views=2)
    test = synthetic_tiny.as_data_source("test")
    texts = cache.class_texts(synthetic_tiny)
    assert text_bank.shape == (len(texts), 20, 3, teacher.dim)
    assert image_bank.shape == (len(test), 2, teacher.dim)
    assert (
        manifest["image_pipeline"] == "recon"
        and manifest["dataset"] == synthetic_tiny.info.full_name
    )
    # Text entry (c, p, s) is the feature of ReCon's prompt p + 20 s for class c.
    c, p, s = 5, 13, 2
    want = clip.text_features(teacher, [prompts.recon_prompt(texts[c], p + 20 * s)])[0]
    np.testing.assert_allclose(
        np.asarray(text_bank[c, p, s]), np.asarray(want), rtol=1e-4, atol=1e-5
    )
    # Image entry (r, v) is the image tower on view v of record r, augmented with rng [seed, r, v].
    r, v = 7, 1
    image = image_augment.preprocess(
        image_augment.decode_png(test[r]["image"]),
        "recon",
        np.random.default_rng([3, r, v]),
        size=teacher.image_size,
    )
    want = clip.image_features(teacher, image[None])[0]
    np.testing.assert_allclose(np.asarray(image_bank[r, v]), np.asarray(want), rtol=1e-4, atol=1e-5)
    # views differ
    assert not np.allclose(np.asarray(image_bank[r, 0]), np.asarray(image_bank[r, 1]))


def test_manifest_is_checked(bank_dir, tmp_path):
    with pytest.raises(
        ValueError, match=r"manifest.json\): field 'teacher' is .*, this run expects 'openai/clip"
    ):
        cache.load(bank_dir, teacher="openai/clip-vit-base-patch32")
    with pytest.raises(
        ValueError, match=r"field 'image_pipeline' is 'recon', this run expects 'clip'"
    ):
        cache.load(bank_dir, image_pipeline="clip")
    with pytest.raises(cache.CacheError, match=r"no teacher cache here .*configs/teacher_cache.py"):
        cache.load(tmp_path / "none")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (cache.TEXT_FILE, cache.IMAGE_FILE, cache.MANIFEST):
        (broken / f).write_bytes((bank_dir / f).read_bytes())
    manifest = json.loads((broken / cache.MANIFEST).read_text())
    manifest["views"] = 3
    (broken / cache.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        ValueError,
        match=r"image_features\.npy\): shape \(24, 2, 16\), the manifest says \(24, 3, 16\)",
    ):
        cache.load(broken)


def test_targets_in_both_modes(teacher, synthetic_tiny, bank_dir):
    text_bank, image_bank, _ = cache.load(bank_dir)
    source = pipelines.IndexedSource([synthetic_tiny.as_data_source("test")])
    transform = pipelines.PretrainTransform(
        num_points=64, image_pipeline="recon", image_size=teacher.image_size, num_views=2
    )
    examples = [transform.random_map(source[i], np.random.default_rng(i)) for i in (0, 5, 9)]
    batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
    cached = cache.cached_targets(image_bank, text_bank, batch)
    online = cache.online_targets(teacher, teacher.params, text_bank, batch)
    for i, e in enumerate(examples):
        p, s = int(e["prompt"]) % 20, int(e["prompt"]) // 20
        np.testing.assert_array_equal(
            np.asarray(cached["text_features"][i]), np.asarray(text_bank[e["label"], p, s])
        )
        np.testing.assert_array_equal(
            np.asarray(cached["image_features"][i]), np.asarray(image_bank[e["record"], e["view"]])
        )
        np.testing.assert_array_equal(
            np.asarray(online["text_features"][i]), np.asarray(cached["text_features"][i])
        )
    want = clip.image_features(teacher, np.asarray(batch["image"]))
    np.testing.assert_allclose(
        np.asarray(online["image_features"]), np.asarray(want), rtol=1e-5, atol=1e-6
    )


def test_teacher_cache_job_through_main(tiny_clip_dir, synthetic_tiny, tmp_path):
    import os
    import subprocess
    import sys

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    data_dir = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/teacher_cache.py:smoke",
            f"--config.teacher={tiny_clip_dir}",
            f"--config.data_dir={data_dir}",
            "--config.splits=('test',)",
            f"--workdir={tmp_path / 'bank'}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher cache: wrote 24 records x 2 views" in proc.stdout
    _, image_bank, _ = cache.load(tmp_path / "bank", views=2)
    assert image_bank.shape[:2] == (24, 2)


def test_tiny_clip_fallback_tokenizer(tmp_path):
    """The character-level BPE vocabulary ("fallback": also what the smoke teacher gets where the
    package's CLIP files are missing)."""
    from transformers import CLIPTokenizer

    from ddjax.teachers import tiny_clip

    assert tiny_clip.write_tokenizer(tmp_path, "fallback") == "fallback"
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    ids = tok("a cup.")["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|startoftext|>") and ids[
        -1
    ] == tok.convert_tokens_to_ids("<|endoftext|>")
    # one token per character
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["a</w>", "c", "u", "p</w>", ".</w>"]
