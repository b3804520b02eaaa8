"""Export a run's zero-shot classifier as one folder that plain `jax` loads and calls, without
ddjax: `configs/export.py`.

  python main.py --config=configs/export.py --config.checkpoint=RUN_DIR \
      --config.labels="chair,table,lamp" --workdir=OUT
  ... --config.dataset=folder/NAME       the labels are a prepared dataset's classes (modelnet40,
                                         folder/NAME, ...; in --config.data_dir)
  ... --config.platforms=cpu,cuda,tpu    the platforms the one StableHLO module is lowered for

OUT then holds classifier.jax_exported (jax.export's serialisation), weights.npz, text_features.npy,
classes.txt and export.json (ddjax/exported_classifier.py): a program (weights, text features,
clouds f32[B, input_points, 3]) -> cosine scores f32[B, C] for any B, computing what `classify`
computes for a point file of input_points points (unit ball, FPS to point_all, the seeded choice of
npoints, N = num_paths noisy paths at t, the text ratio). docs/zeroshot.md has a 20-line loader
that needs nothing but jax and numpy; `classify --config.checkpoint=OUT` reads it too. Exporting
again with the same settings and run replaces the files; anything else into OUT is refused.
"""

import ml_collections


def get_config(arg=None):
    del arg
    config = ml_collections.ConfigDict()
    config.job = "export"
    config.checkpoint = ""
    config.labels = ""
    config.dataset = ""  # instead of labels: a prepared dataset's classes
    config.data_dir = "~/tensorflow_datasets"
    config.text_features = ""  # FILE.npy + FILE.txt: the labels' features from a file
    config.input_points = 8192  # points per cloud the program takes (a mesh: sample this many)
    config.npoints = 1024
    config.point_all = 1200
    config.num_paths = 8
    config.t = 600
    config.ratio = 0.25
    config.template = "recon"
    config.seed = 0
    config.platforms = "cpu,cuda,tpu"
    return config
