"""Generated document-like pictures for the copy-detection benchmark: text pages, charts, tables and diagrams,
slides, UI screenshots and book covers, drawn with real fonts in realistic layouts.

`document(kind, seed, variant)` draws one picture. Two variants of one seed share the template (the layout's
geometry, the palette, the fonts): they look alike, as two pages of one journal or two covers of one series
do, yet every word, value and item differs, so neither is a copy of the other. Different seeds differ in
layout, colours and content as well.

Fonts: DejaVu (Sans, Serif, Mono, bold) where the system has it, else Pillow's own scalable font
(`ImageFont.load_default(size)`, Pillow >= 10.1), so every machine draws real glyphs.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KINDS = ("page", "chart", "table", "diagram", "slide", "screenshot", "cover")
FONT_FOLDERS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf")
SYLLABLE_TEXT = (
    "ba be con de di en er for ga in is la le li lo ma me mi mo na ne no ol on or pa pe per pi pro qu ra "
    "re ri ro sa se si so st ta te ti to tra un ur va ve vi wa we an al ar at es et it ous ment tion ing "
    "ly ers ter"
)
"""The syllables words are made of, space-separated."""
SYLLABLES = SYLLABLE_TEXT.split()
Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=256)
def font(style: int, size: int) -> Font:
    """A font of `FONT_FILES[style]` at `size` pixels (Pillow's own font where DejaVu is missing)."""
    for folder in FONT_FOLDERS:
        path = folder / FONT_FILES[style % len(FONT_FILES)]
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def word(rng: np.random.Generator) -> str:
    """A pronounceable word of 1-4 syllables (short words are more frequent, as in English)."""
    count = int(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))
    return "".join(SYLLABLES[int(i)] for i in rng.integers(0, len(SYLLABLES), count))


def words(rng: np.random.Generator, count: int, title: bool = False) -> str:
    text = " ".join(word(rng) for _ in range(count))
    return text.title() if title else text


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> Colour:
    return tuple(int(c) for c in rng.integers(low, high, 3))  # type: ignore[return-value]


def _text_width(draw: ImageDraw.ImageDraw, text: str, face: Font) -> float:
    return float(draw.textlength(text, font=face))


def _paragraph(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], face: Font, ink: Colour
) -> int:
    """Fill `box` (left, top, right, bottom) with ragged-right lines of words; the y after the last line."""
    left, top, right, bottom = box
    height = int(face.size * 1.35) if isinstance(face, ImageFont.FreeTypeFont) else 12
    y = top
    while y + height <= bottom:
        line = word(rng)
        while True:
            candidate = f"{line} {word(rng)}"
            if _text_width(draw, candidate, face) > right - left:
                break
            line = candidate
        if rng.random() < 0.12:
            line = line[: max(1, int(len(line) * rng.uniform(0.3, 0.8)))]
        draw.text((left, y), line, font=face, fill=ink)
        y += height
        if rng.random() < 0.08:
            y += height // 2
    return y


