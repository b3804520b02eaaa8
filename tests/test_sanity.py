"""No silently wrong result: a collapsed or broken teacher is refused when a job starts, and no job
reports an accuracy computed from numbers that are not numbers (ddjax/teachers/sanity.py,
scoring.point_logits / require_finite, the tiny teacher's own report, the text tower's pooling).

Unit checks against numpy brute force, then the refusals as a user meets them, through main.py:
each one line naming its cause.
"""

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import scoring
from ddjax.jobs import pretrain as pretrain_job
from ddjax.teachers import clip, sanity, tiny_clip
from tests.test_bad_inputs import run_refused
from tests.test_train import data_root, rewrite_state

# ------------------------------------------------------------------------------------------------
# the checks themselves


def _cosines(x: np.ndarray) -> np.ndarray:
    """Brute force: every pair's cosine, by the definition."""
    n = len(x)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = np.dot(x[i], x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
    return out


def test_class_features_distinct_pass_and_the_closest_pair_is_named():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 16)) + 5.0  # a large common part: cosines near 0.99
    cos = _cosines(features)
    np.fill_diagonal(cos, -1)
    assert 0.95 < cos.max() < sanity.MAX_COSINE
    sanity.check_class_features(features, list("abcdef"), "src")  # passes
    i, j = np.unravel_index(np.argmax(cos), cos.shape)
    features[j] = features[i] * 3.0 + 1e-7  # the same direction, another length
    with pytest.raises(sanity.TeacherError) as info:
        sanity.check_class_features(features, list("abcdef"), "the teacher X", "do Y")
    message = str(info.value)
    names = sorted(("abcdef"[i], "abcdef"[j]))
    assert "(the teacher X)" in message and message.endswith("; do Y"), message
    assert re.search(rf"'{names[0]}' and '{names[1]}' have cosine 1\.0000000 \(1 of 15", message)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f: f.__setitem__((2, 3), np.nan), r"of 'c' are NaN or infinite"),
        (lambda f: f.__setitem__(1, 0.0), r"of 'b' are zero"),
        # 1 - 1e-6: collapsed (every measured collapsed teacher sits at or above 1 - 6e-6)
        (lambda f: f.__setitem__(3, f[0] + 1e-3 * f[3] / np.linalg.norm(f[3])), r"'a' and 'd'"),
    ],
)
def test_class_features_refused(change, match):
    features = np.random.default_rng(1).normal(size=(4, 8))
    features[0] *= 1000 / np.linalg.norm(features[0])
    change(features)
    with pytest.raises(sanity.TeacherError, match=match):
        sanity.check_class_features(features, list("abcd"), "src")


def test_image_features_must_vary():
    rng = np.random.default_rng(2)
    varied = rng.normal(size=(5, 8))
    sanity.check_image_features(varied, "src")
    same = np.repeat(varied[:1], 5, axis=0) * np.arange(1, 6)[:, None]  # one direction
    with pytest.raises(sanity.TeacherError, match=r"the same for 5 different renders"):
        sanity.check_image_features(same, "src")
    varied[4, 0] = np.inf
    with pytest.raises(sanity.TeacherError, match=r"NaN or infinite"):
        sanity.check_image_features(varied, "src")


def test_the_tiny_teachers_report_near_chance_is_refused(tmp_path):
    report = {"train_zero_shot_top1": 0.125, "classes": 12, "steps": 10, "tokenizer": "clip"}
    (tmp_path / tiny_clip.REPORT).write_text(json.dumps(report))
    with pytest.raises(sanity.TeacherError, match=r"top-1 on its 12-class train renders is 0\.125"):
        tiny_clip.check_report(tmp_path)
    report["train_zero_shot_top1"] = 2 / 12  # MIN_TOP1_OVER_CHANCE x chance: enough
    (tmp_path / tiny_clip.REPORT).write_text(json.dumps(report))
    assert tiny_clip.check_report(tmp_path) == report
    (tmp_path / tiny_clip.REPORT).unlink()
    with pytest.raises(sanity.TeacherError, match="report is missing or unreadable"):
        tiny_clip.check_report(tmp_path)


