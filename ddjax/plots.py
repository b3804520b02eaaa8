"""A line chart drawn with PIL (the project has no plotting library): axes, ticks, one line per series,
a legend. Used for the attack job's Figure 8."""
from __future__ import annotations

from typing import Sequence

from ddjax import run_folder

COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def line_chart(path, series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
               ylabel: str, ylim: tuple[float, float] = (0.0, 1.0), size: tuple[int, int] = (720, 480),
               dashed: Sequence[bool] | None = None) -> None:
    """Writes a PNG: each series is (label, xs, ys); `dashed[i]` draws series i dashed."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 64, 220, 36, 52
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    xs_all = [x for _, xs, _ in series for x in xs] or [0.0, 1.0]
    x0, x1 = min(xs_all), max(xs_all)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = ylim
    px = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)
    py = lambda y: height - bottom - (min(max(y, y0), y1) - y0) / (y1 - y0) * (height - top - bottom)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(6):  # y ticks and grid
        y = y0 + i * (y1 - y0) / 5
        draw.line([left, py(y), width - right, py(y)], fill=(225, 225, 225))
        draw.text((left - 8, py(y)), f"{y:g}", fill="black", font=font, anchor="rm")
    ticks = sorted(set(xs_all))
    stride = max(1, len(ticks) // 10)
    for x in ticks[::stride]:
        draw.line([px(x), height - bottom, px(x), height - bottom + 4], fill="black")
        draw.text((px(x), height - bottom + 6), f"{x:g}", fill="black", font=font, anchor="mt")
    draw.text(((left + width - right) / 2, 8), title, fill="black", font=font, anchor="mt")
    draw.text(((left + width - right) / 2, height - 18), xlabel, fill="black", font=font, anchor="mt")
    draw.text((6, top - 20), ylabel, fill="black", font=font)
    for i, (label, xs, ys) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        points = [(px(x), py(y)) for x, y in zip(xs, ys)]
        if dashed and dashed[i]:
            for a, b in zip(points[:-1], points[1:]):
                for s in range(0, 10, 2):  # five dashes per segment
                    p = (a[0] + (b[0] - a[0]) * s / 10, a[1] + (b[1] - a[1]) * s / 10)
                    q = (a[0] + (b[0] - a[0]) * (s + 1) / 10, a[1] + (b[1] - a[1]) * (s + 1) / 10)
                    draw.line([p, q], fill=color, width=2)
        elif len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=color)
        ly = top + 6 + 16 * i
        draw.line([width - right + 12, ly, width - right + 36, ly], fill=color, width=2)
        draw.text((width - right + 42, ly), label, fill="black", font=font, anchor="lm")
    run_folder.save_png(path, image)
