"""The CLIP-teacher image pipelines: ReCon's quirks (channel swap, ImageNet stats, mandatory cutout)
reproduced on purpose, CLIP's own preprocessing, and the individual steps."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ddjax.data import image_augment as ia

POOL = (
    "AutoContrast",
    "Brightness",
    "Color",
    "Contrast",
    "Equalize",
    "Identity",
    "Posterize",
    "Rotate",
    "Sharpness",
    "ShearX",
    "ShearY",
    "Solarize",
    "TranslateX",
    "TranslateY",
)


def _random_image(h, w, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def _unnormalize_255(x, mean, std):
    return ia.denormalize(x, mean, std) * 255.0


# ----------------------------------------------------------------------------- channel swap


def test_swap_channels_moves_red_to_blue():
    red = np.zeros((5, 7, 3), np.uint8)
    red[..., 0] = 255
    out = ia.swap_channels(red)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    assert (out[..., 2] == 255).all() and (out[..., :2] == 0).all()
    img = _random_image(9, 4)
    np.testing.assert_array_equal(ia.swap_channels(img), img[..., ::-1])
    rgba = _random_image(9, 4, channels=4)
    np.testing.assert_array_equal(ia.swap_channels(rgba), rgba[..., 2::-1])  # alpha dropped


def test_recon_pipeline_puts_red_signal_in_blue_channel():
    red = np.zeros((120, 90, 3), np.uint8)
    red[..., 0] = 255
    for seed in range(8):
        out = ia.preprocess(red, "recon", np.random.default_rng(seed))
        means = (
            _unnormalize_255(out, ia.IMAGENET_MEAN, ia.IMAGENET_STD).reshape(-1, 3).mean(0) / 255
        )
        # Only the grey cutout (<= 17x17 of 224x224 at 127/255) can put anything in red/green.
        assert means[0] < 0.02 and means[1] < 0.02, (seed, means)
        assert means[2] > 0.3, (seed, means)
    # CLIP's pipeline does not swap: the signal stays red.
    out = ia.preprocess(red, "clip", None)
    means = _unnormalize_255(out, ia.CLIP_MEAN, ia.CLIP_STD).reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, [1.0, 0.0, 0.0], atol=1e-5)


# ----------------------------------------------------------------------------- normalisation


def test_normalize_uses_imagenet_statistics():
    value = round(0.485 * 255)  # 124, as close to the red mean as uint8 allows
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = value
    out = ia.normalize(img, ia.IMAGENET_MEAN, ia.IMAGENET_STD)
    assert out.dtype == np.float32 and out.shape == (4, 6, 3)
    assert abs(float(out[0, 0, 0])) < 0.01
    expected = (np.array([value, 0, 0]) / 255.0 - np.array(ia.IMAGENET_MEAN)) / np.array(
        ia.IMAGENET_STD
    )
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-6, atol=1e-6)
    assert ia.IMAGENET_MEAN == (0.485, 0.456, 0.406) and ia.IMAGENET_STD == (0.229, 0.224, 0.225)
    assert ia.CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert ia.CLIP_STD == (0.26862954, 0.26130258, 0.27577711)


def test_recon_pipeline_normalises_with_imagenet_not_clip_stats():
    grey = np.full((50, 50, 3), 200, np.uint8)  # constant: every op of the pool keeps it constant
    out = ia.recon_pipeline(grey, np.random.default_rng(0), ops=("Identity",))
    un = _unnormalize_255(out, ia.IMAGENET_MEAN, ia.IMAGENET_STD)
    not_cut = np.abs(un - 127).max(axis=-1) > 1e-3
    np.testing.assert_allclose(un[not_cut], 200.0, atol=1e-3)
    expected = (200 / 255 - np.array(ia.IMAGENET_MEAN)) / np.array(ia.IMAGENET_STD)
    np.testing.assert_allclose(
        out[not_cut], np.broadcast_to(expected, out[not_cut].shape), atol=1e-5
    )


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("pipeline", ia.PIPELINES)
@pytest.mark.parametrize("shape", [(100, 150, 3), (300, 300, 3), (37, 500, 3), (224, 224, 4)])
def test_output_size_and_dtype(pipeline, shape):
    img = _random_image(*shape[:2], seed=1, channels=shape[2])
    out = ia.preprocess(img, pipeline, np.random.default_rng(3))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("pipeline", ia.PIPELINES)
def test_other_output_size(pipeline):
    out = ia.preprocess(_random_image(80, 60), pipeline, np.random.default_rng(0), size=96)
    assert out.shape == (96, 96, 3) and out.dtype == np.float32


# ----------------------------------------------------------------------------- cutout


def _reference_cutout_abs(img, x0, y0, v=16):
    """FixMatch's CutoutAbs, verbatim arithmetic, with the random centre given."""
    pil = Image.fromarray(img)
    w, h = pil.size
    x0 = int(max(0, x0 - v / 2.0))
    y0 = int(max(0, y0 - v / 2.0))
    x1 = int(min(w, x0 + v))
    y1 = int(min(h, y0 + v))
    pil = pil.copy()
    ImageDraw.Draw(pil).rectangle((x0, y0, x1, y1), (127, 127, 127))
    return np.asarray(pil)


