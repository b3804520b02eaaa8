"""Frozen CLIP teachers (Hugging Face Flax CLIP): image features, text features, class embeddings,
prompt bank.

All features are the raw projected embeddings (``get_image_features`` / ``get_text_features``), NOT
L2-normalised; callers normalise where the method does.

Compilation: ``load`` builds two jitted pure functions per teacher, ``encode_text(params, ids)`` and
``encode_image(params, images_nhwc)``. They are created once per ``Teacher`` and reused by every
call, so they compile once per input shape. ``text_features`` runs texts in chunks of at most 256
and pads the last (partial) chunk to a power of two, so any number of texts uses only a handful of
shapes.

Offline use: ``load`` accepts a Hugging Face hub name (needs internet or a filled HF cache) or a
local directory holding the model (``flax_model.msgpack``, or ``model.safetensors``, or
``pytorch_model.bin`` which needs torch) and the tokenizer files (``vocab.json``, ``merges.txt``,
``tokenizer_config.json``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from ddjax import errors
from ddjax.teachers import prompts as prompts_lib

DEFAULT_MODEL: Final[str] = "openai/clip-vit-base-patch32"
TEXT_CHUNK: Final[int] = 256  # at most this many texts per text-encoder call
_MIN_BUCKET: Final[int] = 8  # smallest padded batch of a partial chunk

_PT_WEIGHT_FILES: Final[tuple[str, ...]] = (
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "model.safetensors.index.json",
)

Params = Any  # nested dict of arrays (FlaxCLIPModel params)


class TeacherLoadError(errors.UserError):
    """A CLIP model or tokenizer could not be loaded: TeacherLoadError(name or path, what was
    tried)."""

    what = "cannot load the CLIP teacher"
    todo = (
        "offline machines need a local directory: on a machine with internet run "
        "`FlaxCLIPModel.from_pretrained(NAME).save_pretrained(DIR)` and "
        "`CLIPTokenizer.from_pretrained(NAME).save_pretrained(DIR)` (or copy vocab.json, "
        "merges.txt and "
        "tokenizer_config.json into DIR), then pass DIR"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A frozen CLIP teacher.

    model: the ``FlaxCLIPModel``, loaded without parameters of its own (``model.params`` raises:
    pass ``params=`` to its methods); params: its parameters (passed explicitly to the jitted
    functions); tokenizer: the ``CLIPTokenizer``; source: the hub name or local path it was loaded
    from; image_size: the vision input side (``config.vision_config.image_size``); dim: the
    embedding size (``config.projection_dim``); context_length: text length
    (``config.text_config.max_position_embeddings``). encode_text: jitted ``(params, i32[B, L]) ->
    f32[B, D]``; encode_image: jitted ``(params, f32[B, S, S, 3] NHWC) -> f32[B, D]``. Both are pure
    and may be used inside other jitted code.
    """

    model: Any  # transformers.FlaxCLIPModel
    params: Params
    tokenizer: Any  # transformers.CLIPTokenizer
    source: str
    image_size: int
    dim: int
    context_length: int
    encode_text: Callable[[Params, jax.Array], jax.Array] = dataclasses.field(repr=False)
    encode_image: Callable[[Params, jax.Array], jax.Array] = dataclasses.field(repr=False)


def _make_encoders(model: Any) -> tuple[Callable, Callable]:
    """Pure jitted feature functions of ``model`` taking (params, inputs)."""

    def encode_text(params: Params, ids: jax.Array) -> jax.Array:
        # ids i32[B, L] -> f32[B, D]. No padding mask needed: the causal mask keeps tokens after the
        # EOT (where the feature is pooled) out of the result, as in OpenAI CLIP.
        return model.get_text_features(ids, params=params).astype(jnp.float32)

    def encode_image(params: Params, images: jax.Array) -> jax.Array:
        # images f32[B, S, S, 3] NHWC -> f32[B, D]. get_image_features takes NCHW (and transposes
        # back to NHWC inside; XLA folds the two transposes).
        pixel_values = jnp.transpose(images, (0, 3, 1, 2))  # (B, 3, S, S)
        return model.get_image_features(pixel_values, params=params).astype(jnp.float32)

    return jax.jit(encode_text), jax.jit(encode_image)


def _tried(name_or_path: str) -> str:
    kind = (
        "the local directory"
        if os.path.isdir(name_or_path)
        else "a Hugging Face hub name (no such local directory)"
    )
    return f"tried {name_or_path!r} as {kind}"


