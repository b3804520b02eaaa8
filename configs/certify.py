"""Certified robustness by randomized smoothing (Cohen et al. 2019): `configs/certify.py:DATASET`.

  python main.py --config=configs/certify.py:modelnet40 --config.checkpoint=RUN_DIR --workdir=DIR
      DATASET: modelnet40, modelnet10, scan_objonly, smoke (the synthetic test split, for make run's
      run), folder/NAME (your own categories: configs/prepare.py:folder). For each t in t_values
      (sigma = sigma_t), CERTIFY on every `skip`-th test shape (at most
      max_shapes): n0 = 100 selection draws, n = 10,000 estimation draws, alpha = 0.001; N = 1 noisy
      path per draw (--config.num_paths=N averages N paths: the radius in x is then divided by
      sqrt(N)). Writes DIR/certify.tsv (t, sigma, idx, label, predict, radius, correct, time;
      predict -1 = abstain), DIR/certify.json (per sigma: certified accuracy at radii 0, 0.05, ...,
      2, the average certified radius, the abstention rate, g's clean accuracy) and
      DIR/certify.png/.pdf. A killed job resumes.

The radius is an L2 distance over all N x 3 coordinates of the evaluated cloud (1024 or 2048
points). The test data, tokenization and text ratio come from configs/zeroshot.py's dataset
settings.
"""

from configs import zeroshot

DATASETS = ("modelnet40", "modelnet10", "scan_objonly", "smoke")


def get_config(arg=None):
    name = arg or "modelnet40"
    if name not in DATASETS and not name.startswith(zeroshot.FOLDER[0]):
        raise ValueError(
            f"configs/certify.py: unknown dataset {name!r}; known: {list(DATASETS)} and folder/NAME"
        )
    config = zeroshot.evaluation_fields(name, "configs/certify.py")
    config.job = "certify"
    config.t_values = "300,600,900"  # noise levels sigma_t (t >= 1)
    config.num_paths = 1  # N noisy paths averaged per draw (radius / sqrt(N))
    config.n0 = 100  # selection draws
    config.n = 10_000  # estimation draws
    config.alpha = 0.001  # the certificate holds with probability >= 1 - alpha
    config.draws_per_step = 100  # draws vmapped at a time, per shape
    config.batch_shapes = 8  # shapes certified together
    config.max_shapes = 0  # 0: every selected test shape
    config.skip = 1  # every skip-th test shape (Cohen et al. certify every 20th ImageNet image)
    config.seed = 0
    if name == "smoke":
        config.t_values = "300,600"
        config.n = 1_000
        config.max_shapes = 12
        config.skip = 10
    return config
