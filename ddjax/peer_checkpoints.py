"""Reading a peer's released checkpoint into ddjax variables (`convert`); the convert job
(configs/convert.py, ddjax/jobs/convert.py) writes them as a run folder.

FILE is the checkpoint as released (PyTorch `.pth`/`.pt`/`.bin`: ReCon's dict with `base_model`,
ULIP's and ULIP-2's `state_dict`, Uni3D's `module`; keys may carry `module.`), or a `.safetensors` /
`.npz` file with the same key names (an `.npz` with `param/*` entries, like the peers' reference
files of tests/test_baselines.py, is read from those alone).

PyTorch files are read without torch and without executing anything from the file: the zip archive's
`data.pkl` is unpickled by `read_pth`, which accepts only tensor and storage records, plain
containers and argparse Namespaces (ULIP stores its `args`; they become inert records) and refuses
any other global.

Every key of the model's state dict must be used and every parameter filled: otherwise one line
lists the missing and unexpected keys. The architecture (depth, width, mini-PointNet width,
embedding width) is read from the shapes; heads and tokenization come from the config (Uni3D: from
its size). ULIP's and ULIP-2's text and image towers, and the parts of Uni3D that its point encoder
never reads (`logit_scale`, the EVA model's image path and head), are not ported: they are counted
and dropped. RUN_DIR then holds config.json (the model, its teacher or none, and the source's
SHA-256) and an orbax checkpoint (step 0) that the zero-shot, attack and classify jobs read with
`--config.checkpoint=RUN_DIR`.
"""

from __future__ import annotations

import collections
import io
import json
import pathlib
import pickle
import re
import zipfile

import jax
import ml_dtypes
import numpy as np
from flax import traverse_util
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ddjax import errors
from ddjax.models import peers

# Attributes of ULIP_WITH_IMAGE / ULIP2_WITH_OPENCLIP beside the point branch
# (models/ULIP_models.py).
ULIP_TOWERS = (
    "visual.",
    "transformer.",
    "token_embedding.",
    "positional_embedding",
    "ln_final.",
    "image_projection",
    "text_projection",
    "logit_scale",
    "open_clip_model.",
    "image_mlp.",
)
# Uni3D's `state_dict` entries its point encoder never reads (checked against its reference file:
# changing them leaves every output unchanged).
UNI3D_UNUSED = (
    "logit_scale",
    "point_encoder.visual.cls_token",
    "point_encoder.visual.pos_embed",
    "point_encoder.visual.patch_embed.",
    "point_encoder.visual.head.",
)
# torch module paths -> our submodule names (the rest of each key is the same).
RENAMES = (
    (r"blocks\.blocks\.(\d+)\.", r"block\1."),  # Point-BERT's, ReCon's
    (r"visual\.blocks\.(\d+)\.", r"visual.block\1."),  # Uni3D's EVA blocks
    (r"encoder\.first_conv\.0\.", "encoder.conv1a."),
    (r"encoder\.first_conv\.1\.", "encoder.bn1."),
    (r"encoder\.first_conv\.3\.", "encoder.conv1b."),
    (r"encoder\.second_conv\.0\.", "encoder.conv2a."),
    (r"encoder\.second_conv\.1\.", "encoder.bn2."),
    (r"encoder\.second_conv\.3\.", "encoder.conv2b."),
    (r"pos_embed\.0\.", "pos_embed.fc1."),
    (r"pos_embed\.2\.", "pos_embed.fc2."),
)


class ConvertError(errors.UserError):
    what = "cannot convert the checkpoint"
    todo = (
        "pass the peer's released checkpoint and its --config.model (recon, ulip_pointbert, "
        "ulip2_pointbert or uni3d_<size>)"
    )


# -----------------------------------------------------------------------------------------------
# reading

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}


class _Storage:
    def __init__(self, name: str):
        self.name = name


class _Record:
    """An inert stand-in for a pickled argparse Namespace: keeps its fields, runs nothing."""

    def __setstate__(self, state):
        self.fields = state


def _reconstruct(cls, base, state):  # copyreg._reconstructor, limited to _Record
    del base, state
    if cls is not _Record:
        raise pickle.UnpicklingError("copyreg._reconstructor of a refused class")
    return _Record()


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    del requires_grad, hooks, metadata
    flat = storage  # np.ndarray, 1-D
    if not size:
        return np.array(flat[offset])  # a 0-d array
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:],
        shape=tuple(size),
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)  # a C-ordered copy


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, requires_grad=False, hooks=None: data
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(name)
        if (module, name) == ("argparse", "Namespace"):
            return _Record
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstruct
        if (module, name) == ("builtins", "object"):
            return object
        raise pickle.UnpicklingError(
            f"refused global {module}.{name} (only tensors, containers and argparse "
            "Namespaces are read; nothing in the file is executed)"
        )

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _Storage)
        ):
            raise pickle.UnpicklingError(f"refused persistent record {str(pid)[:60]}")
        return self._load_storage(pid[1].name, str(pid[2]))


