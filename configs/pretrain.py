"""Dual Denoising pretraining (the paper's section 3; spec sections 3 and 6).

  python main.py --config=configs/pretrain.py --workdir=runs/dd_base
      The paper's run: base model (70.6M parameters with the feature branch), ShapeNet-55 train +
      test, frozen CLIP ViT-B/32 image and text teachers (online), AdamW 5e-4 / 0.05, batch 128, 301
      epochs with ReCon's per-epoch cosine schedule and 10 warm-up epochs. Needs
      `configs/prepare.py:shapenet55` first and the CLIP weights (hub or local directory via
      --config.teacher=DIR). Produces the checkpoint that Tables 1, 2 and 5 evaluate. Expected time:
      not yet measured on an accelerator (see README).
  python main.py --config=configs/pretrain.py:smoke --workdir=runs/smoke
      The built-in miniature, nothing to download: prepares synthetic_shapes, trains a tiny CLIP
      teacher on its renders, pretrains a small model (1.18M parameters) for 738 steps, then
      zero-shot on the synthetic test split (12 classes, chance 0.083; measured top-1 0.40, top-5
      0.98). Minutes on a 2-core CPU: README, "The two commands".

Arguments (combine with commas, e.g. `configs/pretrain.py:smoke,s=0`), the paper's ablations:
  s=0.02 ... 0.12      noise scale (Table 3a; s=0 removes the point noise, Table 4 "w/o PointDAE")
  delta=1|10|100|1000  timestep merging interval (Table 3b; 1 = none, 1000 = no timestep
                       conditioning)
  learned              learned feature tokens instead of noise (Table 4 "w/o feature denoising")
  no_stopgrad          let the feature loss reach PointDAE
  noisy_frame          clean targets relative to the noisy center
  mask=0.6             mask ratio (masking versus denoising)
  cached               teacher_mode 'cached' (needs --config.teacher_cache=DIR from
                       configs/teacher_cache.py)
  seed=N
  variant=base|small|tiny
                       another model size; with smoke, the smoke run's data and tiny teacher with
                       that model at the paper's tokenization (1024 points, the teacher's feature
                       width), e.g. `:smoke,variant=base --config.batch_size=128` (what `make
                       device-check` trains)
"""

import ml_collections

from configs import common
from ddjax.models import dual_denoising as dd


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        smoke=False,
        s=0.08,
        delta=100,
        learned=False,
        no_stopgrad=False,
        noisy_frame=False,
        mask=0.0,
        cached=False,
        seed=0,
        variant="",
    )
    model_overrides = dict(
        noise_scale=arg.s,
        delta=arg.delta,
        feature_input="learned" if arg.learned else "noise",
        stop_gradient=not arg.no_stopgrad,
        target_frame="noisy" if arg.noisy_frame else "clean",
        mask_ratio=arg.mask,
    )
    config = ml_collections.ConfigDict()
    config.job = "pretrain"
    config.seed = arg.seed
    # Several processes (README, "Several hosts"): main.py's
    # --coordinator_address/--num_processes/--process_id, or with "auto" JAX's own detection (Slurm,
    # Open MPI, TPU pods, GKE, JAX_COORDINATOR_ADDRESS); False: never.
    config.distributed = "auto"
    config.model = dd.model_config(arg.variant or "base", **model_overrides)

    config.dataset = "shapenet55"
    config.data_dir = "~/tensorflow_datasets"
    config.splits = ("train", "test")  # ReCon pretrains on both (whole=True)
    config.auto_prepare = False
    config.num_points = 1024
    config.worker_count = 4

    config.teacher = "openai/clip-vit-base-patch32"
    config.teacher_mode = "cached" if arg.cached else "online"
    config.teacher_cache = ""
    config.image_pipeline = "recon"
    config.tiny_teacher = ml_collections.ConfigDict(
        dict(
            enabled=False, steps=400, width=128, image_size=32, projection_dim=64, tokenizer_dir=""
        )
    )

    config.batch_size = 128
    config.epochs = 300  # + 1: epochs 0..300 run, as ReCon's loop
    config.warmup_epochs = 10
    config.total_steps = 0  # 0: (epochs + 1) * steps_per_epoch
    config.lr = 5e-4
    config.weight_decay = 0.05

    config.log_every = 50
    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    config.init_from = ""
    # An existing run folder refuses a command whose config differs from the one it was created
    # with; keys listed here (only total_steps, epochs) may change to continue the run deliberately,
    # e.g. "total_steps".
    config.allow_changes = ""

    config.eval = ml_collections.ConfigDict(
        dict(
            dataset="",
            data_dir="~/tensorflow_datasets",
            npoints=1024,
            point_all=1200,
            batch_size=64,
            ratio=0.25,
            num_paths=1,
            t=0,
            template="recon",
            seed=0,
        )
    )

    if arg.smoke:
        config.model = dd.model_config(
            "tiny",
            width=96,
            depth=4,
            num_heads=4,
            decoder_depth=1,
            mlp_ratio=2.0,
            teacher_dim=64,
            num_groups=32,
            group_size=16,
            # a quarter of Point-MAE's widths: the mini-PointNet was 9/10 of the step's matmul
            # FLOPs (25 GFLOP, 0.82 s on 2 CPU cores; now 5.5 GFLOP, 0.30 s); top-1 0.375 against
            # 0.45 with the same teacher, (64, 128, 256) 0.383 (docs/development.md, "CI time")
            patch_widths=(32, 64, 128),
            **model_overrides,
        )
        config.dataset = "synthetic_shapes"
        config.auto_prepare = True
        config.num_points = 512
        config.worker_count = 0
        config.image_pipeline = "clip"  # the tiny teacher was trained on CLIP-preprocessed renders
        config.tiny_teacher.enabled = True
        config.teacher = ""
        config.batch_size = 32
        config.epochs = 40  # 738 steps: top-1 0.40 (README, "The two commands")
        config.warmup_epochs = 3
        config.lr = 1e-3
        config.log_every = 10
        config.checkpoint_every = 100
        config.eval.dataset = "synthetic_shapes"
        config.eval.npoints = 512
        config.eval.point_all = 600
        # a real model size on the smoke data: the paper's tokenization, the teacher's width
        if arg.variant:
            config.model = dd.model_config(
                arg.variant, teacher_dim=config.tiny_teacher.projection_dim, **model_overrides
            )
            config.num_points = config.eval.npoints = 1024
            config.eval.point_all = 1200
    return config
