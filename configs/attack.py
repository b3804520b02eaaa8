"""Adversarial robustness of zero-shot classification (paper Table 2, Figure 8 and the adversarial
half of Table 5): `configs/attack.py:DATASET`.

  python main.py --config=configs/attack.py:modelnet40 --config.checkpoint=RUN_DIR --workdir=DIR
      DATASET: modelnet40, modelnet40_10k (all 10,000 points per shape: Table 2 with ULIP-2 and
      Uni3D), scan_objonly, smoke (the synthetic test split, for `make run`'s checkpoint),
      folder/NAME (your own categories: configs/prepare.py:folder).
      Targeted IFGM and PGD at eps 0.01/0.025/0.05/0.075 (50 steps of eps/10) and C&W, at (N, t) =
      (8, 100), (8, 500), (8, 900), (16, 500), each in the 'paper' and the 'eot' gradient mode,
      over 3 evaluation seeds. Writes DIR/attack.json, DIR/table2.md and
      DIR/figure8.png.
  ... --config.sweep=True      Table 5's adversarial half: PGD, 10 steps, eps 0.01, every N in
                               {1,2,4,8,16} x t in {0,100,...,900} -> DIR/sweep.csv and DIR/sweep.md

Lists are comma-separated strings: `--config.settings=8:600,16:600`, `--config.eps=0.01`,
`--config.attacks=pgd`, `--config.modes=eot`. `--config.success_draws=8`: the fresh draws whose
majority decides whether an iterate reached the target (which iterate PGD/IFGM return, which C&W
keeps). `--config.fixed_noise=True`: one fixed key for every forward pass, a deterministic baseline
(the model is random even at N = 1, t = 0). The model, the teacher and the text ratio's dataset
default come from RUN_DIR and configs/zeroshot.py. The smoke variant runs every attack in both modes
on 48 test shapes with short loops (see the README for its time on a 2-core CPU).
"""

import ml_collections

from configs import zeroshot

DATASETS = ("modelnet40", "modelnet40_10k", "scan_objonly", "smoke")


def get_config(arg=None):
    name = arg or "modelnet40"
    if name not in DATASETS and not name.startswith(zeroshot.FOLDER[0]):
        raise ValueError(
            f"configs/attack.py: unknown dataset {name!r}; known: {list(DATASETS)} and folder/NAME"
        )
    config = zeroshot.evaluation_fields(name, "configs/attack.py")  # run, test data, ratio, prompts
    config.job = "attack"
    config.max_shapes = 0  # 0: the whole test split; else its first max_shapes shapes
    config.batch_size = 32

    config.settings = "8:100,8:500,8:900,16:500"  # N:t pairs (Table 2's rows)
    config.attacks = "ifgm,pgd,cw"
    config.modes = "paper,eot"
    config.eps = "0.01,0.025,0.05,0.075"
    config.steps = 50  # IFGM / PGD iterations of step eps / 10
    config.curve_every = 5  # accuracy recorded every 5 steps (Figure 8); must divide steps
    # M noise draws averaged per gradient in 'eot' mode (unspecified; see README)
    config.eot_samples = 4
    # EOT draws vmapped at a time; 0: 1 on CPU (measured faster), all elsewhere
    config.draws_per_step = 0
    # Each iterate counts as reaching the target when the target wins a majority of this many fresh
    # draws (PGD/IFGM return the last such iterate, C&W keeps the smallest); 0: no check, PGD's last
    # iterate.
    config.success_draws = 8
    # True: one fixed key for every forward pass (a deterministic baseline)
    config.fixed_noise = False
    config.cw = ml_collections.ConfigDict(
        dict(
            search_steps=10,
            iterations=500,
            learning_rate=0.01,
            initial_lambda=10.0,
            lower=0.0,
            upper=80.0,
        )
    )
    config.seeds = 3  # R evaluation seeds: every robust accuracy is a mean and std over them
    config.seed = 0

    config.sweep = False
    config.sweep_num_paths = "1,2,4,8,16"
    config.sweep_t = "0,100,200,300,400,500,600,700,800,900"
    config.sweep_steps = 10
    config.sweep_eps = 0.01

    if name == "smoke":
        config.max_shapes = 48
        config.batch_size = 24
        config.settings = "2:100"
        config.eps = "0.01,0.05"
        config.steps = 10
        config.curve_every = 2
        config.eot_samples = 2
        config.cw.search_steps = 3
        config.cw.iterations = 20
        config.seeds = 2
        config.sweep_num_paths = "1,2"
        config.sweep_t = "0,100"
    return config