def read_pth(path) -> object:
    """A PyTorch zip checkpoint (torch >= 1.6's format) as nested dicts of numpy arrays, without
    torch and without executing code from the file."""
    path = pathlib.Path(path)
    if not zipfile.is_zipfile(path):
        raise ConvertError(
            path,
            "not a PyTorch zip checkpoint (the legacy pre-1.6 format and other files are not read)",
            "re-save it with torch.save (torch >= 1.6) or export .safetensors",
        )
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ConvertError(
                path, "no single <archive>/data.pkl in the zip: not a torch.save file"
            )
        prefix = pkl[0][: -len("data.pkl")]

        def load_storage(type_name: str, key: str) -> np.ndarray:
            dtype = _STORAGE_DTYPES[type_name]
            if dtype == "bfloat16":
                dtype = ml_dtypes.bfloat16
            data = archive.read(f"{prefix}data/{key}")
            return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))

        try:
            return _RestrictedUnpickler(io.BytesIO(archive.read(pkl[0])), load_storage).load()
        except (
            pickle.UnpicklingError,
            KeyError,
            ValueError,
            TypeError,
            EOFError,
            AttributeError,
        ) as e:
            raise ConvertError(
                path, f"unreadable PyTorch checkpoint: {errors.one_line(e)}"
            ) from None


