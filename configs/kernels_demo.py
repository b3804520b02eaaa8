"""Point tokenization demo: FPS + kNN grouping with every kernel implementation, checked and timed.

The default job of `make run` until pretraining lands:

  python main.py --config=configs/kernels_demo.py --workdir=runs/demo   # B=32, N=1024, 64 x 32
  python main.py --config=configs/kernels_demo.py:smoke --workdir=/tmp/demo    # tiny, for tests
  python main.py --config=configs/kernels_demo.py --workdir=runs/demo \
      --config.data_dir=PATH/modelnet40_normal_resampled   # real ModelNet40 shapes

Prints one line per implementation (median time of the jitted grouping and whether it equals the
'xla' result exactly) and writes DIR/kernels_demo.json. About 10 s on a 2-core CPU (most of it in
the Pallas interpret-mode run, which is a correctness tool, not a fast path).
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, smoke=False, seed=0)
    config = ml_collections.ConfigDict()
    config.job = "kernels_demo"
    config.seed = arg.seed
    config.data_dir = ""  # a modelnet40_normal_resampled folder; empty: procedural clouds
    config.batch_size = 32
    config.num_points = 1024
    config.num_groups = 64
    config.group_size = 32
    config.repeats = 5
    config.interpret_batch_size = 4  # Pallas interpret mode runs on a few clouds only: it is slow
    if arg.smoke:
        config.batch_size = 4
        config.num_points = 256
        config.num_groups = 16
        config.group_size = 8
        config.repeats = 1
        config.interpret_batch_size = 2
    return config
