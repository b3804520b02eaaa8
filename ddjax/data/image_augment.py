"""Image preprocessing for the frozen CLIP image teacher: numpy in, numpy out, on CPU.

Two pipelines, both ``uint8[H, W, 3|4] -> f32[size, size, 3]`` (NHWC, channels last):

``"recon"``
    ReCon's training image pipeline (``utils/transforms.py::transform_train`` plus
    ``datasets/ShapeNet55Dataset.py``), reproduced step by step with PIL + numpy:

    1. ``swap_channels`` -- ReCon reads the rendering with ``cv2.imread`` (BGR) and hands that
       array to ``transforms.ToPILImage`` as if it were RGB, so red and blue are swapped relative
       to the file. The swap is reproduced (``img[..., ::-1]``).
    2. ``resize_square`` -- ``Image.resize((256, 256))`` with PIL's default resample (bicubic).
    3. ``random_horizontal_flip`` -- p = 0.5.
    4. ``random_resized_crop`` -- torchvision's ``RandomResizedCrop(224, scale=(0.64, 1.0))``:
       log-uniform aspect ratio in (3/4, 4/3), ten attempts, then the central-crop fallback;
       bicubic resize of the crop.
    5. ``rand_augment_mc`` -- FixMatch's ``RandAugmentMC(n=2, m=10)``: two ops drawn *with
       replacement* from the 14-op pool, each applied with probability 0.5 at a magnitude
       ``v ~ randint[1, 9]``, followed ALWAYS by a grey (127) ``cutout`` (``CutoutAbs(img, 16)``).
    6. ``normalize`` -- ``/255`` then ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224,
       0.225), *not* CLIP's statistics, although the images feed a CLIP encoder.

    The channel swap, the ImageNet statistics and the mandatory cutout are quirks (arguably bugs)
    of ReCon. They are reproduced ON PURPOSE so that a model distilled here sees the same teacher
    inputs that ReCon's published numbers were obtained with. Two further details of FixMatch's
    ``CutoutAbs`` are kept too: the box's top-left corner is clamped to 0 *before* the far edge
    is computed (so at the top/left border the box is shifted, not clipped), and PIL's
    ``ImageDraw.rectangle`` includes both corners, so away from the borders the grey box is
    17 x 17 pixels (it is 9 to 17 pixels per side in general); see ``cutout_box``.

``"clip"``
    CLIP's own preprocessing (the correct one): no channel swap, shorter side resized to
    ``size`` (bicubic), centre crop ``size`` (torchvision rounding), ``/255``, CLIP mean/std.
    Deterministic; the rng is accepted and ignored.

Randomness comes only from the explicit ``np.random.Generator`` passed in (the draws follow the
order of the reference code, but torch's and Python's generators are of course not replayed);
the module holds no mutable global state.
"""

from __future__ import annotations

import io
import math
import types
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

__all__ = [
    "PIPELINES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "RAND_AUGMENT_POOL",
    "RAND_AUGMENT_OPS",
    "CUTOUT_SIZE",
    "CUTOUT_FILL",
    "preprocess",
    "recon_pipeline",
    "clip_pipeline",
    "swap_channels",
    "resize_square",
    "random_horizontal_flip",
    "random_resized_crop_params",
    "random_resized_crop",
    "apply_op",
    "rand_augment_mc",
    "cutout_box",
    "cutout",
    "normalize",
    "denormalize",
    "resize_shorter_side",
    "center_crop",
    "decode_png",
    "encode_png",
]

PIPELINES: tuple[str, ...] = ("recon", "clip")

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

RECON_RESIZE: int = 256
RRC_SCALE: tuple[float, float] = (0.64, 1.0)
RRC_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
CUTOUT_SIZE: int = 16  # FixMatch: CutoutAbs(img, int(32 * 0.5))
CUTOUT_FILL: tuple[int, int, int] = (127, 127, 127)
_PARAMETER_MAX = 10  # FixMatch's PARAMETER_MAX

Rng = np.random.Generator