def test_statuses_of_point_logits():
    """FINITE, BAD_FEATURES (NaN from the model), BAD_ENSEMBLE (a ratio whose weighted sum, or its
    norm, overflows float32, or a zero feature): by hand."""
    feats = np.ones((4, 2, 3), np.float32)  # (B, k: image and text, D)
    feats[1, 0, 0] = np.nan
    feats[3] = 0.0
    text = jnp.asarray(np.eye(3, dtype=np.float32))
    logits, status = scoring.point_logits(jnp.asarray(feats), 0.25, text, ("image", "text"))
    assert np.asarray(status).tolist() == [0, 1, 0, 2]
    np.testing.assert_allclose(np.asarray(logits)[0], [1 / np.sqrt(3)] * 3, rtol=1e-6)
    # 3e38 is a float32; 3e38 x 1 + 1 is too, but the norm of (3e38, 3e38, 3e38) is not
    _, status = scoring.point_logits(jnp.asarray(feats[:1]), 3e38, text, ("image", "text"))
    assert np.asarray(status).tolist() == [2]
    with pytest.raises(scoring.NonFiniteError, match=r"\(config\.checkpoint\).* 1 of 4 clouds"):
        scoring.require_finite([0, 1, 0, 2], ratio=0.25)
    with pytest.raises(scoring.NonFiniteError, match=r"\(config\.ratios\).*ratio=3e\+38"):
        scoring.require_finite([0, 2], ratio=3e38, ratio_key="ratios")
    scoring.require_finite([0, 0], ratio=0.25)


def test_the_sweep_refuses_a_ratio_that_overflows():
    class Stub:  # finite features of the model's shape, whatever the input
        feature_types = ("image", "text")

        def infer_paths(self, variables, points, key, *, t, num_paths):
            return jnp.ones((num_paths, points.shape[0], 2, 3))

    batches = [{"points": np.zeros((2, 8, 3), np.float32), "label": np.zeros(2, int)}]
    batches[0]["valid"] = np.ones(2, bool)
    text = np.eye(3, dtype=np.float32)
    rows = scoring.sweep(Stub(), {}, batches, text, ratio=0.25, key=jax.random.key(0))
    assert len(rows) == len(scoring.SWEEP_N) * len(scoring.SWEEP_T)
    with pytest.raises(scoring.NonFiniteError, match=r"\(config\.ratio\)"):
        scoring.sweep(Stub(), {}, batches, text, ratio=3e38, key=jax.random.key(0))


def test_zero_feature_losses_are_noted_once(capsys):
    losses = pretrain_job.ZeroLosses()
    for step in range(3 * pretrain_job.ZERO_LOSS_STEPS):
        zero = step >= 10
        losses.update(step, {"loss_image": 0.0 if zero else 0.3, "loss_text": 0.2})
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"note: the image feature loss has been 0 (at most 1e-06) for "
        f"{pretrain_job.ZERO_LOSS_STEPS} steps, since step 10: its targets are the same for every "
        "sample, so nothing is being distilled; the teacher is collapsed (check its class text "
        "features and image features)"
    ]


# ------------------------------------------------------------------------------------------------
# the text tower's pooling and the tokenizer


def test_the_character_level_tokenizer_teacher_learns(teacher_dir, synthetic_tiny):
    """The fallback (no BPE files) learns: the tests' own teacher (conftest's TEST_TEACHER) reaches
    top-1 >= 0.5 on its 12-class renders, and its class features pass the check every job runs."""
    from ddjax.teachers import cache

    report = tiny_clip.check_report(teacher_dir)
    assert report["tokenizer"] == "fallback" and report["train_zero_shot_top1"] >= 0.5, report
    teacher = clip.load(teacher_dir)
    names = cache.class_texts(synthetic_tiny)
    sanity.check_class_features(clip.class_text_features(teacher, names), names, "the teacher")


