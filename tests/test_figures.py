"""Every figure: written as PNG and PDF, not blank, its texts (titles, axis labels, class names)
present; the visualize job's clouds are what the paper's Fig. 3 and section 4.4 describe."""

import numpy as np
import pytest
from PIL import Image

import main
from ddjax import figures
from ddjax.jobs import visualize

RNG = np.random.default_rng(0)


def _check_written(paths, min_side: int = 300):
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf" and pdf.read_bytes().startswith(b"%PDF")
    image = np.asarray(Image.open(png).convert("L"), np.float32)
    assert min(image.shape) >= min_side, image.shape
    assert image.std() > 5 and (image < 128).mean() > 0.002, "blank figure"  # ink, not a white page


def test_confusion_figure(tmp_path):
    names = [f"class{i:02d}" for i in range(40)]
    labels = np.repeat(np.arange(40), 3)
    predictions = labels.copy()
    # one of each class's three shapes wrong: 66.7% everywhere
    predictions[::3] = (labels[::3] + 1) % 40
    figure = figures.confusion_figure(labels, predictions, names, title="ModelNet40")
    shown = figures.texts(figure)
    assert shown.count("class07") == 2  # on both axes
    assert {
        "true class",
        "predicted class",
        "class accuracy (%)",
        "fraction of the true class",
    } <= set(shown)
    # per-class accuracy margin
    assert "ModelNet40 (top-1 66.7%)" in shown and shown.count("67") >= 40
    _check_written(figures.save(figure, tmp_path / "confusion.png"), min_side=1000)


def test_sweep_figure_marks_the_best_cell(tmp_path):
    rows = [
        {"num_paths": n, "t": t, "top1": 0.5 + 0.01 * n - 0.0001 * t}
        for n in (1, 2, 4)
        for t in (0, 100, 200)
    ]
    adversarial = [
        {"num_paths": r["num_paths"], "t": r["t"], "paper_robust_acc": 0.2 + 0.0002 * r["t"]}
        for r in rows
    ]
    figure = figures.sweep_figure(rows, title="smoke", adversarial=adversarial)
    shown = figures.texts(figure)
    assert {
        "noise step t",
        "noise paths N",
        "top-1 (%)",
        "robust top-1 (%)",
        "smoke: clean",
        "smoke: under PGD",
    } <= set(shown)
    assert "54.0" in shown and "24.0" in shown  # the best cells' values, annotated
    marked = [p for ax in figure.axes for p in ax.patches]
    # (N=4, t=0), (N=1, t=200)
    assert [(p.get_x(), p.get_y()) for p in marked] == [(-0.5, 1.5), (1.5, -0.5)]
    _check_written(figures.save(figure, tmp_path / "sweep"))


def test_robustness_curve_figure(tmp_path):
    curves = [
        {
            "num_paths": 8,
            "t": 100,
            "mode": mode,
            "steps": [0, 5, 10],
            "acc": [0.6, 0.5, 0.4 - 0.1 * (mode == "eot")],
            "acc_std": [0.01, 0.02, 0.03],
        }
        for mode in ("paper", "eot")
    ]
    figure = figures.robustness_curve_figure(curves, title="PGD, eps 0.05")
    ax = figure.axes[0]
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--"]  # EOT dashed
    low, high = ax.get_ylim()
    assert 20 <= low < 27 and 61 < high <= 70  # fitted to 27..62 (mean -+ std), not 0..100
    assert {"attack steps", "top-1 accuracy (%)", "N=8, t=100, eot"} <= set(figures.texts(figure))
    _check_written(figures.save(figure, tmp_path / "figure8"))


def test_adversarial_figure(tmp_path):
    clean = RNG.normal(size=(2, 200, 3)) * 0.4
    figure = figures.adversarial_figure(
        clean, clean + 0.02, ["chair -> sofa", "lamp -> vase"], title="PGD"
    )
    assert {
        "chair -> sofa: clean",
        "lamp -> vase: adversarial",
        "perturbation per point (L2, unit-ball units)",
    } <= set(figures.texts(figure))
    _check_written(figures.save(figure, tmp_path / "adversarial_examples"))


def test_masked_and_noised_clouds():
    rng = np.random.default_rng(1)
    points = RNG.uniform(-0.5, 0.5, size=(512, 3)).astype(np.float32)
    visible = visualize.masked(points, 32, 8, 0.8, rng)
    assert visible.shape == ((32 - int(0.8 * 32)) * 8, 3)  # 7 groups of 8 kept
    nearest = np.linalg.norm(visible[:, None] - points[None], axis=-1).min(axis=1)
    assert nearest.max() < 1e-6  # real points of the cloud (neighbourhood + center, rounded)
    noisy = visualize.noised(points, 999, 0.12, 1000, rng)
    assert abs(np.std(noisy - points) - 0.12) < 0.01  # sigma at t = T - 1 is s
    # t = 0: no noise
    np.testing.assert_array_equal(visualize.noised(points, 0, 0.12, 1000, rng), points)


def test_visualize_job(tmp_path, capsys):
    assert main.run_command(["--config=configs/visualize.py:smoke", f"--workdir={tmp_path}"]) == 0
    for name in ("fig3", "noise_scales", "timesteps"):
        _check_written([tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"], min_side=200)
    assert "visualize synthetic chair: wrote fig3.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, key",
    [
        ("--config.shape=dragon", "config.shape"),
        ("--config.timesteps=0,1000", "config.timesteps"),
        ("--config.noise_scales=-1", "config.noise_scales"),
        ("--config.num_groups=1000", "config.num_groups"),
    ],
)
def test_visualize_refuses_bad_values(tmp_path, capsys, override, key):
    assert (
        main.run_command(
            ["--config=configs/visualize.py:smoke", override, f"--workdir={tmp_path / 'v'}"]
        )
        == 1
    )
    assert f"({key})" in capsys.readouterr().err and not (tmp_path / "v").exists()