# ----------------------------------------------------------------------------- validation helpers


def _check_image(image: np.ndarray, *, allow_alpha: bool = True) -> np.ndarray:
    """Returns `image` as uint8[H, W, 3] (alpha dropped) or raises ValueError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"expected a numpy uint8 image of shape (H, W, 3) or (H, W, 4), "
            f"got {type(image).__name__}"
        )
    ok_channels = (3, 4) if allow_alpha else (3,)
    if (
        image.ndim != 3
        or image.shape[-1] not in ok_channels
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        want = "(H, W, 3) or (H, W, 4)" if allow_alpha else "(H, W, 3)"
        raise ValueError(
            f"expected an image of shape {want} with H, W >= 1, got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype} (shape {image.shape})")
    return image[..., :3]


def _check_size(size: int, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return int(size)


def _check_rng(rng: object) -> Rng:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image))


def _to_np(img: Image.Image) -> np.ndarray:
    return np.array(img, dtype=np.uint8)


# ----------------------------------------------------------------------------- PNG helpers


def decode_png(data: bytes) -> np.ndarray:
    """Decodes PNG bytes with PIL -> uint8[H, W, 3] RGB (file order; alpha dropped, not composited).

    Grey and palette images are expanded to RGB; 16-bit grey is reduced to 8 bits (high byte).
    Raises ValueError if the bytes cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L"):
                grey = np.asarray(img).astype(np.uint32) >> 8
                grey = np.clip(grey, 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=-1)
            # PIL's RGBA/LA -> RGB conversion drops alpha (no compositing), like cv2.IMREAD_COLOR.
            return _to_np(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
        raise ValueError(f"could not decode image bytes ({len(data)} bytes): {e}") from None


def encode_png(image: np.ndarray) -> bytes:
    """Encodes uint8[H, W] / [H, W, 3] / [H, W, 4] as PNG bytes (lossless)."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)))
    ):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"encode_png expects uint8 (H, W), (H, W, 3) or (H, W, 4), "
            f"got shape {shape} dtype {dtype}"
        )
    buf = io.BytesIO()
    _to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- recon steps 1-4


def swap_channels(image: np.ndarray) -> np.ndarray:
    """ReCon's accidental RGB <-> BGR swap (cv2.imread output treated as RGB): img[..., ::-1]."""
    image = _check_image(image)
    return np.ascontiguousarray(image[..., ::-1])


def resize_square(image: np.ndarray, size: int = RECON_RESIZE) -> np.ndarray:
    """ReCon's ``ResizeImage``: ``Image.resize((size, size))`` with PIL's default resample
    (bicubic)."""
    image = _check_image(image)
    size = _check_size(size)
    return _to_np(_to_pil(image).resize((size, size)))


def random_horizontal_flip(image: np.ndarray, rng: Rng, p: float = 0.5) -> np.ndarray:
    """torchvision ``RandomHorizontalFlip(p)``: flips left-right if ``rng.random() < p``."""
    image = _check_image(image)
    if _check_rng(rng).random() < p:
        return np.ascontiguousarray(image[:, ::-1])
    return image


def random_resized_crop_params(
    height: int,
    width: int,
    rng: Rng,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` -> (top, left, crop_h, crop_w).

    Ten attempts at area ~ U(scale) * H * W and aspect ratio log-uniform in `ratio`; if none fits,
    the central-crop fallback clamps the whole image's aspect ratio into `ratio`.
    """
    _check_rng(rng)
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    image: np.ndarray,
    rng: Rng,
    *,
    size: int = 224,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> np.ndarray:
    """torchvision ``RandomResizedCrop(size, scale, ratio, BICUBIC)`` on a uint8 image."""
    image = _check_image(image)
    size = _check_size(size)
    top, left, h, w = random_resized_crop_params(image.shape[0], image.shape[1], rng, scale, ratio)
    crop = _to_pil(image).crop((left, top, left + w, top + h))
    return _to_np(crop.resize((size, size), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- RandAugmentMC
# (FixMatch)


def _float_parameter(v: int, max_v: float) -> float:
    return float(v) * max_v / _PARAMETER_MAX


def _int_parameter(v: int, max_v: float) -> int:
    return int(v * max_v / _PARAMETER_MAX)


def _random_sign(value: float, rng: Rng) -> float:
    return -value if rng.random() < 0.5 else value


def _auto_contrast(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageOps.autocontrast(img)


def _brightness(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _color(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageEnhance.Color(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _contrast(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _equalize(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageOps.equalize(img)


def _identity(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return img


def _posterize(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageOps.posterize(img, _int_parameter(v, 4) + 4)


def _rotate(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return img.rotate(_random_sign(_int_parameter(v, 30), rng))


def _sharpness(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageEnhance.Sharpness(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _shear_x(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    s = _random_sign(_float_parameter(v, 0.3), rng)
    return img.transform(img.size, Image.Transform.AFFINE, (1, s, 0, 0, 1, 0))


def _shear_y(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    s = _random_sign(_float_parameter(v, 0.3), rng)
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, s, 1, 0))


def _solarize(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    return ImageOps.solarize(img, 256 - _int_parameter(v, 256))


def _translate_x(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    t = int(_random_sign(_float_parameter(v, 0.3), rng) * img.size[0])
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, t, 0, 1, 0))


def _translate_y(img: Image.Image, v: int, rng: Rng) -> Image.Image:
    t = int(_random_sign(_float_parameter(v, 0.3), rng) * img.size[1])
    return img.transform(img.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, t))


_PilOp = Callable[[Image.Image, int, Rng], Image.Image]

#: FixMatch's ``fixmatch_augment_pool()``, in its order (read-only).
_PIL_OPS: Mapping[str, _PilOp] = types.MappingProxyType(
    {
        "AutoContrast": _auto_contrast,
        "Brightness": _brightness,
        "Color": _color,
        "Contrast": _contrast,
        "Equalize": _equalize,
        "Identity": _identity,
        "Posterize": _posterize,
        "Rotate": _rotate,
        "Sharpness": _sharpness,
        "ShearX": _shear_x,
        "ShearY": _shear_y,
        "Solarize": _solarize,
        "TranslateX": _translate_x,
        "TranslateY": _translate_y,
    }
)
RAND_AUGMENT_POOL: tuple[str, ...] = tuple(_PIL_OPS)


def apply_op(image: np.ndarray, name: str, v: int, rng: Rng) -> np.ndarray:
    """Applies one RandAugment op of the pool at magnitude `v` (1..9); `rng` draws the random sign
    of Rotate/Shear/Translate. Returns uint8 of the same shape."""
    image = _check_image(image)
    if name not in _PIL_OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; expected one of {RAND_AUGMENT_POOL}")
    return _to_np(_PIL_OPS[name](_to_pil(image), int(v), _check_rng(rng)))


def _op_wrapper(name: str) -> Callable[[np.ndarray, int, Rng], np.ndarray]:
    def op(image: np.ndarray, v: int, rng: Rng) -> np.ndarray:
        return apply_op(image, name, v, rng)

    op.__name__ = name
    op.__doc__ = f"RandAugment op {name} (numpy uint8 in/out)."
    return op


#: name -> ``op(image_uint8, v, rng) -> image_uint8`` for every op of the pool (read-only).
RAND_AUGMENT_OPS: Mapping[str, Callable[[np.ndarray, int, Rng], np.ndarray]] = (
    types.MappingProxyType({name: _op_wrapper(name) for name in RAND_AUGMENT_POOL})
)


def cutout_box(
    height: int, width: int, x0: float, y0: float, size: int = CUTOUT_SIZE
) -> tuple[int, int, int, int]:
    """The pixels FixMatch's ``CutoutAbs`` paints for centre (x0, y0), as half-open
    ``(top, left, bottom, right)`` (rows top:bottom, columns left:right).

    Reference arithmetic: ``x0 = int(max(0, x0 - size/2)); x1 = int(min(w, x0 + size))`` (same for
    y), then ``ImageDraw.rectangle((x0, y0, x1, y1))``, which includes both corners and is clipped
    to the image. Hence 17 x 17 pixels away from the right/bottom borders (also at the top/left
    border, where the box is shifted rather than clipped) and down to 9 pixels per side at the
    right/bottom border.
    """
    left = int(max(0.0, x0 - size / 2.0))
    top = int(max(0.0, y0 - size / 2.0))
    x1 = int(min(width, left + size))
    y1 = int(min(height, top + size))
    return top, left, min(y1 + 1, height), min(x1 + 1, width)


def _cutout_pil(img: Image.Image, rng: Rng, size: int = CUTOUT_SIZE) -> Image.Image:
    w, h = img.size
    x0 = rng.uniform(0, w)
    y0 = rng.uniform(0, h)
    top, left, bottom, right = cutout_box(h, w, x0, y0, size)
    out = img.copy()
    # Identical to ImageDraw.rectangle((left, top, x1, y1), fill) of the reference code.
    ImageDraw.Draw(out).rectangle((left, top, right - 1, bottom - 1), fill=CUTOUT_FILL)
    return out


def cutout(image: np.ndarray, rng: Rng, *, size: int = CUTOUT_SIZE) -> np.ndarray:
    """FixMatch's ``CutoutAbs(img, size)``: centre ``x0 ~ U(0, W)``, ``y0 ~ U(0, H)`` (drawn in that
    order), grey (127, 127, 127) box given by ``cutout_box``. Returns a new uint8 array."""
    image = _check_image(image)
    return _to_np(_cutout_pil(_to_pil(image), _check_rng(rng), _check_size(size)))


def _rand_augment_mc_pil(
    img: Image.Image, rng: Rng, n: int, m: int, ops: Sequence[str]
) -> Image.Image:
    chosen = rng.integers(0, len(ops), size=n)  # random.choices: with replacement
    for k in chosen:
        v = int(rng.integers(1, m))  # np.random.randint(1, m): 1..m-1
        if rng.random() < 0.5:
            img = _PIL_OPS[ops[int(k)]](img, v, rng)
    return _cutout_pil(img, rng, CUTOUT_SIZE)  # always applied


def _check_ops(ops: Sequence[str] | None) -> tuple[str, ...]:
    if ops is None:
        return RAND_AUGMENT_POOL
    ops = tuple(ops)
    unknown = [o for o in ops if o not in _PIL_OPS]
    if not ops or unknown:
        raise ValueError(
            f"ops must be a non-empty subset of {RAND_AUGMENT_POOL}; got {ops} (unknown: {unknown})"
        )
    return ops


def rand_augment_mc(
    image: np.ndarray, rng: Rng, *, n: int = 2, m: int = 10, ops: Sequence[str] | None = None
) -> np.ndarray:
    """FixMatch's ``RandAugmentMC(n, m)``: `n` ops drawn with replacement from `ops` (default: the
    full 14-op ``RAND_AUGMENT_POOL``), each applied with probability 0.5 at ``v ~ randint[1, m-1]``,
    then ALWAYS a 16-pixel grey ``cutout``. Restricting `ops` (e.g. ``("Identity",)``) is for tests.
    """
    image = _check_image(image)
    _check_rng(rng)
    if n < 1 or not 1 <= m <= 10:
        raise ValueError(f"RandAugmentMC needs n >= 1 and 1 <= m <= 10, got n={n}, m={m}")
    if m < 2:
        raise ValueError(f"m={m} leaves no magnitude in randint[1, m-1]; use m >= 2")
    return _to_np(_rand_augment_mc_pil(_to_pil(image), rng, n, m, _check_ops(ops)))


# ----------------------------------------------------------------------------- normalisation


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``ToTensor`` + ``Normalize``: ``(uint8 / 255 - mean) / std`` in float32 -> f32[H, W, 3]."""
    image = _check_image(image, allow_alpha=False)
    mean_a = np.asarray(mean, np.float32)
    std_a = np.asarray(std, np.float32)
    if mean_a.shape != (3,) or std_a.shape != (3,) or not np.all(std_a > 0):
        raise ValueError(f"mean and std must have 3 entries and std > 0, got {mean} and {std}")
    x = image.astype(np.float32) / np.float32(255.0)
    return ((x - mean_a) / std_a).astype(np.float32)


def denormalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Inverse of ``normalize`` up to the 1/255 scale: returns f32 ``x * std + mean``
    (in [0, 1])."""
    return (
        np.asarray(x, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    ).astype(np.float32)


# ----------------------------------------------------------------------------- CLIP steps


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``Resize(size, BICUBIC)`` on a PIL image: shorter side -> `size`, longer side ->
    ``int(size * long / short)``; a no-op if the shape is already right."""
    image = _check_image(image)
    size = _check_size(size)
    h, w = image.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return image
    return _to_np(_to_pil(image).resize((new_w, new_h), Image.Resampling.BICUBIC))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``CenterCrop(size)``: offsets ``int(round((H - size) / 2))`` (Python rounding,
    half to even). Raises ValueError if the image is smaller than `size` (the CLIP pipeline never
    is)."""
    image = _check_image(image)
    size = _check_size(size)
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(
            f"center_crop({size}) needs an image at least {size}x{size}, got shape {image.shape}"
        )
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return np.ascontiguousarray(image[top : top + size, left : left + size])


# ----------------------------------------------------------------------------- pipelines


def recon_pipeline(
    image: np.ndarray,
    rng: Rng,
    *,
    size: int = 224,
    resize_size: int = RECON_RESIZE,
    ops: Sequence[str] | None = None,
) -> np.ndarray:
    """ReCon's training pipeline (see the module docstring) -> f32[size, size, 3],
    ImageNet-normalised.

    `ops` restricts the RandAugment pool (default: all 14 ops; the cutout is applied
    regardless).
    """
    image = _check_image(image)
    size = _check_size(size)
    resize_size = _check_size(resize_size, "resize_size")
    _check_rng(rng)
    ops_t = _check_ops(ops)
    img = _to_pil(np.ascontiguousarray(image[..., ::-1]))  # 1. BGR/RGB swap
    img = img.resize((resize_size, resize_size))  # 2. PIL default: bicubic
    if rng.random() < 0.5:  # 3. horizontal flip
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    top, left, h, w = random_resized_crop_params(resize_size, resize_size, rng)  # 4. RRC
    img = img.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BICUBIC)
    img = _rand_augment_mc_pil(img, rng, 2, 10, ops_t)  # 5. RandAugmentMC + cutout
    return normalize(_to_np(img), IMAGENET_MEAN, IMAGENET_STD)  # 6. ImageNet stats


def clip_pipeline(image: np.ndarray, *, size: int = 224) -> np.ndarray:
    """CLIP's preprocessing -> f32[size, size, 3]: resize shorter side (bicubic), centre crop,
    /255, CLIP mean/std. No channel swap."""
    image = _check_image(image)
    size = _check_size(size)
    return normalize(center_crop(resize_shorter_side(image, size), size), CLIP_MEAN, CLIP_STD)


def preprocess(
    image_uint8: np.ndarray, pipeline: str, rng: Rng | None, *, size: int = 224
) -> np.ndarray:
    """Runs `pipeline` (one of ``PIPELINES``) on one uint8[H, W, 3|4] image -> f32[size, size, 3].

    `rng` drives the "recon" pipeline's randomness and is ignored by "clip" (None allowed there).
    Raises ValueError for an unknown pipeline or an input that is not uint8 (H, W, 3) / (H, W, 4).
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown image pipeline {pipeline!r}; expected one of {PIPELINES}")
    image = _check_image(image_uint8)
    if pipeline == "recon":
        return recon_pipeline(image, rng, size=size)
    return clip_pipeline(image, size=size)
