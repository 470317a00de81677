"""The report page: one self-contained HTML file (figures and thumbnails inlined as base64, no server) with
the threshold sweep, the nearest-neighbour histograms, and per group the sampled near-duplicate pairs side by
side with their cosine, ids, paths and kept/removed label at each shown threshold."""

from __future__ import annotations

import base64
import html
import logging

import datasets

from llava_mixes.report.analysis import DedupAnalysis, SweepTable
from llava_mixes.report.pairs import CROSS_GROUP, Pair, PairImage
from llava_mixes.report.thumbnails import thumbnails

logger = logging.getLogger(__name__)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 20px 40px; color: #222; }
h1 { font-size: 24px; margin: 20px 0 4px; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #444; } code { font-size: 12px; word-break: break-all; }
nav a { margin-right: 12px; } .muted { color: #666; } .figure { max-width: 100%; border: 1px solid #eee; }
table.sweep { border-collapse: collapse; font-size: 12px; margin: 10px 0; }
table.sweep td, table.sweep th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.sweep tr.shown { background: #fff3c4; font-weight: 600; }
.scroll { max-height: 440px; overflow: auto; flex: 1; min-width: 0; }
.row { display: flex; gap: 16px; align-items: flex-start; } .row > img { width: 55%; }
.pairs { display: flex; flex-wrap: wrap; gap: 12px; }
.pair { border: 1px solid #ddd; border-radius: 6px; padding: 8px; display: flex; gap: 8px; align-items: flex-start; }
.side { width: 190px; font-size: 12px; } .side img { display: block; max-width: 176px; max-height: 176px; }
.score { align-self: center; font-size: 18px; font-weight: 700; min-width: 64px; text-align: center; }
.badge { display: inline-block; border-radius: 3px; padding: 0 4px; margin: 2px 2px 0 0; font-size: 11px; }
.kept { background: #d9f2d9; color: #1b5e20; } .removed { background: #fbd5d5; color: #8e1b1b; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _e(value: object) -> str:
    return html.escape(str(value))


def _image(side: PairImage, role: str, shown: tuple[float, ...], thumbnails: dict[int, bytes | None]) -> str:
    data = thumbnails.get(side.row)
    picture = (
        f'<img src="{data_uri(data, "image/jpeg")}" alt="{_e(side.path)}">'
        if data
        else '<p class="muted">(image not readable)</p>'
    )
    badges = "".join(
        f'<span class="badge {"kept" if kept else "removed"}">{value:g}: {"kept" if kept else "removed"}</span>'
        for value, kept in zip(shown, side.kept, strict=True)
    )
    more = f" (+{side.rows - 1} more rows)" if side.rows > 1 else ""
    return (
        f'<div class="side">{picture}<div><b>{role}</b> · {_e(side.group)}</div>'
        f"<div>id <code>{_e(side.id)}</code>{more}</div><div><code>{_e(side.path)}</code></div>"
        f"<div>{badges}</div></div>"
    )


def _pair(pair: Pair, shown: tuple[float, ...], thumbnails: dict[int, bytes | None]) -> str:
    return (
        f'<div class="pair" data-band="{_e(pair.band)}">{_image(pair.earlier, "earlier", shown, thumbnails)}'
        f'<div class="score" title="cosine similarity">{pair.similarity:.4f}</div>'
        f"{_image(pair.later, 'later', shown, thumbnails)}</div>"
    )


def _sweep_table(tables: dict[str, SweepTable], scope: str, shown: tuple[float, ...]) -> str:
    table = tables[scope]
    others = [name for name in tables if name != scope]
    head = "".join(f"<th>{_e(group)}</th>" for group in table.groups)
    head += f"<th>all ({_e(scope)})</th>" + "".join(f"<th>all ({_e(name)})</th>" for name in others)
    images = "".join(f"<td>{count:,}</td>" for count in table.images) + f"<td>{sum(table.images):,}</td>"
    images += "<td></td>" * len(others)
    lines = []
    for index, threshold in enumerate(table.thresholds):
        kept = table.kept_images[index]
        cells = "".join(f"<td>{count:,}</td>" for count in kept) + f"<td>{sum(kept):,}</td>"
        cells += "".join(f"<td>{sum(tables[name].kept_images[index]):,}</td>" for name in others)
        marked = ' class="shown"' if threshold in shown else ""
        lines.append(f"<tr{marked}><th>{threshold:.2f}</th>{cells}</tr>")
    return (
        f'<div class="scroll"><table class="sweep"><thead><tr><th>threshold</th>{head}</tr>'
        f"<tr><th>images</th>{images}</tr></thead><tbody>{''.join(lines)}</tbody></table></div>"
    )


def _section(
    analysis: DedupAnalysis, name: str, anchor: str, thumbnails: dict[int, bytes | None], note: str = ""
) -> str:
    pairs = [pair for pair in analysis.pairs if pair.section == name]
    counts = analysis.pair_counts.get(name, {})
    parts = [f'<section id="{anchor}"><h2>{_e(name)}</h2>{note}']
    if not pairs:
        parts.append(f'<p class="muted">No pairs at or above {min(analysis.shown):g}.</p>')
    for band in reversed(analysis.bands):
        in_band = [pair for pair in pairs if pair.band == band.label]
        if in_band:
            total = counts.get(band.label, len(in_band))
            parts.append(f"<h3>{_e(band.label)} <span class='muted'>({len(in_band)} of {total:,} shown)</span></h3>")
            parts.append(
                '<div class="pairs">' + "".join(_pair(p, analysis.shown, thumbnails) for p in in_band) + "</div>"
            )
    return "".join(parts) + "</section>"


def render_page(
    analysis: DedupAnalysis, dataset: datasets.Dataset, sweep_png: bytes, nearest_png: bytes, samples: list[str]
) -> str:
    """The page (see the module docstring); `dataset` gives the thumbnails, `samples` the export file names."""
    rows = sorted({side.row for pair in analysis.pairs for side in (pair.earlier, pair.later)})
    pictures = thumbnails(dataset, rows)
    groups = [group for group in analysis.table.groups if group in analysis.pair_counts]
    anchors = {group: f"group-{index}" for index, group in enumerate(analysis.table.groups)}
    embedder = ", ".join(f"{key}={value}" for key, value in analysis.embedder.items())
    nav = ['<a href="#sweep">sweep</a>', '<a href="#nearest">nearest neighbours</a>']
    nav += [f'<a href="#{anchors[group]}">{_e(group)}</a>' for group in groups]
    if "global" in analysis.decisions:
        nav.append('<a href="#cross-group">across groups</a>')
    shown = ", ".join(f"{value:g}" for value in analysis.shown)
    body = [
        f"<h1>What dedup removes: {_e(analysis.config_name)}</h1>",
        f'<p class="muted">Embedder {_e(embedder)}; {len(analysis.images.paths):,} distinct images in '
        f"{len(analysis.table.groups)} groups; scope <b>{_e(analysis.scope)}</b>. Keep rule: images are visited in "
        "order of first appearance, and an image is removed when its cosine similarity to an image already kept "
        "in its scope is at or above the threshold; byte-identical files are duplicates at every threshold. "
        f"Pairs are labelled at {shown}.</p>",
        f"<nav>{''.join(nav)}</nav>",
        '<section id="sweep"><h2>Threshold sweep</h2><div class="row">',
        f'<img class="figure" src="{data_uri(sweep_png, "image/png")}" alt="images kept per group by threshold">',
        _sweep_table(analysis.tables, analysis.scope, analysis.shown),
        "</div><p>Images kept per group at each threshold (shown thresholds highlighted), from one pass over the "
        "embeddings; the global-scope column is what a global dedup would keep.</p>",
        "<p>Samples of every Nth row: " + ", ".join(f'<a href="{_e(name)}">{_e(name)}</a>' for name in samples),
        "</p></section>",
        '<section id="nearest"><h2>Nearest-neighbour similarity</h2>',
        f'<img class="figure" src="{data_uri(nearest_png, "image/png")}" alt="nearest-neighbour histograms">',
        "<p>Each image's highest cosine similarity to another image of its group: a threshold left of a peak "
        f"removes many images. Similarities below {analysis.nearest_from:g} are not looked for: they are counted "
        "in the first bar.</p></section>",
    ]
    for group in groups:
        body.append(_section(analysis, group, anchors[group], pictures))
    if "global" in analysis.decisions:
        note = (
            '<p class="muted">Each image with its most similar earlier image in another group; '
            "labels are what a global-scope dedup would do.</p>"
        )
        if analysis.cross_group.mode == "sample":
            note += f'<p class="muted">{_e(analysis.cross_group.describe())}.</p>'

        body.append(_section(analysis, CROSS_GROUP, "cross-group", pictures, note))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>llava_mixes dedup report: {_e(analysis.config_name)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )
