"""TensorBoard's event files (ddjax/tensorboard_events.py), read back with the tensorboard
package's own reader: the training stream rewritten from metrics.jsonl on a resume, each step once;
a job's summary with its PNG images byte for byte; the curves figure."""

import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_file_loader

from ddjax import figures, metrics, tensorboard_events


def read_events(path) -> list:
    return list(event_file_loader.LegacyEventFileLoader(str(path)).Load())


def scalars_by_tag(path) -> dict:
    """{tag: [(step, value), ...]} of an event file, in file order."""
    out = {}
    for event in read_events(path):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def images_by_tag(path) -> dict:
    """{tag: PNG bytes} of an event file's images."""
    return {
        value.tag: value.image.encoded_image_string
        for event in read_events(path)
        for value in event.summary.value
        if value.HasField("image")
    }


def test_a_resumed_run_rewrites_its_events_with_each_step_once(tmp_path):
    def run(start, stop, resume_from):
        writer = metrics.MetricWriter(str(tmp_path), stop, resume_from, echo=lambda _: None)
        for step in range(start, stop + 1):
            writer.write(step, {"loss": 1.0 / step, "loss_rec": 0.5 / step, "lr": 1e-3 * step})
        writer.close()

    run(1, 5, 0)
    run(3, 7, 2)  # killed after step 5, resumed from checkpoint 2: steps 3..5 replayed
    path = tmp_path / "events.out.tfevents.pretrain"
    events = read_events(path)
    assert events[0].file_version == "brain.Event:2"
    records = metrics.read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == list(range(1, 8))
    got = scalars_by_tag(path)
    assert sorted(got) == ["loss", "loss_rec", "lr", "steps_per_sec"]
    for tag, points in got.items():
        assert [s for s, _ in points] == list(range(1, 8)), tag
        want = [np.float32(r[tag]) for r in records]
        np.testing.assert_array_equal(np.float32([v for _, v in points]), want, err_msg=tag)
    # the replayed records keep the time they were logged at
    steps_events = [e for e in events if e.summary.value]
    assert [e.wall_time for e in steps_events[:2]] == [r["wall_time"] for r in records[:2]]


def test_a_damaged_metrics_line_is_left_out_of_the_events(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n{"step": 3, "loss": 1.0}\n')
    notes = []
    writer = metrics.MetricWriter(str(tmp_path), 4, 3, echo=notes.append)
    writer.write(4, {"loss": 0.5, "loss_rec": 0.25, "lr": 0.1})
    writer.close()
    got = scalars_by_tag(tmp_path / "events.out.tfevents.pretrain")
    assert got["loss"] == [(1, 2.0), (3, 1.0), (4, 0.5)]
    assert got["loss_rec"] == [(4, 0.25)]


def test_a_summary_holds_its_scalars_and_png_images_byte_for_byte(tmp_path):
    figure = figures.certified_accuracy_figure(
        [{"sigma": 0.1, "t": 30, "curve": {"radius": [0.0, 0.1], "accuracy": [0.5, 0.25]}}],
        title="t",
    )
    (png,) = [p for p in figures.save(figure, tmp_path / "fig") if p.suffix == ".png"]
    path = tensorboard_events.write_summary(
        tmp_path, "certify", 7, {"certify/acc": 0.75, "certify/n": 12}, [("certify/figure", png)]
    )
    assert path == tmp_path / "events.out.tfevents.certify"
    assert not list(tmp_path.glob(".*.tmp"))
    assert scalars_by_tag(path) == {"certify/acc": [(7, 0.75)], "certify/n": [(7, 12.0)]}
    (image,) = [v.image for e in read_events(path) for v in e.summary.value if v.HasField("image")]
    assert image.encoded_image_string == png.read_bytes()
    with Image.open(io.BytesIO(png.read_bytes())) as want:
        assert (image.width, image.height) == want.size
        assert image.colorspace == len(want.getbands())


def test_the_curves_show_each_loss_and_the_evaluation():
    records = [
        {"step": s, "loss": 2.0 / s, "loss_rec": 1.0 / s, "loss_image": 0.5 / s, "lr": 1e-4 * s}
        for s in range(1, 11)
    ]
    figure = figures.curves_figure(records, [{"step": 10, "top1": 0.4}], title="run: pretraining")
    shown = figures.texts(figure)
    assert {"total", "reconstruction", "image", "zero-shot top-1 40.0%"} <= set(shown)
    assert "text" not in shown  # no loss_text in these records
    loss_ax, lr_ax = figure.axes
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    np.testing.assert_array_equal(
        lines["reconstruction"].get_ydata(), [1.0 / s for s in range(1, 11)]
    )
    np.testing.assert_array_equal(
        lr_ax.get_lines()[0].get_ydata(), [1e-4 * s for s in range(1, 11)]
    )


@pytest.mark.parametrize("bad", ["{", '{"checkpoint_step": "x", "top1": 1}'])
def test_curves_without_a_readable_evaluation_are_still_drawn(tmp_path, bad):
    from ddjax.jobs import pretrain

    (tmp_path / "zeroshot.json").write_text(bad)
    pretrain.write_curves(tmp_path, [{"step": 1, "loss": 1.0, "lr": 0.1}])
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "curves.pdf").is_file()
    assert (tmp_path / "zeroshot.json").read_text() == bad
