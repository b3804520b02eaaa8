"""The smoke run's own teacher: a tiny Flax CLIP trained contrastively on synthetic renders and
captions.

A random-weight CLIP is useless as a teacher: its text features of different class prompts are
nearly identical (cosine about 0.997 between class prompt sums) and its image and text towers are
unaligned. So the smoke run first trains a tiny CLIP (two small towers) for a few hundred steps on
the synthetic train renders paired with ReCon-style prompts of their class text, then freezes and
saves it in the run directory, where `clip.load` reads it like any other teacher.

Tokenizer: OpenAI CLIP's BPE files, shipped in this package (`clip_tokenizer/`, MIT; its
SOURCE.md), or another folder holding `vocab.json` and `merges.txt` (`tokenizer_dir`). `"fallback"`
(also used, with a note, where the package's files are missing) is a character-level BPE vocabulary
written here (every byte symbol, no merges), which CLIPTokenizer loads like the real one: captions
become one token per character (they fit in 77 tokens). The text tower's special-token ids (start,
end, pad) are always the tokenizer's own: the Flax CLIP text tower pools its feature at the first
end-of-text id, and with an id the tokenizer never writes it would pool the start token, the same
feature for every caption.

The teacher's own zero-shot top-1 on its training renders is in `tiny_clip_report.json`;
`check_report` refuses a teacher near chance before anything learns from it.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ddjax import errors, progress
from ddjax.data import image_augment
from ddjax.teachers import prompts, sanity

TOKENIZER_FILES = ("vocab.json", "merges.txt")  # what a tokenizer folder must hold
PACKAGED_TOKENIZER_DIR = pathlib.Path(__file__).resolve().parent / "clip_tokenizer"
FALLBACK = "fallback"  # tokenizer_dir for the character-level vocabulary
# CLIP's context and special tokens (the hub tokenizer's tokenizer_config.json); without it
# CLIPTokenizer's model_max_length is unset and padding to 77 does nothing.
TOKENIZER_CONFIG = {
    "tokenizer_class": "CLIPTokenizer",
    "model_max_length": 77,
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "errors": "replace",
    "do_lower_case": True,
    "add_prefix_space": False,
}
REPORT = "tiny_clip_report.json"
# The teacher's own top-1 on its train renders must reach this many times chance (1 / classes).
MIN_TOP1_OVER_CHANCE = 2.0


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def has_tokenizer(folder: str | os.PathLike) -> bool:
    return all((pathlib.Path(folder) / f).is_file() for f in TOKENIZER_FILES)


def write_tokenizer(directory: pathlib.Path, tokenizer_dir: str | os.PathLike | None = None) -> str:
    """Puts tokenizer files in `directory`: those of `tokenizer_dir` (default: the package's CLIP
    BPE), or the character-level vocabulary for "fallback". Returns 'clip' or 'fallback'. A folder
    without the files is a UserError; the package's own missing falls back with a note."""
    directory = pathlib.Path(directory)
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    if tokenizer_dir and os.fspath(tokenizer_dir) != FALLBACK and not has_tokenizer(tokenizer_dir):
        raise errors.UserError(
            tokenizer_dir,
            f"holds no CLIP tokenizer (needs {' and '.join(TOKENIZER_FILES)})",
            f"pass a folder that has them, or leave it empty for the package's own (or "
            f"'{FALLBACK}')",
        )
    source = pathlib.Path(tokenizer_dir or PACKAGED_TOKENIZER_DIR)
    if os.fspath(tokenizer_dir or "") != FALLBACK:
        if has_tokenizer(source):
            for f in TOKENIZER_FILES:
                shutil.copy(source / f, directory / f)
            return "clip"
        errors.note(
            f"the package's CLIP tokenizer files are missing from {source}: the tiny teacher "
            "uses a character-level vocabulary instead"
        )
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return "fallback"