def _load_model(name_or_path: str, dtype: Any) -> tuple[Any, Params]:
    """(model, params). Flax weights load without the random initialisation (``_do_init=False``: 8.5
    s of the tiny teacher's 8.6 s load); every parameter must then come from the file."""
    # transformers on first use: it takes seconds to import and main.py silences its notices first.
    from transformers import FlaxCLIPModel  # noqa: PLC0415

    is_dir = os.path.isdir(name_or_path)
    try:
        model, params = FlaxCLIPModel.from_pretrained(name_or_path, dtype=dtype, _do_init=False)
    except Exception as first:  # noqa: BLE001 - re-raised below with context
        has_pt = is_dir and any(
            os.path.isfile(os.path.join(name_or_path, f)) for f in _PT_WEIGHT_FILES
        )
        if not has_pt:
            raise TeacherLoadError(
                name_or_path, f"{_tried(name_or_path)}: {type(first).__name__}: {first}"
            ) from first
        # a directory with only PyTorch / safetensors weights (the conversion needs the initialised
        # model)
        try:
            model = FlaxCLIPModel.from_pretrained(name_or_path, dtype=dtype, from_pt=True)
        except Exception as second:  # noqa: BLE001
            raise TeacherLoadError(
                name_or_path,
                f"{_tried(name_or_path)}: as Flax weights ({type(first).__name__}: {first}), then "
                f"with from_pt=True ({type(second).__name__}: {second}; pytorch_model.bin needs "
                "torch, "
                "model.safetensors does not)",
            ) from second
        return model, model.params
    missing = sorted(
        "/".join(k) for k in set(flatten_dict(model.params_shape_tree)) - set(flatten_dict(params))
    )
    if missing:
        raise TeacherLoadError(
            name_or_path,
            f"the weights file lacks {len(missing)} of the model's parameters "
            f"(first: {missing[0]}); the file is incomplete or for another model",
        )
    # from_pretrained commits them to the first CPU device; as uncommitted arrays on the default
    # device they go wherever a jitted step's other arguments are (sharded over several devices,
    # tests/test_train.py).
    return model, jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), params)


def _load_tokenizer(name_or_path: str) -> Any:
    from transformers import CLIPTokenizer  # noqa: PLC0415 - on first use, as in _load_model

    try:
        return CLIPTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # noqa: BLE001
        raise TeacherLoadError(
            name_or_path,
            f"loaded the CLIP model but not its tokenizer ({type(err).__name__}: {err}); a local "
            "directory needs vocab.json and merges.txt (and tokenizer_config.json for the 77-token "
            "length)",
        ) from err


def _check_pooling(name_or_path: str, eos_token_id: int, tokenizer) -> None:
    """The text tower pools its feature at the first `eos_token_id` of a caption (at the largest
    id, for configs from before transformers' fix, which say 2): TeacherLoadError unless that is
    where the tokenizer ends a caption. Otherwise every caption's feature is its start token's, one
    feature for every text."""
    end = int(tokenizer.eos_token_id)
    if eos_token_id == 2:  # argmax pooling: the end-of-text id must be the largest
        largest = max(tokenizer.get_vocab().values())
        if end == largest:
            return
        why = f"ends captions with id {end}, below its largest id {largest}"
    elif eos_token_id == end:
        return
    else:
        why = f"ends captions with id {end}"
    raise TeacherLoadError(
        name_or_path,
        f"its text config pools the text feature at eos_token_id {eos_token_id}, but its "
        f"tokenizer {why}: every caption would get its start token's feature, the same for all",
        "save the model with text_config.eos_token_id equal to the tokenizer's eos_token_id "
        "(a teacher trained by an older ddjax's smoke run: train a new one)",
    )


def load(
    name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, *, dtype: Any = jnp.float32
) -> Teacher:
    """Load a frozen CLIP teacher from a hub name or a local directory.

    ``dtype`` is the computation dtype (parameters stay as stored); features are returned as
    float32. Raises ``TeacherLoadError`` (a ``UserError``) saying what was tried if the model or
    tokenizer is missing.
    """
    name_or_path = os.fspath(name_or_path)
    model, params = _load_model(name_or_path, dtype)
    tokenizer = _load_tokenizer(name_or_path)
    config = model.config
    _check_pooling(name_or_path, int(config.text_config.eos_token_id), tokenizer)
    encode_text, encode_image = _make_encoders(model)
    return Teacher(
        model=model,
        params=params,
        tokenizer=tokenizer,
        source=name_or_path,
        image_size=int(config.vision_config.image_size),
        dim=int(config.projection_dim),
        context_length=int(config.text_config.max_position_embeddings),
        encode_text=encode_text,
        encode_image=encode_image,
    )