def page(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A text page: a title, optional header rule and page number, one or two columns of paragraphs."""
    width, height = (612, 792) if shared.random() < 0.6 else (595, 842)
    paper: Colour = (255, 255, 255) if shared.random() < 0.7 else _colour(shared, 235, 256)
    ink: Colour = _colour(shared, 0, 60)
    serif = int(shared.integers(2))
    body = font(1 if serif else 0, int(shared.integers(10, 15)))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    margin = int(shared.integers(40, 80))
    columns = 1 if shared.random() < 0.6 else 2
    gutter = 24
    y = margin
    if shared.random() < 0.6:
        draw.text((margin, y - 24), words(own, 3, title=True), font=font(0, 9), fill=ink)
        draw.line((margin, y - 10, width - margin, y - 10), fill=ink, width=1)
    title_face = font(4 if serif else 2, int(shared.integers(18, 28)))
    draw.text((margin, y), words(own, int(own.integers(3, 7)), title=True), font=title_face, fill=ink)
    y += int(title_face.size * 2) if isinstance(title_face, ImageFont.FreeTypeFont) else 30
    column_width = (width - 2 * margin - gutter * (columns - 1)) // columns
    for column in range(columns):
        left = margin + column * (column_width + gutter)
        top = y
        while top < height - margin - 40:
            lines = int(own.integers(3, 10))
            bottom = min(height - margin - 20, top + lines * int(body.size * 1.35))
            top = _paragraph(draw, own, (left, top, left + column_width, bottom), body, ink) + int(body.size * 0.8)
    draw.text((width // 2 - 8, height - margin // 2 - 10), str(int(own.integers(1, 400))), font=font(0, 10), fill=ink)
    return image


def chart(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A bar, line or pie chart with a title, axes, ticks, labels and a legend."""
    width, height = ((640, 480), (800, 500), (600, 600))[int(shared.integers(3))]
    background: Colour = (255, 255, 255) if shared.random() < 0.8 else _colour(shared, 225, 256)
    palette = [_colour(shared, 20, 230) for _ in range(6)]
    style = ("bar", "line", "pie", "hbar")[int(shared.integers(4))]
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    small, label = font(0, 11), font(0, 13)
    draw.text(
        (width // 2 - 150, 14), words(own, int(own.integers(3, 6)), title=True), font=font(2, 17), fill=(20,) * 3
    )
    left, top, right, bottom = 70, 60, width - 40, height - 60
    series = int(shared.integers(1, 4))
    categories = int(shared.integers(4, 10))
    values = own.uniform(0.05, 1.0, size=(series, categories))
    names = [word(own) for _ in range(categories)]
    if style == "pie":
        centre, radius = ((left + right) // 2 - 60, (top + bottom) // 2), min(right - left, bottom - top) // 2 - 10
        shares = values[0] / values[0].sum()
        start = 0.0
        for index, share in enumerate(shares):
            end = start + 360 * float(share)
            box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
            draw.pieslice(box, start, end, fill=palette[index % len(palette)], outline=background)
            angle = math.radians((start + end) / 2)
            where = (centre[0] + radius * 0.6 * math.cos(angle), centre[1] + radius * 0.6 * math.sin(angle))
            draw.text(where, f"{share:.0%}", font=small, fill=(255, 255, 255))
            start = end
        for index, name in enumerate(names):
            y = top + 18 * index
            draw.rectangle((right - 120, y, right - 110, y + 10), fill=palette[index % len(palette)])
            draw.text((right - 104, y - 2), name, font=small, fill=(30,) * 3)
        return image
    axis: Colour = (60, 60, 60)
    draw.line((left, top, left, bottom), fill=axis, width=1)
    draw.line((left, bottom, right, bottom), fill=axis, width=1)
    top_value = float(own.choice([10, 50, 100, 250, 1000]))
    for tick in range(6):
        y = bottom - (bottom - top) * tick / 5
        if shared.random() < 0.5:
            draw.line((left, y, right, y), fill=(225, 225, 225), width=1)
        draw.text((left - 40, y - 7), f"{top_value * tick / 5:g}", font=small, fill=axis)
    step = (right - left) / categories
    for index, name in enumerate(names):
        draw.text((left + step * index + 4, bottom + 8), name[:8], font=small, fill=axis)
    for line_index in range(series):
        colour = palette[line_index]
        points = []
        for index in range(categories):
            value = float(values[line_index, index])
            x = left + step * index + step / 2
            y = bottom - (bottom - top) * value
            if style in ("bar", "hbar"):
                bar = step / (series + 1)
                x0 = left + step * index + bar * (line_index + 0.5)
                draw.rectangle((x0, y, x0 + bar, bottom - 1), fill=colour)
            points.append((x, y))
        if style == "line":
            draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.rectangle((right - 110, top + 16 * line_index, right - 100, top + 16 * line_index + 10), fill=colour)
        draw.text((right - 94, top + 16 * line_index - 2), word(own), font=small, fill=axis)
    draw.text((left, height - 24), words(own, 4), font=label, fill=axis)
    return image


def table(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A table: a header row, rows of words and numbers, rules or zebra stripes, and a caption."""
    columns = int(shared.integers(3, 7))
    rows = int(shared.integers(6, 18))
    row_height = int(shared.integers(22, 32))
    widths = [int(w) for w in shared.integers(70, 150, columns)]
    width, height = sum(widths) + 40, row_height * (rows + 1) + 80
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    face, head = font(int(shared.choice([0, 1, 3])), int(row_height * 0.5)), font(2, int(row_height * 0.5))
    header_fill = _colour(shared, 30, 200) if shared.random() < 0.6 else (255, 255, 255)
    stripe = _colour(shared, 225, 250)
    draw.text((20, 12), words(own, int(own.integers(3, 7)), title=True), font=font(2, 15), fill=(20,) * 3)
    y = 44
    header_ink: Colour = (255, 255, 255) if sum(header_fill) < 450 else (0, 0, 0)
    draw.rectangle((20, y, width - 20, y + row_height), fill=header_fill)
    numeric = [bool(shared.random() < 0.6) for _ in range(columns)]
    x = 20
    for index in range(columns):
        draw.text((x + 6, y + row_height * 0.2), word(own).title()[:10], font=head, fill=header_ink)
        x += widths[index]
    for row in range(rows):
        y += row_height
        if row % 2 and shared.random() < 0.5:
            draw.rectangle((20, y, width - 20, y + row_height), fill=stripe)
        x = 20
        for index in range(columns):
            cell = (
                f"{own.uniform(0, 10 ** int(own.integers(1, 5))):,.{int(own.integers(0, 3))}f}"
                if numeric[index]
                else word(own)
            )
            draw.text((x + 6, y + row_height * 0.2), cell[:12], font=face, fill=(30,) * 3)
            x += widths[index]
        draw.line((20, y + row_height, width - 20, y + row_height), fill=(200, 200, 200), width=1)
    return image


def diagram(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A flowchart: labelled boxes, ellipses and diamonds joined by arrows."""
    width, height = ((640, 480), (800, 600), (700, 500))[int(shared.integers(3))]
    image = Image.new("RGB", (width, height), (255, 255, 255) if shared.random() < 0.8 else _colour(shared, 230, 256))
    draw = ImageDraw.Draw(image)
    face = font(0, int(shared.integers(11, 15)))
    fills = [_colour(shared, 120, 250) for _ in range(3)]
    count = int(own.integers(5, 10))
    nodes = []
    for index in range(count):
        cx, cy = own.uniform(90, width - 90), own.uniform(60, height - 60)
        w, h = own.uniform(90, 150), own.uniform(36, 60)
        nodes.append((cx, cy, w, h))
        shape = int(own.integers(3))
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        fill = fills[index % len(fills)]
        if shape == 0:
            draw.rectangle(box, fill=fill, outline=(40, 40, 40), width=2)
        elif shape == 1:
            draw.ellipse(box, fill=fill, outline=(40, 40, 40), width=2)
        else:
            draw.polygon([(cx, box[1]), (box[2], cy), (cx, box[3]), (box[0], cy)], fill=fill, outline=(40, 40, 40))
        draw.text((box[0] + 10, cy - 8), words(own, 2)[:14], font=face, fill=(10, 10, 10))
    for index in range(1, count):
        a, b = nodes[int(own.integers(index))], nodes[index]
        draw.line((a[0], a[1] + a[3] / 2, b[0], b[1] - b[3] / 2), fill=(50, 50, 50), width=2)
        tip_x, tip_y = b[0], b[1] - b[3] / 2
        draw.polygon([(tip_x, tip_y), (tip_x - 5, tip_y - 9), (tip_x + 5, tip_y - 9)], fill=(50, 50, 50))
    return image


def slide(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A presentation slide: a title bar, bullet points, and sometimes a block of bars or a picture frame."""
    width, height = (1024, 576) if shared.random() < 0.6 else (1024, 768)
    theme = _colour(shared, 0, 256)
    background: Colour = (255, 255, 255) if shared.random() < 0.6 else _colour(shared, 0, 60)
    ink: Colour = (20, 20, 20) if sum(background) > 300 else (240, 240, 240)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    bar = int(shared.integers(70, 120))
    draw.rectangle((0, 0, width, bar), fill=theme)
    title_ink: Colour = (255, 255, 255) if sum(theme) < 400 else (0, 0, 0)
    draw.text((40, bar // 2 - 18), words(own, int(own.integers(2, 6)), title=True), font=font(2, 34), fill=title_ink)
    face = font(0, int(shared.integers(20, 28)))
    split = width if shared.random() < 0.5 else int(width * 0.58)
    y = bar + 40
    for _ in range(int(own.integers(3, 7))):
        draw.ellipse((50, y + 10, 60, y + 20), fill=theme)
        _paragraph(draw, own, (75, y, split - 30, y + int(face.size * 1.4) * 2), face, ink)
        y += int(face.size * 1.4) * 2 + 14
        if y > height - 80:
            break
    if split < width:
        box = (split, bar + 40, width - 40, height - 60)
        draw.rectangle(box, outline=theme, width=3)
        bars = int(own.integers(3, 7))
        step = (box[2] - box[0]) / bars
        for index in range(bars):
            top = box[3] - (box[3] - box[1] - 20) * own.uniform(0.1, 1.0)
            draw.rectangle((box[0] + step * index + 8, top, box[0] + step * (index + 1) - 8, box[3] - 2), fill=theme)
    draw.text((width - 60, height - 36), str(int(own.integers(2, 60))), font=font(0, 16), fill=ink)
    return image


def screenshot(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A UI screenshot (desktop or phone): an app bar, a sidebar or tab bar, and a list of cards with text."""
    phone = shared.random() < 0.35
    width, height = (390, 844) if phone else ((1280, 800), (1024, 768))[int(shared.integers(2))]
    dark = shared.random() < 0.3
    background: Colour = (30, 30, 34) if dark else (246, 247, 249)
    card: Colour = (48, 48, 54) if dark else (255, 255, 255)
    ink: Colour = (230, 230, 230) if dark else (30, 30, 30)
    accent = _colour(shared, 0, 220)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    face, bold = font(0, 14 if phone else 13), font(2, 15)
    bar = 56
    draw.rectangle((0, 0, width, bar), fill=accent)
    draw.text((16, 18), words(own, 2, title=True), font=font(2, 18), fill=(255, 255, 255))
    left = 16
    if not phone:
        side = int(shared.integers(180, 260))
        draw.rectangle((0, bar, side, height), fill=card)
        for index in range(int(own.integers(6, 14))):
            y = bar + 20 + 34 * index
            if index == int(own.integers(0, 5)):
                draw.rectangle((0, y - 6, side, y + 22), fill=accent)
            draw.text((20, y), words(own, int(own.integers(1, 3)), title=True), font=face, fill=ink)
        left = side + 20
    else:
        draw.rectangle((0, height - 64, width, height), fill=card)
        for index in range(4):
            x = 30 + index * (width - 60) // 3
            draw.ellipse((x - 10, height - 50, x + 10, height - 30), outline=accent, width=2)
    y = bar + 20
    card_height = int(shared.integers(70, 130))
    while y + card_height < height - (70 if phone else 20):
        draw.rounded_rectangle((left, y, width - 16, y + card_height), radius=8, fill=card)
        if shared.random() < 0.7:
            draw.ellipse((left + 12, y + 14, left + 52, y + 54), fill=_colour(own, 60, 230))
        draw.text((left + 66, y + 12), words(own, int(own.integers(2, 5)), title=True), font=bold, fill=ink)
        _paragraph(draw, own, (left + 66, y + 36, width - 40, y + card_height - 8), face, ink)
        if not phone and own.random() < 0.5:
            draw.rounded_rectangle((width - 130, y + 12, width - 30, y + 40), radius=6, fill=accent)
            draw.text((width - 118, y + 17), word(own)[:8], font=face, fill=(255, 255, 255))
        y += card_height + 12
    return image


def cover(shared: np.random.Generator, own: np.random.Generator) -> Image.Image:
    """A book cover: a plain, banded or gradient background, a large title, an author and a publisher mark."""
    width, height = (int(shared.integers(280, 360)), int(shared.integers(440, 520)))
    top, bottom = np.array(_colour(shared)), np.array(_colour(shared))
    style = int(shared.integers(3))
    if style == 0:
        image = Image.new("RGB", (width, height), tuple(int(c) for c in top))
    else:
        mix = np.linspace(0, 1, height)[:, None, None]
        ramp = (top * (1 - mix) + bottom * mix) * np.ones((1, width, 1))
        image = Image.fromarray(ramp.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    ink: Colour = (255, 255, 255) if top.sum() < 380 else (10, 10, 10)
    if style == 2:
        band = int(shared.uniform(0.35, 0.6) * height)
        draw.rectangle((0, band, width, band + int(shared.integers(60, 140))), fill=_colour(own))
    for _ in range(int(own.integers(0, 6))):
        x, y, r = own.uniform(0, width), own.uniform(0, height), own.uniform(10, 80)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=_colour(own), width=int(own.integers(1, 6)))
    title_face = font(int(shared.choice([1, 2, 4])), int(shared.integers(26, 40)))
    y = int(shared.uniform(0.08, 0.3) * height)
    for _ in range(int(own.integers(1, 4))):
        draw.text((20, y), word(own).upper()[:12], font=title_face, fill=ink)
        y += int(title_face.size * 1.2) if isinstance(title_face, ImageFont.FreeTypeFont) else 40
    draw.text((20, y + 10), words(own, int(own.integers(3, 8)))[:40], font=font(1, 13), fill=ink)
    draw.text((20, height - 60), words(own, 2, title=True), font=font(2, 18), fill=ink)
    draw.rectangle((width - 50, height - 40, width - 20, height - 16), outline=ink, width=2)
    return image


DRAWERS = {
    "page": page,
    "chart": chart,
    "table": table,
    "diagram": diagram,
    "slide": slide,
    "screenshot": screenshot,
    "cover": cover,
}


def document(kind: str, seed: int, variant: int = 0) -> Image.Image:
    """The picture of `kind` for `seed`; variants of one seed share its template (module docstring)."""
    if kind not in DRAWERS:
        raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")
    return DRAWERS[kind](np.random.default_rng([seed, 11]), np.random.default_rng([seed, variant, 13]))