def _changed_box(before, after):
    changed = np.any(before != after, axis=-1)
    rows, cols = np.nonzero(changed)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return changed, (top, left, bottom, right)


def test_cutout_box_arithmetic():
    # Interior: 17 x 17 (PIL's rectangle includes both corners).
    assert ia.cutout_box(100, 100, 50.5, 50.5) == (42, 42, 59, 59)
    # Top/left border: the box is shifted to start at 0, not clipped.
    assert ia.cutout_box(100, 100, 3.0, 2.0) == (0, 0, 17, 17)
    # Right/bottom border: clipped to the image, 9 pixels at the extreme.
    assert ia.cutout_box(100, 100, 99.99, 99.99) == (91, 91, 100, 100)
    assert ia.cutout_box(100, 100, 90.0, 10.0) == (2, 82, 19, 99)


def test_cutout_on_constant_image_paints_only_a_grey_box():
    h, w = 60, 80
    base = np.full((h, w, 3), 200, np.uint8)
    interior = 0
    for seed in range(200):
        out = ia.cutout(base, np.random.default_rng(seed))
        assert out.shape == base.shape and out.dtype == np.uint8
        changed, (top, left, bottom, right) = _changed_box(base, out)
        # Exactly one filled rectangle, all grey; everything else untouched.
        assert changed.sum() == (bottom - top) * (right - left)
        assert (out[changed] == 127).all() and (out[~changed] == 200).all()
        assert 9 <= bottom - top <= 17 and 9 <= right - left <= 17
        # It is FixMatch's CutoutAbs for the centre drawn as x0 ~ U(0, W), then y0 ~ U(0, H).
        replay = np.random.default_rng(seed)
        x0, y0 = replay.uniform(0, w), replay.uniform(0, h)
        assert (top, left, bottom, right) == ia.cutout_box(h, w, x0, y0)
        np.testing.assert_array_equal(out, _reference_cutout_abs(base, x0, y0))
        if x0 + 8 < w - 1 and y0 + 8 < h - 1:
            interior += 1
            assert (bottom - top, right - left) == (17, 17)
    assert interior > 100
    assert (base == 200).all()  # input not modified


def test_rand_augment_mc_always_applies_cutout():
    base = np.full((64, 64, 3), 255, np.uint8)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out = ia.rand_augment_mc(base, rng, ops=("Identity",))
        changed, box = _changed_box(base, out)
        assert (out[changed] == 127).all() and 81 <= changed.sum() <= 289
        # Draw order of RandAugmentMC: ops (with replacement), then per op v and the p=0.5 coin,
        # then the cutout centre.
        replay = np.random.default_rng(seed)
        replay.integers(0, 1, size=2)
        for _ in range(2):
            replay.integers(1, 10)
            replay.random()
        x0, y0 = replay.uniform(0, 64), replay.uniform(0, 64)
        assert box == ia.cutout_box(64, 64, x0, y0)


def test_recon_pipeline_cutout_on_white_image():
    white = np.full((90, 130, 3), 255, np.uint8)
    for seed in range(5):
        un = _unnormalize_255(
            ia.preprocess(white, "recon", np.random.default_rng(seed)),
            ia.IMAGENET_MEAN,
            ia.IMAGENET_STD,
        )
        grey = np.all(np.abs(un - 127) < 1e-3, axis=-1)
        assert grey.sum() >= 81, seed
        # With the pool restricted to Identity, only the cutout changes the (white) image.
        un = _unnormalize_255(
            ia.recon_pipeline(white, np.random.default_rng(seed), ops=("Identity",)),
            ia.IMAGENET_MEAN,
            ia.IMAGENET_STD,
        )
        grey = np.all(np.abs(un - 127) < 1e-3, axis=-1)
        assert 81 <= grey.sum() <= 289
        np.testing.assert_allclose(un[~grey], 255.0, atol=1e-3)


# ----------------------------------------------------------------------------- determinism