SAFETENSORS_HEADER_LIMIT = 100 << 20  # the format's own limit on its JSON header


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A .safetensors file's tensors; its header is checked first (an 8-byte little-endian length
    within the file and the format's 100 MiB, then a JSON object), so a broken or oversized header
    is one line naming the file, as is anything safetensors itself refuses."""
    size = path.stat().st_size
    todo = "the file is damaged or not .safetensors: export it again"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError(path, f"{size} bytes: too short for a .safetensors file", todo)
        length = int.from_bytes(head, "little")
        if length > min(size - 8, SAFETENSORS_HEADER_LIMIT):
            raise ConvertError(
                path,
                f"its header claims {length} bytes; the file has {size - 8} after the length "
                f"and the format allows at most {SAFETENSORS_HEADER_LIMIT >> 20} MiB",
                todo,
            )
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConvertError(
                path, f"its header is not JSON: {errors.one_line(e)}", todo
            ) from None
    if not isinstance(header, dict):
        raise ConvertError(
            path, f"its header is a JSON {type(header).__name__}, not an object", todo
        )
    try:
        return dict(load_file(str(path)))
    except SafetensorError as e:
        raise ConvertError(
            path, f"unreadable .safetensors file: {errors.one_line(e)}", todo
        ) from None


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by key, as numpy arrays (.pth/.pt/.bin, .safetensors, .npz)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = z.files
                params = [n for n in names if n.startswith("param/")]
                if params:  # a peers reference file: its parameters only
                    return {n[len("param/") :]: z[n] for n in params}
                return {n: z[n] for n in names}
        if suffix == ".safetensors":
            return read_safetensors(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConvertError(path, f"unreadable {suffix} file: {errors.one_line(e)}") from None
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        loaded = read_pth(path)
        # ReCon, ULIP and ULIP-2, Uni3D, others
        for wrapper in ("base_model", "state_dict", "module", "model"):
            if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
                break
        if not isinstance(loaded, dict):
            raise ConvertError(path, f"holds a {type(loaded).__name__}, not a state dict")
        return {k: v for k, v in loaded.items() if isinstance(v, np.ndarray)}
    raise ConvertError(
        path,
        f"unknown checkpoint type {suffix or '(no suffix)'}",
        "pass a .pth/.pt, .safetensors or .npz file",
    )


# --------------------------------------------------------------------------------------------
# conversion


def model_keys(state: dict, kind: str) -> tuple[dict, list[str]]:
    """(the point model's entries under its module's own names, the keys of the parts not ported:
    text/image towers, Uni3D's unused entries)."""
    out, dropped = {}, []
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if kind == "recon":
            # what ReCon's load_model_from_ckpt strips
            for prefix in ("MAE_encoder.", "base_model."):
                key = key[len(prefix) :] if key.startswith(prefix) else key
        elif key.startswith(UNI3D_UNUSED if kind == "uni3d" else ULIP_TOWERS):
            dropped.append(key)
            continue
        out[key] = value
    return out, dropped


# Per kind: the prefix of the point encoder's keys, the pattern of its block indices, and the
# tensor whose shape gives the embedding width (its axis).
LAYOUT = {
    "recon": ("", r"blocks\.blocks\.(\d+)\.", ("img_proj.weight", 0)),
    "ulip_pointbert": ("point_encoder.", r"blocks\.blocks\.(\d+)\.", ("pc_projection", 1)),
    "ulip2_pointbert": ("point_encoder.", r"blocks\.blocks\.(\d+)\.", ("pc_projection", 1)),
    "uni3d": (
        "point_encoder.",
        r"visual\.blocks\.(\d+)\.",
        ("point_encoder.trans2embed.weight", 0),
    ),
}


def architecture(state: dict, kind: str, num_heads: int) -> dict:
    """depth, width, encoder_dims and embed_dim read from the tensors' shapes."""
    p, block_pattern, (embed_key, embed_axis) = LAYOUT[kind]
    blocks = {
        int(m.group(1)) for k in state for m in [re.match(re.escape(p) + block_pattern, k)] if m
    }
    try:
        width = int(np.shape(state[f"{p}cls_token"])[-1])
        encoder_dims = int(np.shape(state[f"{p}encoder.second_conv.3.weight"])[0])
        embed = int(np.shape(state[embed_key])[embed_axis])
    except (KeyError, IndexError) as e:
        raise ConvertError(
            f"key {e.args[0]}",
            f"missing: not a {kind} state dict ({len(state)} keys, e.g. {sorted(state)[:3]})",
        ) from None
    if width % num_heads:
        raise errors.ConfigError(
            "num_heads", f"{num_heads} heads do not divide the checkpoint's width {width}"
        )
    return {
        "depth": max(blocks) + 1 if blocks else 0,
        "width": width,
        "encoder_dims": encoder_dims,
        "embed_dim": embed,
    }


def _target(key: str) -> tuple[tuple[str, ...], str]:
    """A torch key -> (our module path, the torch leaf name)."""
    for pattern, repl in RENAMES:
        key = re.sub(pattern, repl, key)
    *path, leaf = key.split(".")
    return tuple(path), leaf


def to_variables(state: dict, shapes: dict) -> dict:
    """Fills `shapes` ({'params', 'batch_stats'} of ShapeDtypeStructs) from a torch state dict;
    ConvertError listing every missing and unexpected key (and any shape that disagrees)."""
    want = {("params",) + k: v for k, v in traverse_util.flatten_dict(shapes["params"]).items()}
    want.update(
        {
            ("batch_stats",) + k: v
            for k, v in traverse_util.flatten_dict(shapes.get("batch_stats", {})).items()
        }
    )
    filled, unexpected, bad_shape, nonfinite, seen = {}, [], [], [], set()
    for key, value in state.items():
        path, leaf = _target(key)
        value = np.asarray(value)
        if leaf == "num_batches_tracked":
            continue  # a BatchNorm counter, unused in eval
        if ("params",) + path + ("kernel",) in want and leaf == "weight":
            dest = ("params",) + path + ("kernel",)
            value = value[..., 0] if value.ndim == 3 else value  # Conv1d [out, in, 1] -> [out, in]
            value = value.T  # torch [out, in] -> [in, out]
        elif leaf == "weight":
            dest = ("params",) + path + ("scale",)  # LayerNorm / BatchNorm
        elif leaf == "running_mean":
            dest = ("batch_stats",) + path + ("mean",)
        elif leaf == "running_var":
            dest = ("batch_stats",) + path + ("var",)
        else:  # bias, or a bare parameter (cls_token, pc_projection)
            dest = ("params",) + path + (leaf,)
        if dest not in want:
            unexpected.append(key)
            continue
        seen.add(dest)
        if tuple(value.shape) != tuple(want[dest].shape):
            bad_shape.append(f"{key} {tuple(value.shape)} vs {tuple(want[dest].shape)}")
            continue
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
            filled[dest] = value.astype(np.float32)
        if not np.isfinite(filled[dest]).all():
            nonfinite.append(key)
    missing = ["/".join(k) for k in sorted(set(want) - seen)]
    if missing or unexpected or bad_shape or nonfinite:
        parts = [
            f"{len(v)} {name}: {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}"
            for name, v in (
                ("missing", missing),
                ("unexpected", sorted(unexpected)),
                ("of another shape", bad_shape),
                ("not finite (NaN or inf, beyond float32 included)", sorted(nonfinite)),
            )
            if v
        ]
        raise ConvertError(
            "state dict",
            "; ".join(parts),
            "check --config.model and the file; every key must be used and every parameter filled",
        )
    return traverse_util.unflatten_dict(filled)


def convert(
    source,
    model: str,
    *,
    num_heads: int = 6,
    num_groups: int = 0,
    group_size: int = 0,
    npoints: int = 0,
):
    """(model config, variables {'params', 'batch_stats'}, keys dropped) of a peer's checkpoint
    file. `model`: a kind of ddjax/models/peers.py or `uni3d_<size>` (whose size fixes the heads
    and the block layout; the shapes must then agree)."""
    kind, fixed = peers.kind_of(model)
    state, dropped = model_keys(read_checkpoint(source), kind)
    num_heads = fixed.get("num_heads", num_heads)
    shape = architecture(state, kind, num_heads)
    if fixed and (shape["width"], shape["depth"]) != (fixed["width"], fixed["depth"]):
        raise ConvertError(
            source,
            f"its point encoder has width {shape['width']} and {shape['depth']} blocks; "
            f"{model} has {fixed['width']} and {fixed['depth']}",
            "pass the --config.model of the checkpoint's size (uni3d_tiny, _small, _base, "
            "_large or _giant)",
        )
    overrides = {
        k: v
        for k, v in (("num_groups", num_groups), ("group_size", group_size), ("npoints", npoints))
        if v
    }
    config = peers.model_config(kind, **{**fixed, "num_heads": num_heads, **shape, **overrides})
    shapes = jax.eval_shape(lambda k: peers.init_variables(config, k), jax.random.key(0))
    return config, to_variables(state, shapes), dropped
