"""Grids with legends for scripts (X/Y/Z plot, Prompt matrix): labels above columns, left of rows.

Part of the extension API (import it as ``from webui.extensions import grids``). Labels are drawn
with Pillow's bundled font at a size that follows the image size, wrapped to the cell width;
an inactive label (Prompt matrix's "part off") is drawn grey and struck through.
"""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from webui.images import image_grid  # noqa: F401  (A1111's automatic grid, for scripts)

BACKGROUND = "white"
TEXT = (0, 0, 0)
INACTIVE = (153, 153, 153)


@dataclass(frozen=True)
class Label:
    text: str
    active: bool = True


def _font(size: int):
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _labels_height(draw, labels: list[list[Label]], font, width: int, line_h: int) -> int:
    count = max((sum(len(_wrap(draw, lab.text, font, width)) for lab in cell) for cell in labels), default=0)
    return count * line_h


def _draw_cell(draw, cell: list[Label], font, box: tuple[int, int, int, int], line_h: int) -> None:
    x0, y0, x1, y1 = box
    width = x1 - x0
    lines: list[tuple[str, Label]] = []
    for label in cell:
        lines += [(text, label) for text in _wrap(draw, label.text, font, width - 4)]
    top = y0 + max(0, ((y1 - y0) - len(lines) * line_h) // 2)
    for i, (text, label) in enumerate(lines):
        w = draw.textlength(text, font=font)
        x = x0 + (width - w) / 2
        y = top + i * line_h
        colour = TEXT if label.active else INACTIVE
        draw.text((x, y), text, font=font, fill=colour)
        if not label.active:
            mid = y + line_h / 2
            draw.line((x, mid, x + w, mid), fill=colour, width=max(1, line_h // 12))


def grid_with_legends(images: list[Image.Image], columns: list[list[Label]], rows: list[list[Label]],
                      margin: int = 0, title: str = "") -> Image.Image:
    """Images laid out len(rows) x len(columns) (row-major), column labels on top, row labels left.

    ``columns`` / ``rows`` hold the labels of each column / row (several labels stack). An empty
    label list draws no legend on that side. ``title`` (X/Y/Z's Z value) goes above everything.
    """
    n_cols, n_rows = max(1, len(columns)), max(1, len(rows))
    if len(images) != n_cols * n_rows:
        raise ValueError(f"{len(images)} images for a {n_cols}x{n_rows} grid")
    w, h = images[0].size
    size = max(12, min(48, (w + h) // 20))
    font = _font(size)
    line_h = int(size * 1.25)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    has_cols = any(columns)
    has_rows = any(rows)
    left = max(w, int(size * 8)) if has_rows else 0
    top_labels = _labels_height(probe, columns, font, w - 4, line_h) + line_h // 2 if has_cols else 0
    title_h = (len(_wrap(probe, title, font, n_cols * w + left)) * line_h + line_h // 2) if title else 0
    top = top_labels + title_h
    width = left + n_cols * w + (n_cols - 1) * margin
    height = top + n_rows * h + (n_rows - 1) * margin
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    if title:
        _draw_cell(draw, [Label(title)], font, (0, 0, width, title_h), line_h)
    for c in range(n_cols):
        x = left + c * (w + margin)
        if has_cols:
            _draw_cell(draw, columns[c], font, (x, title_h, x + w, top), line_h)
        for r in range(n_rows):
            y = top + r * (h + margin)
            grid.paste(images[r * n_cols + c].convert("RGB"), (x, y))
    if has_rows:
        for r in range(n_rows):
            y = top + r * (h + margin)
            _draw_cell(draw, rows[r], font, (0, y, left, y + h), line_h)
    return grid


def stack(grids: list[Image.Image], margin: int = 0) -> Image.Image:
    """Sub-grids side by side (X/Y/Z's Z axis), top-aligned on white."""
    width = sum(g.width for g in grids) + margin * (len(grids) - 1)
    out = Image.new("RGB", (width, max(g.height for g in grids)), BACKGROUND)
    x = 0
    for g in grids:
        out.paste(g, (x, 0))
        x += g.width + margin
    return out
