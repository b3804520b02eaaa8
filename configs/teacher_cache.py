"""Precompute the teacher bank for `cached` pretraining (spec D5): text features of every (class,
prefix, suffix) and image features of V augmented views per object, with a manifest checked on load.

  python main.py --config=configs/teacher_cache.py --workdir=runs/teacher_cache
      # ShapeNet-55 train + test (ReCon's whole=True), CLIP ViT-B/32 from the hub, 8 `recon` views
      # per object
  python main.py --config=configs/teacher_cache.py:smoke --config.teacher=DIR --workdir=/tmp/cache
      # the tiny synthetic set with a local (e.g. tiny) CLIP directory

The dataset must be prepared first (configs/prepare.py). ShapeNet-55 at 8 views is about 420k
image-tower passes: hours on a CPU, minutes on a GPU.
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, smoke=False)
    config = ml_collections.ConfigDict()
    config.job = "teacher_cache"
    config.dataset = "shapenet55"
    config.data_dir = "~/tensorflow_datasets"
    config.splits = ("train", "test")
    config.teacher = "openai/clip-vit-base-patch32"
    config.image_pipeline = "recon"
    config.views = 8
    config.batch_size = 64
    config.seed = 0
    if arg.smoke:
        config.dataset = "synthetic_shapes/tiny"
        config.views = 2
        config.batch_size = 16
    return config