def _save_clip(directory, tokenizer_dir=None, **ids) -> pathlib.Path:
    """A random-weight tiny CLIP with the given tokenizer and special-token ids (default: the
    tokenizer's own)."""
    from transformers import CLIPTokenizer, FlaxCLIPModel

    directory.mkdir(parents=True)
    tiny_clip.write_tokenizer(directory, tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(directory)
    config = tiny_clip.tiny_clip_config(
        image_size=32,
        width=32,
        layers=1,
        projection_dim=8,
        vocab_size=len(tokenizer),
        **(tiny_clip.special_token_ids(tokenizer) | ids),
    )
    FlaxCLIPModel(config, seed=0).save_pretrained(directory)
    return directory


def test_the_package_ships_clips_tokenizer():
    import hashlib

    folder = tiny_clip.PACKAGED_TOKENIZER_DIR
    sums = {
        "vocab.json": "3f0c4f7d2086b61b38487075278ea9ed04edb53a03cbb045b86c27190fa8fb69",
        "merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
    }
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
        assert digest in (folder / "SOURCE.md").read_text()
    assert "MIT License" in (folder / "LICENSE").read_text()


def test_write_tokenizer_choices(tmp_path, capsys, monkeypatch):
    from transformers import CLIPTokenizer

    for kind, arg in (("clip", None), ("fallback", "fallback")):
        folder = tmp_path / kind
        folder.mkdir()
        assert tiny_clip.write_tokenizer(folder, arg) == kind
        tok = CLIPTokenizer.from_pretrained(folder)
        ids = tok(["a cup."], padding="max_length", max_length=77)["input_ids"][0]
        assert len(ids) == 77 and ids[0] == tok.bos_token_id and tok.model_max_length == 77
        if kind == "fallback":  # one token per character (spaces split words), then the end
            assert (tok.bos_token_id, tok.eos_token_id, len(tok)) == (512, 513, 514)
            assert ids[:7] == [512, 320, 66, 84, 335, 269, 513]  # a</w> c u p</w> .</w>
        else:
            assert ids[:5] == [49406, 320, 1937, 269, 49407]
    with pytest.raises(tiny_clip.errors.UserError, match="holds no CLIP tokenizer"):
        tiny_clip.write_tokenizer(tmp_path / "clip", tmp_path / "fallback_missing")
    monkeypatch.setattr(tiny_clip, "PACKAGED_TOKENIZER_DIR", tmp_path / "gone")
    capsys.readouterr()
    assert tiny_clip.write_tokenizer(tmp_path / "clip") == "fallback"
    assert "the tiny teacher uses a character-level vocabulary" in capsys.readouterr().err


def test_a_text_tower_pooling_another_token_is_refused_at_load(tmp_path):
    # The end-of-text bug: the character-level vocabulary (end of text 513) with the text config's
    # default id (49407): the tower would pool the start token of every caption.
    broken = _save_clip(tmp_path / "broken", "fallback", eos_token_id=49407)
    with pytest.raises(
        clip.TeacherLoadError, match=r"pools the text feature at eos_token_id 49407"
    ):
        clip.load(broken)
    # With the tokenizer's own ids the feature is the end-of-text token's, by hand: the final
    # hidden state at the first 513 through the projection.
    teacher = clip.load(_save_clip(tmp_path / "fixed", "fallback"))
    ids = clip.tokenize(teacher, ["a cup.", "a cone."])
    out = teacher.model.module.apply(
        {"params": teacher.params},
        ids,
        np.ones_like(ids),
        np.broadcast_to(np.arange(77), ids.shape),
        method=lambda m, *a: m.text_model(*a),
    )
    end = np.argmax(ids == 513, axis=1)
    pooled = np.asarray(out.last_hidden_state)[np.arange(2), end]
    kernel = np.asarray(teacher.params["text_projection"]["kernel"])
    np.testing.assert_allclose(
        np.asarray(clip.text_features(teacher, ["a cup.", "a cone."])), pooled @ kernel, atol=1e-5
    )
    assert not np.allclose(pooled[0], pooled[1], atol=1e-3)


# ------------------------------------------------------------------------------------------------
# through main.py, as a user meets them


def _collapsed_teacher(directory, tower: str) -> pathlib.Path:
    """A tiny CLIP whose `tower` ('text' or 'visual') projects every input onto one line (the first
    hidden unit times one vector), as a tower that pools the wrong token does: any two features
    of one sign have cosine 1."""
    from transformers import FlaxCLIPModel

    _save_clip(directory)
    model = FlaxCLIPModel.from_pretrained(directory)
    params = jax.tree_util.tree_map(np.asarray, model.params)
    kernel = params[f"{tower}_projection"]["kernel"]  # (width, D)
    first_unit = np.eye(kernel.shape[0])[0]
    params[f"{tower}_projection"]["kernel"] = np.outer(first_unit, kernel[0])
    model.save_pretrained(directory, params=params)
    return directory


@pytest.mark.parametrize(
    "tower, why",
    [
        ("text", r"its text features do not tell the classes apart: '.*' and '.*' have cosine 1"),
        ("visual", r"its image features are the same for 16 different renders"),
    ],
)
def test_pretraining_refuses_a_collapsed_teacher(tower, why, synthetic_tiny, tmp_path, capsys):
    teacher = _collapsed_teacher(tmp_path / "teacher", tower)
    argv = [
        "--config=configs/pretrain.py:smoke",
        f"--workdir={tmp_path / 'run'}",
        "--config.dataset=synthetic_shapes/tiny",
        f"--config.data_dir={data_root(synthetic_tiny)}",
        "--config.tiny_teacher.enabled=False",
        f"--config.teacher={teacher}",
        "--config.model.teacher_dim=8",
    ]
    line = run_refused(capsys, argv, f"config.teacher={teacher}")
    assert line.startswith("error: refused the teacher") and re.search(why, line), line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_tiny_teacher_near_chance_stops_the_run(synthetic_tiny, tmp_path, capsys):
    argv = [
        "--config=configs/pretrain.py:smoke",
        f"--workdir={tmp_path / 'run'}",
        "--config.dataset=synthetic_shapes/tiny",
        f"--config.data_dir={data_root(synthetic_tiny)}",
        "--config.tiny_teacher.steps=2",
        "--config.tiny_teacher.width=32",
    ]
    line = run_refused(capsys, argv, "the tiny teacher")
    assert "near chance (0.083" in line and "--config.tiny_teacher.steps" in line, line


def _zeroshot(run, data_dir, out, *extra) -> list[str]:
    return [
        "--config=configs/zeroshot.py:smoke",
        f"--config.checkpoint={run}",
        "--config.dataset=synthetic_shapes/tiny",
        f"--config.data_dir={data_dir}",
        "--config.npoints=128",
        "--config.point_all=150",
        f"--workdir={out}",
        *extra,
    ]


def test_identical_class_features_are_refused(run_dir, synthetic_tiny, tmp_path, capsys):
    names = json.loads((run_dir / "config.json").read_text())["resolved"]["class_texts"]
    features = np.tile(np.arange(1.0, 65.0, dtype=np.float32), (len(names), 1))  # (C, 64)
    np.save(tmp_path / "same.npy", features)
    (tmp_path / "same.txt").write_text("\n".join(names) + "\n")
    argv = _zeroshot(
        run_dir,
        data_root(synthetic_tiny),
        tmp_path / "out",
        f"--config.text_features={tmp_path / 'same.npy'}",
    )
    line = run_refused(capsys, argv, f"text features {tmp_path / 'same.npy'}")
    assert (
        "do not tell the classes apart" in line
        and f"({len(names) * (len(names) - 1) // 2} of" in line
    )


def test_nan_weights_are_refused(run_dir, synthetic_tiny, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)

    def poison(state):  # a run that diverged: every parameter NaN
        nan = lambda x: np.full_like(np.asarray(x), np.nan)
        return state | {"params": jax.tree_util.tree_map(nan, state["params"])}

    rewrite_state(run, 2, poison)
    line = run_refused(
        capsys, _zeroshot(run, data_root(synthetic_tiny), tmp_path / "out"), "config.checkpoint"
    )
    assert "the model's features of 24 of 24 clouds are NaN or infinite" in line, line


RATIO = "--config.ratio=3e38"  # a float32, which the config check lets through


@pytest.mark.parametrize("job", ["zeroshot", "classify", "attack", "certify"])
def test_a_ratio_that_overflows_is_refused(job, run_dir, synthetic_tiny, tmp_path, capsys):
    data = [
        f"--config.data_dir={data_root(synthetic_tiny)}",
        "--config.dataset=synthetic_shapes/tiny",
    ]
    common = [
        f"--config.checkpoint={run_dir}",
        "--config.npoints=128",
        "--config.point_all=150",
        RATIO,
    ]
    argv = {
        "zeroshot": _zeroshot(run_dir, data_root(synthetic_tiny), tmp_path / "out", RATIO),
        "classify": [
            "--config=configs/classify.py",
            *common,
            "--config.labels=chair,table,cone",
            f"--config.input={tmp_path / 'cloud.xyz'}",
        ],
        "attack": [
            "--config=configs/attack.py:smoke",
            *common,
            *data,
            "--config.max_shapes=4",
            "--config.batch_size=4",
            "--config.settings=1:0",
            "--config.attacks=pgd",
            "--config.modes=paper",
            "--config.eps=0.05",
            "--config.steps=2",
            "--config.curve_every=1",
            "--config.seeds=1",
            f"--workdir={tmp_path / 'out'}",
        ],
        "certify": [
            "--config=configs/certify.py:smoke",
            *common,
            *data,
            "--config.t_values=300",
            "--config.n0=4",
            "--config.n=8",
            "--config.draws_per_step=4",
            "--config.max_shapes=2",
            "--config.skip=1",
            f"--workdir={tmp_path / 'out'}",
        ],
    }[job]
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "cloud.xyz", rng.normal(size=(200, 3)))
    line = run_refused(capsys, argv, "config.ratio")
    assert "ratio=3e+38 has no finite direction" in line, line
    assert not list((tmp_path / "out").glob("*.json")) if (tmp_path / "out").exists() else True
