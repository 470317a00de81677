from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import openpyxl
import pytest

from llava_mixes import schema
from llava_mixes.building.report import dedup_group_stats
from llava_mixes.cli.main import main
from llava_mixes.dedup.deduplicate import deduplicate
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.embedding.transform import add_embeddings, attach_embeddings
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground, write_playground
from llava_mixes.plugin import DATASET_NAME
from llava_mixes.report.analysis import DedupAnalysis, analyse, card_summary
from llava_mixes.report.pairs import CROSS_GROUP, IDENTICAL, score_bands
from llava_mixes.report.samples import sheet_title


@dataclass
class Report:
    playground: Playground
    out: Path
    dataset: datasets.Dataset
    cache: EmbeddingCache
    stdout: str


def report_argv(root: Path, config: str, out: Path, *extra: str) -> list[str]:
    caches = ["--cache-dir", str(root / "hf"), "--content-cache-dir", str(root / "content")]
    playground = ["--data-dir", str(root / "playground"), "--out", str(out)]
    return ["--log-level", "error", "report", config, *playground, *caches, *extra]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The issue's command on the demo playground (with the thumbnail embedder, and every 10th row sampled)."""
    root = tmp_path_factory.mktemp("report")
    playground = write_playground(root / "playground")
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        argv = report_argv(
            root, "mix665k", root / "R", "--embedder", "thumbnail", "--every", "10", "--nearest-from", "0.4"
        )
        assert main(argv) == 0
    builder = datasets.load_dataset_builder(
        DATASET_NAME, "mix665k", data_dir=str(playground.root), cache_dir=str(root / "hf")
    )
    dataset = builder.as_dataset(split=schema.TRAIN_SPLIT)
    return Report(
        playground, root / "R", dataset, EmbeddingCache(root / "content", ThumbnailEmbedder()), captured.getvalue()
    )


@pytest.fixture(scope="module")
def analysis(report: Report) -> DedupAnalysis:
    return analyse(report.dataset, report.cache, "mix665k", per_band=10)