def special_token_ids(tokenizer) -> dict:
    """The text config's special-token ids, from the tokenizer that writes the captions."""
    return dict(
        bos_token_id=int(tokenizer.bos_token_id),
        eos_token_id=int(tokenizer.eos_token_id),
        pad_token_id=int(tokenizer.pad_token_id),
    )


def tiny_clip_config(
    *,
    image_size: int,
    width: int,
    layers: int,
    projection_dim: int,
    vocab_size: int,
    bos_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
):
    """A small CLIPConfig; the special-token ids must be the tokenizer's (`special_token_ids`)."""
    from transformers import CLIPConfig  # noqa: PLC0415 - on first use (teachers/clip.py says why)

    # width 128 learns the synthetic classes in 400 steps; width 64 stalled
    heads = max(1, width // 32)
    return CLIPConfig(
        text_config=dict(
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=projection_dim,
    )


def train(
    out_dir: str | os.PathLike,
    train_source,
    class_texts,
    *,
    image_size: int = 32,
    width: int = 128,
    layers: int = 2,
    projection_dim: int = 64,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    tokenizer_dir: str | None = None,
    image_pipeline: str = "clip",
    logit_scale: float = 30.0,
    log=print,
) -> dict:
    """Trains and saves the tiny CLIP into `out_dir` (written atomically); returns a small
    report."""
    # on first use (teachers/clip.py says why)
    from transformers import CLIPTokenizer, FlaxCLIPModel  # noqa: PLC0415

    out = pathlib.Path(out_dir)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    kind = write_tokenizer(tmp, tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tmp)
    config = tiny_clip_config(
        image_size=image_size,
        width=width,
        layers=layers,
        projection_dim=projection_dim,
        vocab_size=len(tokenizer),
        **special_token_ids(tokenizer),
    )
    model = FlaxCLIPModel(config, seed=seed)
    images, labels, ids = _training_data(
        train_source, class_texts, tokenizer, image_pipeline, image_size, seed
    )
    tx = optax.adamw(
        optax.warmup_cosine_decay_schedule(0.0, lr, min(50, steps // 5), steps), weight_decay=0.01
    )
    params = {"clip": model.params}
    opt_state = tx.init(params)
    step = _train_step(model, tx, images, labels, ids, min(batch_size, len(labels)), logit_scale)
    key = jax.random.key(seed)
    bar = (
        progress.bar(total=steps, desc="tiny CLIP teacher", unit="step", every=10.0)
        if log
        else None
    )
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
        if bar is not None:
            bar.update(1)
            if (i + 1) % max(1, steps // 5) == 0:
                bar.set_postfix_str(f"contrastive loss {float(loss):.3f}", refresh=False)
    if bar is not None:
        bar.close()
    accuracy = _own_accuracy(model, params["clip"], images, labels, ids)
    model.params = params["clip"]
    report = dict(
        steps=steps,
        final_loss=float(loss),
        train_zero_shot_top1=accuracy,
        tokenizer=kind,
        classes=len(class_texts),
        image_pipeline=image_pipeline,
        image_size=image_size,
    )
    _save(model, report, tmp, out)
    if log:
        log(
            f"tiny CLIP teacher: saved to {out} (zero-shot top-1 on its own train renders "
            f"{accuracy:.2f})"
        )
    return report


def check_report(teacher_dir: str | os.PathLike) -> dict:
    """The saved teacher's report; TeacherError when its own zero-shot top-1 on its train renders
    stays below MIN_TOP1_OVER_CHANCE x chance (it learned nothing a student could use)."""
    path = pathlib.Path(teacher_dir) / REPORT
    try:
        report = json.loads(path.read_text())
        top1, classes = float(report["train_zero_shot_top1"]), int(report["classes"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise sanity.TeacherError(
            path,
            f"the tiny teacher's report is missing or unreadable ({errors.one_line(e)})",
            "train it again in a new --workdir",
        ) from None
    if top1 < MIN_TOP1_OVER_CHANCE / classes:
        raise sanity.TeacherError(
            f"the tiny teacher {teacher_dir}",
            f"its own zero-shot top-1 on its {classes}-class train renders is {top1:.3f}, near "
            f"chance ({1 / classes:.3f}; at least {MIN_TOP1_OVER_CHANCE / classes:.3f} needed) "
            f"after {report.get('steps')} steps (tokenizer: {report.get('tokenizer')})",
            "train it longer or wider in a new --workdir (--config.tiny_teacher.steps, "
            "--config.tiny_teacher.width)",
        )
    return report


def _save(model, report: dict, tmp: pathlib.Path, out: pathlib.Path) -> None:
    """The model and its report into `tmp`, then `tmp` renamed into place as `out`."""
    model.save_pretrained(tmp)
    (tmp / REPORT).write_text(json.dumps(report, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _training_data(
    train_source, class_texts, tokenizer, image_pipeline: str, image_size: int, seed: int
):
    """(images f32[R, S, S, 3] preprocessed once, labels int[R], token ids int[C, 60, L]: ReCon's
    60 prompts of every class, padded to the longest, L <= 77)."""
    rng = np.random.default_rng(seed)
    images = np.stack(
        [
            image_augment.preprocess(
                image_augment.decode_png(train_source[i]["image"]),
                image_pipeline,
                rng,
                size=image_size,
            )
            for i in range(len(train_source))
        ]
    )  # (R, S, S, 3)
    labels = np.array([int(train_source[i]["label"]) for i in range(len(train_source))])
    captions = [prompts.recon_prompt(text, j) for text in class_texts for j in range(60)]
    # padded to the longest caption, not to 77: the text tower is causal and reads its feature at
    # the first end token, so the padding after it changes neither the features nor the gradients,
    # and the step is a fraction of the cost (docs/development.md, "CI time")
    ids = tokenizer(
        captions, padding="longest", max_length=77, truncation=True, return_tensors="np"
    )["input_ids"]
    ids = jnp.asarray(ids.reshape(len(class_texts), 60, -1))  # (C, 60, L), L <= 77
    return jnp.asarray(images), jnp.asarray(labels), ids


def _features(model, p, pix, tok):
    """L2-normalised image and text features of the CLIP `model` with parameters `p`."""
    img = model.get_image_features(pixel_values=jnp.transpose(pix, (0, 3, 1, 2)), params=p)
    txt = model.get_text_features(input_ids=tok, params=p)
    normalize = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    return normalize(img), normalize(txt)


def _train_step(model, tx, images, labels, ids, batch_size: int, logit_scale: float):
    """The jitted contrastive step (params, opt_state, key) -> (params, opt_state, loss): a batch of
    renders against a random prompt of each one's class, every same-class caption a positive."""

    @jax.jit
    def step(params, opt_state, key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.choice(k1, len(labels), (batch_size,), replace=False)
        y = labels[idx]
        tok = ids[y, jax.random.randint(k2, (batch_size,), 0, 60)]  # a random prompt of the class

        def loss_fn(p):
            img, txt = _features(model, p["clip"], images[idx], tok)
            logits = logit_scale * img @ txt.T  # (b, b); a fixed, sharp scale avoids early collapse
            same = (y[:, None] == y[None, :]).astype(jnp.float32)
            target = same / same.sum(axis=1, keepdims=True)  # every same-class caption a positive
            return 0.5 * (
                optax.softmax_cross_entropy(logits, target).mean()
                + optax.softmax_cross_entropy(logits.T, target).mean()
            )

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _own_accuracy(model, params, images, labels, ids) -> float:
    """How well the teacher itself classifies (the first 512 of) its train renders zero-shot, with
    the class prompt sums."""
    img, _ = _features(model, params, images[:512], ids[0, :1])
    txt_sum = jnp.stack(
        [
            model.get_text_features(input_ids=ids[c], params=params).sum(0)
            for c in range(ids.shape[0])
        ]
    )
    txt_sum = txt_sum / jnp.linalg.norm(txt_sum, axis=-1, keepdims=True)
    return float((jnp.argmax(img @ txt_sum.T, axis=1) == labels[:512]).mean())
