"""A dependency-free scatter plot (PIL): held-out reward against prior fit, one colour per recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (255, 187, 120),
    (152, 223, 138),
    (197, 176, 213),
]


def scatter(
    rows: list[dict[str, Any]], x_key: str, y_key: str, path: Path, title: str, size: tuple[int, int] = (900, 600)
) -> Path:
    """One point per run: ``x_key`` against ``y_key`` (callables of a row are allowed via keys below)."""
    w, h = size
    left, right, top, bottom = 80, 230, 40, 60
    xs = [float(r[x_key]) for r in rows]
    ys = [float(r[y_key]) for r in rows]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    px = (x1 - x0) * 0.05 or 1.0
    py = (y1 - y0) * 0.05 or 1.0
    x0, x1, y0, y1 = x0 - px, x1 + px, y0 - py, y1 + py

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), top + (y1 - y) / (y1 - y0) * (h - top - bottom))

    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for i in range(5):
        gx = x0 + (x1 - x0) * i / 4
        gy = y0 + (y1 - y0) * i / 4
        px_, _ = to_px(gx, y0)
        _, py_ = to_px(x0, gy)
        d.line([px_, h - bottom, px_, h - bottom + 5], fill=(0, 0, 0))
        d.text((px_ - 15, h - bottom + 8), f"{gx:.2f}", fill=(0, 0, 0))
        d.line([left - 5, py_, left, py_], fill=(0, 0, 0))
        d.text((5, py_ - 6), f"{gy:.3f}", fill=(0, 0, 0))
    d.text((left + 150, h - 22), x_key, fill=(0, 0, 0))
    d.text((left, 10), f"{title}   (y: {y_key})", fill=(0, 0, 0))
    names = list(dict.fromkeys(r["recipe"] for r in rows))
    for k, name in enumerate(names):
        color = PALETTE[k % len(PALETTE)]
        for r in rows:
            if r["recipe"] == name:
                cx, cy = to_px(float(r[x_key]), float(r[y_key]))
                d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=color)
        d.ellipse([w - right + 15, top + 18 * k, w - right + 23, top + 18 * k + 8], fill=color)
        d.text((w - right + 30, top + 18 * k - 2), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
