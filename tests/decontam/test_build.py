"""Decontamination as config kwargs: the `contaminated` split, the per-benchmark table, row accounting, the
cache identity, `llava-mixes build --decontaminate`; and the exact duplicate row count of plain configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.cli.main import main
from llava_mixes.decontam import CONTAMINATED_SPLIT, MATCHED_REFERENCE
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground


def _kwargs(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"content_cache_dir": str(tmp_path / "cc"), "decontaminate_embedder": "thumbnail", **extra}


def test_any_config_takes_decontamination_kwargs(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    plain = build("mix665k", str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    built = build(
        "mix665k", str(playground.root), str(tmp_path / "hf"), **_kwargs(tmp_path, decontaminate=[str(evals.root)])
    )
    report = built.report
    contaminated = built.dataset[CONTAMINATED_SPLIT]
    assert set(built.dataset) == {schema.TRAIN_SPLIT, CONTAMINATED_SPLIT}
    assert len(contaminated) == report.contaminated_rows > 0
    assert {label.split(":")[0] for label in contaminated[MATCHED_REFERENCE]} == {"pope", "textvqa", "mmbench"}
    assert len(built.dataset[schema.TRAIN_SPLIT]) + len(contaminated) == len(plain.dataset[schema.TRAIN_SPLIT])
    total = report.total()
    assert report.rows_in == total.kept_rows + total.removed_rows + report.contaminated_rows + report.rejected_rows
    rows = {line["benchmark"]: line["rows_removed"] for line in report.decontamination["benchmarks"]}
    assert sum(rows.values()) == len(contaminated)


def test_dedup_and_decontamination_account_for_every_row(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    built = build(
        "mix665k-dedup-0.8",
        str(playground.root),
        str(tmp_path / "hf"),
        **_kwargs(tmp_path, embedder="thumbnail", decontaminate=[str(evals.root)]),
    )
    report = built.report
    assert set(built.dataset) == {schema.TRAIN_SPLIT, schema.REMOVED_SPLIT, CONTAMINATED_SPLIT}
    total = report.total()
    assert report.contaminated_rows == len(built.dataset[CONTAMINATED_SPLIT]) > 0
    assert total.removed_rows == len(built.dataset[schema.REMOVED_SPLIT]) > 0
    assert report.rows_in == total.kept_rows + total.removed_rows + report.contaminated_rows + report.rejected_rows
    contaminated = set(built.dataset[CONTAMINATED_SPLIT][schema.ID])
    assert contaminated.isdisjoint(built.dataset[schema.TRAIN_SPLIT][schema.ID])
    assert contaminated.isdisjoint(built.dataset[schema.REMOVED_SPLIT][schema.ID])


def test_changed_benchmark_pictures_rebuild(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    args = ("mix665k", str(playground.root), str(tmp_path / "hf"))
    first = build(*args, **_kwargs(tmp_path, decontaminate=[str(evals.root / "pope")])).report.contaminated_rows
    unseen = evals.root / "pope" / "val2014" / "COCO_val2014_000000000042.jpg"
    unseen.unlink()
    later = build(*args, **_kwargs(tmp_path, decontaminate=[str(evals.root / "pope")])).report
    assert later.contaminated_rows < first
    assert later.decontamination["benchmarks"][0]["not_found"] == 1


def test_bad_decontamination_kwargs_name_the_value(playground: Playground, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"decontaminate_threshold=2"):
        build("mix665k", str(playground.root), str(tmp_path / "hf"), decontaminate=["x"], decontaminate_threshold=2)
    with pytest.raises(ConfigError, match=r"decontaminate=\[3\]"):
        build("mix665k", str(playground.root), str(tmp_path / "hf"), decontaminate=[3])


def test_build_prints_the_benchmark_table(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    evals = write_eval_playground(playground.root)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "build",
            "mix665k",
            "--data-dir",
            str(playground.root),
            "--cache-dir",
            str(tmp_path / "hf"),
            "--content-cache-dir",
            str(tmp_path / "cc"),
            "--decontaminate",
            str(evals.root / "pope" / "val2014"),
            "--decontaminate",
            str(evals.root / "mmbench" / "mmbench_dev_20230712.tsv"),
            "--decontaminate-threshold",
            "0.8",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| benchmark | reference images | reference images hit | training rows removed |" in printed
    assert "| val2014 | 5 | 2 |" in printed and "| mmbench | 3 | 1 |" in printed


def test_plain_configs_count_exact_duplicate_rows(playground: Playground, tmp_path: Path) -> None:
    built = build("mix665k", str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    rows = built.dataset[schema.TRAIN_SPLIT]
    seen, copies = set(), 0
    for sha, turns in zip(rows[schema.IMAGE_SHA256], rows[schema.CONVERSATIONS], strict=True):
        key = (sha, tuple((turn["from"], " ".join(turn["value"].split())) for turn in turns))
        copies += key in seen
        seen.add(key)
    assert copies >= 1
    assert built.report.duplicate_rows == copies
