"""The paper's point-cloud figures for any cloud: `configs/visualize.py[:smoke]`.

  python main.py --config=configs/visualize.py --workdir=DIR                      # a synthetic
                 chair
  python main.py --config=configs/visualize.py --config.input=FILE --workdir=DIR  # your
                 .npy/.ply/...

Writes DIR/fig3 (raw; masked: 128 FPS centers x 16 neighbours with 80% of the groups removed; noised
at t = 600 with s = 0.08), DIR/noise_scales (s = 0.02 ... 0.12 at t = 999) and DIR/timesteps (t = 0,
100, ..., 900 at s = 0.08), each as .png and .pdf. The cloud is normalised to the unit ball and
reduced by FPS to 2048 points (128 x 16). A few seconds on a CPU.
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, smoke=False)
    config = ml_collections.ConfigDict()
    config.job = "visualize"
    config.input = ""  # a point-cloud or mesh file; empty: the synthetic `shape`
    config.shape = "chair"
    config.num_points = 2048
    config.mesh_points = 8192  # surface samples of a mesh (and of the synthetic shape) before FPS
    config.num_groups = 128
    config.group_size = 16
    config.mask_ratio = 0.8
    config.t = 600
    config.noise_scale = 0.08
    config.num_timesteps = 1000
    config.noise_scales = "0.02,0.04,0.06,0.08,0.1,0.12"
    config.timesteps = "0,100,200,300,400,500,600,700,800,900"
    config.seed = 0
    if arg.smoke:
        config.num_points, config.mesh_points, config.num_groups, config.group_size = (
            256,
            1024,
            32,
            8,
        )
        config.noise_scales, config.timesteps = "0.04,0.12", "0,900"
    return config