def test_recon_pipeline_is_deterministic_given_the_rng():
    img = _random_image(100, 150, seed=7)
    a = ia.preprocess(img, "recon", np.random.default_rng(123))
    b = ia.preprocess(img, "recon", np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    c = ia.preprocess(img, "recon", np.random.default_rng(124))
    assert not np.array_equal(a, c)
    rng = np.random.default_rng(5)
    assert not np.array_equal(ia.preprocess(img, "recon", rng), ia.preprocess(img, "recon", rng))


def test_clip_pipeline_ignores_the_rng():
    img = _random_image(100, 150, seed=7)
    a = ia.preprocess(img, "clip", np.random.default_rng(1))
    np.testing.assert_array_equal(a, ia.preprocess(img, "clip", np.random.default_rng(2)))
    np.testing.assert_array_equal(a, ia.preprocess(img, "clip", None))


# ----------------------------------------------------------------------------- CLIP pipeline


def _clip_normalize_by_hand(crop):
    return (crop.astype(np.float64) / 255.0 - np.array(ia.CLIP_MEAN)) / np.array(ia.CLIP_STD)


@pytest.mark.parametrize("width, left", [(448, 112), (225, 0), (226, 1), (227, 2)])
def test_clip_pipeline_crop_and_normalise_by_hand(width, left):
    # Shorter side already 224: no resize, a centre crop with Python's (half-to-even) rounding.
    img = _random_image(224, width, seed=width)
    out = ia.preprocess(img, "clip", None)
    np.testing.assert_allclose(out, _clip_normalize_by_hand(img[:, left : left + 224]), atol=1e-5)
    tall = np.ascontiguousarray(img.transpose(1, 0, 2))
    out = ia.preprocess(tall, "clip", None)
    np.testing.assert_allclose(out, _clip_normalize_by_hand(tall[left : left + 224]), atol=1e-5)


def test_clip_pipeline_with_resize():
    img = _random_image(300, 600, seed=11)
    resized = np.asarray(Image.fromarray(img).resize((448, 224), Image.Resampling.BICUBIC))
    out = ia.preprocess(img, "clip", None)
    np.testing.assert_allclose(out, _clip_normalize_by_hand(resized[:, 112:336]), atol=1e-5)
    # Shorter side 100 -> 224, longer 333 -> int(224 * 333 / 100) = 745, crop offset round(260.5) =
    # 260.
    img = _random_image(333, 100, seed=12)
    assert ia.resize_shorter_side(img, 224).shape == (745, 224, 3)
    resized = np.asarray(Image.fromarray(img).resize((224, 745), Image.Resampling.BICUBIC))
    out = ia.preprocess(img, "clip", None)
    np.testing.assert_allclose(out, _clip_normalize_by_hand(resized[260:484]), atol=1e-5)
    # A constant image stays exactly constant.
    const = np.full((37, 91, 3), (10, 128, 250), np.uint8)
    out = ia.preprocess(const, "clip", None)
    np.testing.assert_allclose(
        out, np.broadcast_to(_clip_normalize_by_hand(const[0, 0]), out.shape), atol=1e-5
    )


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((10, 10), np.uint8), r"shape \(10, 10\)"),
        (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\)"),
        (np.zeros((0, 10, 3), np.uint8), r"shape \(0, 10, 3\)"),
        (np.zeros((10, 10, 3), np.float32), r"dtype float32"),
        ([[[0, 0, 0]]], r"got list"),
    ],
)
@pytest.mark.parametrize("pipeline", ia.PIPELINES)
def test_bad_images_raise(image, match, pipeline):
    with pytest.raises(ValueError, match=match):
        ia.preprocess(image, pipeline, np.random.default_rng(0))


def test_unknown_pipeline_and_bad_arguments_raise():
    img = _random_image(32, 32)
    with pytest.raises(ValueError, match=r"unknown image pipeline 'imagenet'.*'recon', 'clip'"):
        ia.preprocess(img, "imagenet", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"size must be a positive int, got 0"):
        ia.preprocess(img, "clip", None, size=0)
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator, got NoneType"):
        ia.preprocess(img, "recon", None)
    with pytest.raises(ValueError, match=r"unknown RandAugment op 'Invert'"):
        ia.apply_op(img, "Invert", 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unknown: \['Cutout'\]"):
        ia.rand_augment_mc(img, np.random.default_rng(0), ops=("Identity", "Cutout"))


# ----------------------------------------------------------------------------- RandAugment pool


def test_op_pool_is_fixmatchs_fourteen_ops():
    assert ia.RAND_AUGMENT_POOL == POOL
    assert tuple(ia.RAND_AUGMENT_OPS) == POOL
    with pytest.raises(TypeError):
        ia.RAND_AUGMENT_OPS["Invert"] = None  # read-only: no global mutable state


@pytest.mark.parametrize("name", POOL)
def test_each_op_runs_and_keeps_the_size(name):
    img = _random_image(48, 64, seed=2)
    rng = np.random.default_rng(0)
    for v in range(1, 10):
        out = ia.RAND_AUGMENT_OPS[name](img, v, np.random.default_rng(v))
        assert out.shape == img.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, ia.apply_op(img, name, v, np.random.default_rng(v)))
    if name == "Identity":
        np.testing.assert_array_equal(ia.apply_op(img, name, 5, rng), img)