def test_report_writes_page_figures_and_samples(report: Report) -> None:
    names = {path.name for path in report.out.iterdir()}
    assert {"index.html", "sweep.png", "nearest.png", "sample.xlsx", "sample-train.csv", "sweep.json"} <= names
    assert (report.out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kept per threshold (group scope): 0.7: 37, 0.8: 37, 0.9: 37" in report.stdout
    page = (report.out / "index.html").read_text()
    assert "<h2>Threshold sweep</h2>" in page and 'id="cross-group"' in page
    assert "Similarities below 0.4 are not looked for" in page
    assert json.loads((report.out / "sweep.json").read_text())["nearest_from"] == 0.4
    assert all(copy in page and original in page for copy, (original, _) in report.playground.planted.items())
    assert not re.search(r'src="(?!data:)', page), "the page must not load anything from outside itself"


def test_sweep_equals_deduplicate_and_is_monotone(report: Report, analysis: DedupAnalysis) -> None:
    embedded = attach_embeddings(report.dataset, report.cache)
    for threshold in (0.7, 0.8, 0.9):
        for scope in ("group", "global"):
            result = deduplicate(embedded, threshold, scope)
            kept = {path for path in result[schema.TRAIN_SPLIT][schema.IMAGE_PATH] if path is not None}
            assert analysis.kept_paths(threshold, scope) == kept, (threshold, scope)
        stats = {line.image_group: line for line in dedup_group_stats(deduplicate(embedded, threshold), [])}
        assert analysis.table.kept_at(threshold) == {
            group: stats[group].kept_images for group in analysis.table.groups
        }
        rows = analysis.table.kept_rows[analysis.table.thresholds.index(threshold)]
        assert dict(zip(analysis.table.groups, rows, strict=True)) == {
            group: stats[group].kept_rows for group in analysis.table.groups
        }
    for table in analysis.tables.values():
        kept = np.asarray(table.kept_images)
        assert (np.diff(kept, axis=0) >= 0).all() and (kept[-1] <= np.asarray(table.images)).all()
    assert sum(analysis.table.kept_at(1.0).values()) == sum(analysis.table.images) - 1  # only the byte copy goes


def test_planted_duplicates_are_pairs_in_their_score_band(report: Report, analysis: DedupAnalysis) -> None:
    images = analysis.images
    vectors = images.vectors.astype(np.float64)
    bands = score_bands(0.7)
    found = {pair.later.path: pair for pair in analysis.pairs}
    for copy, (original, kind) in report.playground.planted.items():
        pair = found[copy]
        assert pair.earlier.path == original and pair.section == pair.later.group
        assert pair.later.kept == (False, False, False) and pair.earlier.kept == (True, True, True)
        if kind == "byte-identical":
            assert pair.band == IDENTICAL and pair.similarity == 1.0
            continue
        first, second = (vectors[images.path_vector[images.paths.index(path)]] for path in (copy, original))
        cosine = first @ second / np.linalg.norm(first) / np.linalg.norm(second)
        band = next(band for band in bands[:-1] if band.low <= cosine < band.high or band.high == cosine == 1.0)
        assert pair.band == band.label and pair.similarity == pytest.approx(cosine, abs=1e-4) and cosine > 0.9


def test_samples_hold_every_nth_row(report: Report) -> None:
    workbook = openpyxl.load_workbook(report.out / "sample.xlsx", read_only=True)
    assert workbook.sheetnames == ["mix665k train"]
    rows = list(workbook["mix665k train"].iter_rows(values_only=True))
    assert rows[0] == ("row", "id", "image_group", "image_path", "source", "conversation")
    expected = list(range(0, len(report.dataset), 10))
    assert [row[0] for row in rows[1:]] == expected
    for row in rows[1:]:
        record = report.dataset[row[0]]
        assert row[1:5] == (record["id"], record["image_group"], record["image_path"], record["source"])
        assert row[5].startswith(f"human: {record['conversations'][0]['value']}\ngpt: ")
    with open(report.out / "sample-train.csv", newline="") as handle:
        assert [line[:2] for line in csv.reader(handle)][1:] == [[str(row[0]), row[1]] for row in rows[1:]]


def test_dedup_config_samples_both_splits(
    tmp_path: Path, playground: Playground, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = report_argv(tmp_path, "mix665k-dedup-0.8", tmp_path / "R", "--embedder", "thumbnail", "--every", "2")
    argv[argv.index("--data-dir") + 1] = str(playground.root)
    assert main([*argv, "--no-cross-group", "--thresholds", "0.8", "0.95"]) == 0
    assert str(tmp_path / "R" / "sweep.json") in capsys.readouterr().out
    workbook = openpyxl.load_workbook(tmp_path / "R" / "sample.xlsx", read_only=True)
    assert workbook.sheetnames == ["mix665k-dedup-0.8 train", "mix665k-dedup-0.8 removed"]
    removed = list(workbook["mix665k-dedup-0.8 removed"].iter_rows(values_only=True))
    assert removed[0][-2:] == ("duplicate_of", "similarity")
    assert len(removed) - 1 == (len(playground.planted) + 1) // 2
    assert {row[3] for row in removed[1:]} <= set(playground.planted)
    summary = json.loads((tmp_path / "R" / "sweep.json").read_text())
    assert summary["thresholds"] == [0.8, 0.95] and list(summary["sweeps"]) == ["group"]
    assert 'id="cross-group"' not in (tmp_path / "R" / "index.html").read_text()


def test_cross_group_duplicates_have_their_own_section(tmp_path: Path, playground: Playground) -> None:
    root = playground.root
    records = json.loads((root / ANNOTATION_FILE).read_text())
    coco = [record["image"] for record in records if str(record.get("image", "")).startswith("coco/")]
    shutil.copy(root / coco[5], root / "gqa/images/424242.jpg")
    conversation = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Shapes."}]
    records.append({"id": "424242", "image": "gqa/images/424242.jpg", "conversations": conversation})
    (root / ANNOTATION_FILE).write_text(json.dumps(records))
    builder = datasets.load_dataset_builder(DATASET_NAME, "mix665k", data_dir=str(root))
    builder.download_and_prepare()
    dataset = builder.as_dataset(split=schema.TRAIN_SPLIT)
    add_embeddings(dataset, "thumbnail", cache_dir=tmp_path / "content")
    found = analyse(dataset, EmbeddingCache(tmp_path / "content", ThumbnailEmbedder()), "mix665k", per_band=10)
    across = [pair for pair in found.pairs if pair.section == CROSS_GROUP]
    assert [(pair.earlier.path, pair.later.path, pair.band) for pair in across] == [
        (coco[5], "gqa/images/424242.jpg", IDENTICAL)
    ]
    assert across[0].scope == "global" and across[0].later.kept == (False, False, False)
    assert "gqa/images/424242.jpg" in found.kept_paths(0.9) and "gqa/images/424242.jpg" not in found.kept_paths(
        0.9, "global"
    )


def test_card_summary_lists_thresholds_and_pairs_from_distinct_bands(analysis: DedupAnalysis) -> None:
    summary = card_summary(analysis, pairs=3)
    assert "| group | images | kept at 0.7 | kept at 0.8 | kept at 0.9 |" in summary.markdown
    assert "| total | 44 | 37 | 37 | 37 |" in summary.markdown
    assert [pair.band for pair in summary.pairs] == [IDENTICAL, "0.99–1.00", "0.95–0.99"]


def test_sheet_titles_fit_excel() -> None:
    taken: set[str] = set()
    for split in ("train", "removed", "removed"):
        title = sheet_title("mix665k+zh600k-dedup-0.8/x", split, taken)
        assert len(title) <= 31 and title not in taken and "/" not in title and split in title
        taken.add(title)


def test_report_errors_are_one_clear_line(
    tmp_path: Path, playground: Playground, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["report", "mix665k", "--data-dir", str(playground.root), "--out", str(tmp_path / "R")]
    assert main(argv) == 2  # the default embedder is CLIP, which cannot be downloaded offline
    assert "--embedder thumbnail" in caplog.text and not (tmp_path / "R").exists()
    assert main([*argv, "--embedder", "thumbnail", "--thresholds", "0.8", "1.5"]) == 2
    assert "threshold 1.5 is not allowed" in caplog.text
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    assert main([*argv, "--embedder", "thumbnail"]) == 2
    assert "pip install 'llava_mixes[report]'" in caplog.text


DECODED_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  const probe = document.createElement("p");
  probe.id = "probe";
  probe.textContent = `decoded ${decoded} of ${images.length}`;
  document.body.appendChild(probe);
});
</script>"""


def test_page_images_decode_in_headless_chromium(report: Report, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    page = (report.out / "index.html").read_text().replace("</body>", DECODED_PROBE + "</body>")
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom"]
    done = subprocess.run([chromium, *flags, probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"decoded (\d+) of (\d+)", done.stdout)
    assert match, done.stderr[-2000:]
    pairs = json.loads((report.out / "sweep.json").read_text())["pairs"]
    assert int(match.group(1)) == int(match.group(2)) == 2 + 2 * len(pairs)
