"""Classify your own files with a pretrained run, against labels you choose (no --workdir needed).

  python main.py --config=configs/classify.py --config.checkpoint=RUN_DIR --config.input=FILE \
      --config.labels="chair,table,lamp"
  ... --config.input="scans/*.ply,extra/cup.obj"     many files (and glob patterns) in one call
  ... --config.checkpoint=OUT           an exported classifier (configs/export.py): its classes and
                                        settings; a mesh is sampled at its input_points, a point
                                        file must hold exactly that many
  ... --config.dataset=folder/NAME      the labels are a prepared dataset's classes (its prompt
                                        names): folder/NAME (configs/prepare.py:folder),
                                        modelnet40, ... (in --config.data_dir)

FILE: .npy (N x >=3), .txt/.xyz (x y z per line), .ply, .off or .obj (meshes are surface-sampled).
Each cloud is normalised to the unit ball and subsampled as in zero-shot evaluation (FPS to 1200,
then a seeded choice of 1024), then scored with N = 8 noise paths at t = 600 and ratio 0.25
(ModelNet settings). The labels' text features are cached in RUN_DIR, so repeated calls skip the
CLIP teacher. --config.text_features=FILE.npy takes the labels' features from a file instead (the
labels are then the names in FILE.txt, or the listed subset of them): for converted baselines
without a ported text tower. A converted baseline (configs/convert.py) is deterministic: it runs at
N = 1, t = 0. Prints one line per file, then one JSON object per file.
"""

import ml_collections


def get_config(arg=None):
    del arg
    config = ml_collections.ConfigDict()
    config.job = "classify"
    config.checkpoint = ""
    config.input = ""
    config.labels = ""
    config.dataset = ""  # instead of labels: a prepared dataset's classes
    config.data_dir = "~/tensorflow_datasets"
    config.npoints = 1024
    config.point_all = 1200
    config.mesh_points = 8192
    config.num_paths = 8
    config.t = 600
    config.ratio = 0.25
    config.template = "recon"
    config.text_features = ""  # FILE.npy + FILE.txt (class names): labels and features from a file
    config.seed = 0
    return config
