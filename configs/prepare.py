"""Prepare a dataset (tfds, array_record) from the official files: `configs/prepare.py:NAME`.

  python main.py --config=configs/prepare.py:modelnet40 \
      --config.manual_dir=PATH/modelnet40_normal_resampled
  python main.py --config=configs/prepare.py:modelnet10 \
      --config.manual_dir=PATH/modelnet40_normal_resampled
  python main.py --config=configs/prepare.py:modelnet40_10k \
      --config.manual_dir=PATH/modelnet40_normal_resampled   (all 10,000 points: ULIP-2, Uni3D)
  python main.py --config=configs/prepare.py:scanobjectnn/obj_only --config.manual_dir=PATH/h5_files
      (also scanobjectnn/obj_bg, scanobjectnn/pb_t50_rs)
  python main.py --config=configs/prepare.py:shapenet55 --config.manual_dir=PATH/ShapeNet55
  python main.py --config=configs/prepare.py:synthetic_shapes   (no download; about a minute)
  python main.py --config=configs/prepare.py:folder --config.manual_dir=DIR [--config.name=NAME]
      your own categories: DIR/<class>/<files> (point or mesh files; all test), or DIR/train/<class>
      and DIR/test/<class>; optional DIR/classes.txt, one class a line: `folder` or
      `folder: prompt name` (else the folder names with `_` as spaces). The dataset is folder/NAME
      (NAME: --config.name, else DIR's name) in zeroshot, attack, certify and classify.
      --config.points=8192: the points each example keeps (meshes are surface-sampled, larger
      clouds reduced by FPS). ddjax/data/folder.py has the details.

Output goes to --config.data_dir (default ~/tensorflow_datasets); --workdir is not needed. Preparing
again from the same files does nothing; from different files it refuses unless
--config.rebuild=True.
"""

import ml_collections


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.job = "prepare"
    config.dataset = arg or "synthetic_shapes"
    config.data_dir = "~/tensorflow_datasets"
    config.manual_dir = ""
    # An existing build records its manual folder's files; another folder's files are refused unless
    # rebuild=True, which replaces the build once the new one is complete.
    config.rebuild = False
    if config.dataset == "folder":  # your own categories (ddjax/data/folder.py)
        config.name = ""  # the dataset is folder/NAME; "": the manual folder's name
        config.points = 8192  # kept per example
    return config