def image_features(teacher: Teacher, images: Any) -> jax.Array:
    """Raw CLIP image embeddings: images f32[B, S, S, 3] (NHWC, already CLIP-normalised) -> f32[B,
    D].

    S must equal ``teacher.image_size``. Not L2-normalised.
    """
    shape = tuple(np.shape(images))
    s = teacher.image_size
    if len(shape) != 4 or shape[-1] != 3 or shape[1] != s or shape[2] != s:
        raise ValueError(
            f"images must be (B, {s}, {s}, 3) NHWC for this CLIP teacher, got shape {shape}"
        )
    images = jnp.asarray(images, dtype=jnp.float32)
    return teacher.encode_image(teacher.params, images)  # (B, D)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of strings, got a single str (wrap it in a list)")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"expected strings, got {type(t).__name__}: {t!r}")
    return texts


def tokenize(teacher: Teacher, texts: Sequence[str]) -> np.ndarray:
    """CLIP token ids i32[B, L] (L = the text model's max_position_embeddings, 77 for OpenAI CLIP).

    ``<|startoftext|>`` ... ``<|endoftext|>``, padded with ``<|endoftext|>`` (49407) and truncated
    to L.
    """
    texts = _check_texts(texts)
    if not texts:
        return np.zeros((0, teacher.context_length), np.int32)
    enc = teacher.tokenizer(
        texts,
        padding="max_length",
        max_length=teacher.context_length,
        truncation=True,
        return_tensors="np",
    )
    return np.asarray(enc["input_ids"], dtype=np.int32)  # (B, L)


def _bucket(n: int, chunk_size: int) -> int:
    """Padded batch size of a partial chunk of n texts: the next power of two (>= 8), at most
    chunk_size."""
    b = _MIN_BUCKET
    while b < n:
        b *= 2
    return min(b, chunk_size)


def text_features(
    teacher: Teacher, texts: Sequence[str], *, chunk_size: int = TEXT_CHUNK
) -> jax.Array:
    """Raw CLIP text embeddings of ``texts``: f32[B, D], not L2-normalised.

    Runs in chunks of ``chunk_size`` (at most 256) texts; the last chunk is padded to a power of two
    so that few shapes are compiled.
    """
    if not 1 <= chunk_size <= TEXT_CHUNK:
        raise ValueError(f"chunk_size must be in 1..{TEXT_CHUNK}, got {chunk_size}")
    ids = tokenize(teacher, texts)  # (B, L)
    n = ids.shape[0]
    if n == 0:
        return jnp.zeros((0, teacher.dim), jnp.float32)
    out = []
    for start in range(0, n, chunk_size):
        chunk = ids[start : start + chunk_size]  # (b, L)
        b = chunk.shape[0]
        padded = _bucket(b, chunk_size)
        if padded > b:  # repeat the last row; padded rows are dropped below
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], padded - b, axis=0)], axis=0)
        out.append(teacher.encode_text(teacher.params, jnp.asarray(chunk))[:b])  # (b, D)
    return out[0] if len(out) == 1 else jnp.concatenate(out, axis=0)  # (B, D)


def class_text_features(
    teacher: Teacher, classnames: Sequence[str], template: str = "recon"
) -> jax.Array:
    """Zero-shot class embeddings f32[C, D]: per class, the plain SUM of the raw text features of
    its prompts.

    60 prompts per class for "recon" (as ReCon's zero-shot runner does), 1 for "pointclip". Not
    normalised.
    """
    classnames = _check_texts(classnames)
    per_class = [prompts_lib.prompts(name, template) for name in classnames]
    if not per_class:
        return jnp.zeros((0, teacher.dim), jnp.float32)
    p = len(per_class[0])  # prompts per class (same for every class)
    feats = text_features(teacher, [t for ps in per_class for t in ps])  # (C * P, D)
    return jnp.sum(feats.reshape(len(classnames), p, teacher.dim), axis=1)  # (C, D)


def prompt_bank(teacher: Teacher, classnames: Sequence[str]) -> jax.Array:
    """Raw text features of every ReCon (class, prefix, suffix): f32[C, 20, 3, D].

    ``bank[c, p, s]`` is the feature of ``recon_prompt(classnames[c], p + 20 * s)``; the pretraining
    text teacher draws a random (p, s) per sample, as ReCon does.
    """
    classnames = _check_texts(classnames)
    n_p, n_s = len(prompts_lib.RECON_PREFIXES), len(prompts_lib.RECON_SUFFIXES)
    texts = [
        prompts_lib.recon_prompt(name, p + n_p * s)
        for name in classnames
        for p in range(n_p)
        for s in range(n_s)
    ]  # (c, p, s) order
    feats = text_features(teacher, texts)  # (C * 20 * 3, D)
    return feats.reshape(len(classnames), n_p, n_s, teacher.dim)  # (C, 20, 3, D)