def test_op_magnitudes():
    rng = np.random.default_rng(0)
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # 1 x 256 x 3
    # Solarize v=5: threshold 256 - int(5 * 256 / 10) = 128.
    out = ia.apply_op(ramp, "Solarize", 5, rng)[0, :, 0].astype(int)
    x = np.arange(256)
    np.testing.assert_array_equal(out, np.where(x < 128, x, 255 - x))
    # Posterize v=9: int(9 * 4 / 10) + 4 = 7 bits kept; v=1: 4 bits.
    np.testing.assert_array_equal(ia.apply_op(ramp, "Posterize", 9, rng)[0, :, 0], x & 0xFE)
    np.testing.assert_array_equal(ia.apply_op(ramp, "Posterize", 1, rng)[0, :, 0], x & 0xF0)
    # Brightness v=5: factor 5 * 0.9 / 10 + 0.05 = 0.5.
    const = np.full((8, 8, 3), 200, np.uint8)
    np.testing.assert_array_equal(ia.apply_op(const, "Brightness", 5, rng), 100)
    # TranslateX v=5: |shift| = int(0.15 * 40) = 6 pixels, random sign, black fill.
    img = _random_image(20, 40, seed=4)
    signs = set()
    for seed in range(10):
        out = ia.apply_op(img, "TranslateX", 5, np.random.default_rng(seed))
        left = np.zeros_like(img)
        left[:, :34] = img[:, 6:]
        right = np.zeros_like(img)
        right[:, 6:] = img[:, :34]
        assert np.array_equal(out, left) or np.array_equal(out, right)
        signs.add(np.array_equal(out, left))
    assert signs == {True, False}
    # Rotate v=9 -> +-27 degrees.
    out = ia.apply_op(img, "Rotate", 9, np.random.default_rng(0))
    pil = Image.fromarray(img)
    assert any(np.array_equal(out, np.asarray(pil.rotate(a))) for a in (27, -27))


# ----------------------------------------------------------------------------- other steps


def test_random_resized_crop_params():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = ia.random_resized_crop_params(256, 256, rng)
        assert 0 <= top and top + h <= 256 and 0 <= left and left + w <= 256
        assert 0.6 <= h * w / 256**2 <= 1.0
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    # Impossible scale -> torchvision's central-crop fallback with the ratio clamped.
    assert ia.random_resized_crop_params(100, 300, rng, scale=(2.0, 3.0)) == (0, 83, 100, 133)
    assert ia.random_resized_crop_params(300, 100, rng, scale=(2.0, 3.0)) == (83, 0, 133, 100)
    assert ia.random_resized_crop_params(100, 120, rng, scale=(2.0, 3.0)) == (0, 0, 100, 120)
    out = ia.random_resized_crop(_random_image(256, 256), rng)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_flip_and_resize_steps():
    img = _random_image(30, 40)
    flips = [ia.random_horizontal_flip(img, np.random.default_rng(s)) for s in range(10)]
    assert all(np.array_equal(f, img) or np.array_equal(f, img[:, ::-1]) for f in flips)
    assert any(np.array_equal(f, img[:, ::-1]) for f in flips) and any(
        np.array_equal(f, img) for f in flips
    )
    out = ia.resize_square(img)
    np.testing.assert_array_equal(
        out, np.asarray(Image.fromarray(img).resize((256, 256), Image.Resampling.BICUBIC))
    )
    assert ia.center_crop(img, 30).shape == (30, 30, 3)
    with pytest.raises(ValueError, match=r"at least 31x31"):
        ia.center_crop(img, 31)


# ----------------------------------------------------------------------------- PNG helpers


def test_png_roundtrip_and_alpha():
    img = _random_image(13, 17)
    data = ia.encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(ia.decode_png(data), img)
    rgba = _random_image(13, 17, channels=4)
    decoded = ia.decode_png(ia.encode_png(rgba))
    assert decoded.shape == (13, 17, 3)
    np.testing.assert_array_equal(decoded, rgba[..., :3])
    grey = img[..., 0]
    np.testing.assert_array_equal(
        ia.decode_png(ia.encode_png(grey)), np.repeat(grey[..., None], 3, -1)
    )
    with pytest.raises(ValueError, match=r"could not decode image bytes \(9 bytes\)"):
        ia.decode_png(b"not a png")
    with pytest.raises(ValueError, match=r"float64"):
        ia.encode_png(np.zeros((4, 4, 3)))
