"""The report's cross-group pass as the user chooses it (`report.cross`): exact, sampled with a measured recall,
or skipped; the CLI flag and its --help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_report_prune import rows_and_cache

from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError
from llava_mixes.report import analysis as report_analysis
from llava_mixes.report import cross
from llava_mixes.report.cross import CrossGroup, check_cross_group, in_share, measure_recall
from llava_mixes.report.pairs import CROSS_GROUP
from llava_mixes.vectors import checked_norms


def cross_pairs(analysis: report_analysis.DedupAnalysis) -> list[tuple[str, str, str]]:
    return [(p.band, p.earlier.path, p.later.path) for p in analysis.pairs if p.section == CROSS_GROUP]


def brute_recall(vectors: np.ndarray, groups: np.ndarray, sampled: np.ndarray, threshold: float) -> tuple[int, int]:
    """Per sampled position: a match among all earlier items of another group, and among the sampled ones."""
    unit = vectors.astype(np.float64) / checked_norms(vectors)[:, None]
    matched = found = 0
    in_sample = np.zeros(len(vectors), dtype=bool)
    in_sample[sampled] = True
    for position in sampled:
        others = (np.arange(len(vectors)) < position) & (groups != groups[position])
        scores = unit[others] @ unit[position]
        if (scores >= threshold).any():
            matched += 1
            found += bool((scores[in_sample[others]] >= threshold).any())
    return matched, found


def test_a_share_of_one_is_the_exact_pass_with_recall_one(tmp_path: Path) -> None:
    dataset, cache, _ = rows_and_cache(tmp_path)
    exact = report_analysis.analyse(dataset, cache, "c", (0.8, 0.9), per_band=50, block_size=512)
    sampled = report_analysis.analyse(
        dataset, cache, "c", (0.8, 0.9), per_band=50, block_size=512, cross_group="sample", cross_group_sample=1.0
    )
    assert exact.cross_group.mode == "exact" and "global" in exact.tables
    assert "global" not in sampled.tables and sampled.tables["group"] == exact.tables["group"]
    assert cross_pairs(sampled) == cross_pairs(exact) and cross_pairs(exact)
    crossing = sampled.cross_group
    assert crossing.matched > 0 and crossing.recall == 1.0 and crossing.images == crossing.total_images


def test_a_sampled_pass_reports_the_recall_a_brute_force_check_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cross, "RECALL_QUERIES", 10**6)
    dataset, cache, _ = rows_and_cache(tmp_path)
    sampled = report_analysis.analyse(
        dataset, cache, "c", (0.8, 0.9), per_band=50, block_size=512, cross_group="sample", cross_group_sample=0.5
    )
    crossing = sampled.cross_group
    images = sampled.images
    every, _ = report_analysis._items(images, np.arange(len(images.paths)))
    vectors = images.vectors[images.path_vector[every]]
    groups = images.path_group[every]
    chosen = np.flatnonzero(in_share(images.path_vector[every], 0.5))
    matched, found = brute_recall(vectors, groups, chosen, 0.8)
    assert (crossing.queries, crossing.matched, crossing.found) == (len(chosen), matched, found)
    assert 0 < crossing.recall < 1
    assert 0.3 < crossing.images / crossing.total_images < 0.7
    assert sampled.to_json()["cross_group"]["recall"] == crossing.recall
    # Every pair shown is two images of the share in different groups, with its exact cosine.
    index = {path: at for at, path in enumerate(images.paths)}
    unit = images.vectors.astype(np.float64) / checked_norms(images.vectors)[:, None]
    shown = [pair for pair in sampled.pairs if pair.section == CROSS_GROUP]
    assert shown
    for pair in shown:
        first, second = index[pair.earlier.path], index[pair.later.path]
        assert in_share(images.path_vector[[first, second]], 0.5).all()
        assert images.path_group[first] != images.path_group[second]
        cosine = unit[images.path_vector[first]] @ unit[images.path_vector[second]]
        assert cosine >= 0.8 - 1e-9 and abs(cosine - pair.similarity) < 1e-4


def test_recall_queries_are_capped_and_spread(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    vectors[150:] = vectors[:150] + 1e-3
    groups = np.repeat([0, 1], 150)
    sampled = np.arange(0, 300, 2)
    queries, matched, found = measure_recall(vectors, groups, sampled, np.ones(len(sampled), bool), 0.99, queries=30)
    assert queries == 30 and matched == found
    assert matched == len([p for p in sampled[np.linspace(0, 149, 30).astype(int)] if p >= 150])


def test_skip_runs_no_global_pass(tmp_path: Path) -> None:
    dataset, cache, _ = rows_and_cache(tmp_path)
    for mode in ("skip", False):
        skipped = report_analysis.analyse(dataset, cache, "c", (0.8,), cross_group=mode)
        assert "global" not in skipped.decisions and not cross_pairs(skipped)
        assert skipped.cross_group.mode == "skip"


@pytest.mark.parametrize(
    ("mode", "share"), [("sampled", 0.3), ("sample", 0.0), ("sample", 1.5), ("sample", True), ("sample", "a")]
)
def test_bad_modes_and_shares_are_config_errors(mode: object, share: object) -> None:
    with pytest.raises(ConfigError, match="cross_group"):
        check_cross_group(mode, share)


def test_the_global_scope_needs_the_exact_pass(tmp_path: Path) -> None:
    dataset, cache, _ = rows_and_cache(tmp_path)
    with pytest.raises(ConfigError, match="scope='global'"):
        report_analysis.analyse(dataset, cache, "c", (0.8,), scope="global", cross_group="sample")


def test_the_share_is_fixed_and_close_to_what_was_asked() -> None:
    contents = np.arange(100000)
    first, second = in_share(contents, 0.3), in_share(contents, 0.3)
    assert np.array_equal(first, second) and abs(first.mean() - 0.3) < 0.01
    assert in_share(contents, 1.0).all()
    assert not (in_share(contents, 0.2) & ~first).any()  # a smaller share is inside a larger one


def test_describe_names_the_recall() -> None:
    crossing = CrossGroup("sample", 0.3, 300, 0.7, 100, 20, 9, 1000)
    assert "recall 0.450" in crossing.describe() and "about 200 of 1,000" in crossing.describe()
    assert CrossGroup("sample", 0.3, 300, 0.7, 100, 0, 0, 1000).recall is None


def test_help_states_each_modes_cost(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cross-group {exact,sample,skip}" in text
    assert "1.7x the group pass" in text and "share squared" in text and "recall check" in text


def test_cli_refuses_a_bad_share_before_building(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data").mkdir()
    argv = ["report", "llava-mix665k", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--cross-group", "sample", "--cross-group-sample", "2"]) == 2
    assert "cross_group_sample=2.0" in caplog.text
