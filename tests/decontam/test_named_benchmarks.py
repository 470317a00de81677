"""Named benchmark sets: the shipped lists, each entry read offline from a mirror folder or the Hub cache in its
repo's real layout (generated here), a build decontaminated by name, the record of what was read, the CLI."""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

import datasets
import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
from benchmark_mirrors import (
    REVISION,
    entry,
    mirror_set,
    parquet_table,
    repo_files,
    write_cached_repo,
    write_mirror_repo,
)

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.cli.main import main
from llava_mixes.decontam import (
    CONTAMINATED_SPLIT,
    MATCHED_REFERENCE,
    find_contamination,
    format_benchmark_table,
    load_references,
    references_fingerprint,
)
from llava_mixes.decontam.benchmark_repos import MIRROR_ENV
from llava_mixes.decontam.benchmark_sets import shipped_sets
from llava_mixes.decontam.decontaminate import PICTURE_STORE
from llava_mixes.decontam.named_benchmarks import BenchmarksMissingError
from llava_mixes.errors import ConfigError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.playground.pictures import encode, synthetic_photo

LLAVA_15 = (
    "vqav2 gqa vizwiz scienceqa-img textvqa pope mme mmbench mmbench-cn seed-bench llava-bench-in-the-wild mm-vet"
)


def picture(seed: int) -> bytes:
    return encode(synthetic_photo(np.random.default_rng(seed)))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_shipped_lists_load_and_name_the_twelve_llava_1_5_benchmarks() -> None:
    sets = shipped_sets()
    assert set(sets) == {"llava-1.5-evals", "lmms-eval-images"}
    llava = sets["llava-1.5-evals"]
    assert [item.name for item in llava.entries] == LLAVA_15.split()
    assert all(item.confirmed and item.repo.startswith("lmms-lab/") for item in llava.entries)
    assert entry("llava-1.5-evals/gqa").config == "testdev_balanced_images"
    assert entry("llava-1.5-evals/mmbench-cn").repo_config == "lmms-lab/MMBench:cn"
    larger = {item.name for item in sets["lmms-eval-images"].entries}
    assert len(larger) > 40 and set(LLAVA_15.split()) - {"vqav2", "textvqa"} <= larger


def test_a_whole_set_is_read_from_a_mirror_each_entry_named_and_recorded(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    written = mirror_set(mirror, "llava-1.5-evals", picture)
    found = load_references(["llava-1.5-evals"], mirror=mirror)
    assert found.benchmarks == [f"llava-1.5-evals/{name}" for name in LLAVA_15.split()]
    for benchmark, pictures in written.items():
        assert {image.sha256 for image in found.images if image.benchmark == benchmark} == set(map(sha, pictures))
    records = {record["benchmark"]: record for record in found.named}
    seed = records["llava-1.5-evals/seed-bench"]
    assert seed["read_from"] == "mirror" and seed["pictures"] == 2 and seed["revision"] is None
    assert seed["pictures_sha256"] == sha("\n".join(sorted(map(sha, written["llava-1.5-evals/seed-bench"]))).encode())
    assert records["llava-1.5-evals/mmbench-cn"]["splits"] == ["dev", "test"]
    assert found.missing == {}


def test_the_default_layout_is_read_without_a_readme(tmp_path: Path) -> None:
    pope = entry("llava-1.5-evals/pope")
    write_mirror_repo(tmp_path / "m", pope.repo, repo_files(pope, {"test": [picture(1)]}, with_readme=False))
    found = load_references(["llava-1.5-evals/pope"], mirror=tmp_path / "m")
    assert [image.sha256 for image in found.images] == [sha(picture(1))]
    assert found.images[0].label == "llava-1.5-evals/pope:test/0"


def test_a_readme_that_names_other_files_is_followed(tmp_path: Path) -> None:
    mme = entry("llava-1.5-evals/mme")
    files = repo_files(mme, {"test": [picture(2)]}, with_readme=False)
    files = {"parquet/all-of-it.parquet": files["data/test-00000-of-00001.parquet"]}
    files["README.md"] = (
        b"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: parquet/*\n---\n"
    )
    write_mirror_repo(tmp_path / "m", mme.repo, files)
    assert [image.sha256 for image in load_references(["llava-1.5-evals/mme"], mirror=tmp_path / "m").images] == [
        sha(picture(2))
    ]


def test_offline_an_entry_is_read_from_the_hub_cache(tmp_path: Path) -> None:
    gqa = entry("llava-1.5-evals/gqa")
    write_cached_repo(
        Path(huggingface_hub.constants.HF_HUB_CACHE), gqa.repo, repo_files(gqa, {"testdev": [picture(3)]})
    )
    found = load_references(["llava-1.5-evals/gqa"])
    assert [image.sha256 for image in found.images] == [sha(picture(3))]
    assert found.named[0]["read_from"] == "hub cache" and found.named[0]["revision"] == REVISION


def test_online_only_the_readme_and_the_split_files_are_fetched_into_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    textvqa = entry("llava-1.5-evals/textvqa")
    files = repo_files(textvqa, {"validation": [picture(4)]})
    files["data/train-00000-of-00001.parquet"] = b"never fetched"
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
    calls = []

    def snapshot_download(repo_id: str, *, allow_patterns: list[str], local_files_only: bool, **kwargs: object) -> str:
        """The network edge: writes the files the patterns allow into the Hub cache, as huggingface_hub does."""
        calls.append((repo_id, sorted(allow_patterns), local_files_only, kwargs.get("cache_dir")))
        wanted = {name: data for name, data in files.items() if any(fnmatch.fnmatch(name, p) for p in allow_patterns)}
        return str(write_cached_repo(cache, repo_id, wanted, kwargs.get("revision") or "f" * 40))

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    found = load_references(["llava-1.5-evals/textvqa"], mirror=None)
    assert [image.sha256 for image in found.images] == [sha(picture(4))]
    assert calls[0][:3] == ("lmms-lab/textvqa", ["README.md"], False)
    assert calls[1][1] == ["data/validation-*"] and not calls[1][2]
    assert all(call[3] == str(cache) for call in calls)
    assert not list(tmp_path.glob("**/train-00000-of-00001.parquet"))


def test_a_build_is_decontaminated_by_name_as_by_folder(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    pope_pictures = sorted((evals.root / "pope" / "val2014").iterdir())
    pope = entry("llava-1.5-evals/pope")
    mirror = tmp_path / "mirror"
    write_mirror_repo(mirror, pope.repo, repo_files(pope, {"test": [path.read_bytes() for path in pope_pictures]}))
    kwargs = {"content_cache_dir": str(tmp_path / "cc"), "decontaminate_embedder": "thumbnail"}
    by_folder = build(
        "mix665k", str(playground.root), str(tmp_path / "hf1"), decontaminate=[str(evals.root / "pope")], **kwargs
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, str(mirror))
        by_name = build(
            "mix665k", str(playground.root), str(tmp_path / "hf2"), decontaminate=["llava-1.5-evals/pope"], **kwargs
        )
    folder_rows = sorted(by_folder.dataset[CONTAMINATED_SPLIT][schema.ID])
    assert sorted(by_name.dataset[CONTAMINATED_SPLIT][schema.ID]) == folder_rows and folder_rows
    assert {label.split(":")[0] for label in by_name.dataset[CONTAMINATED_SPLIT][MATCHED_REFERENCE]} == {
        "llava-1.5-evals/pope"
    }
    record = by_name.report.decontamination
    assert [item["benchmark"] for item in record["named_benchmarks"]] == ["llava-1.5-evals/pope"]
    assert record["named_benchmarks"][0]["pictures"] == len(pope_pictures)
    report = by_name.report
    assert report.rows_in == report.total().kept_rows + report.total().removed_rows + report.contaminated_rows + (
        report.rejected_rows
    )


def test_the_fingerprint_follows_the_mirror_files_and_the_list(tmp_path: Path) -> None:
    pope = entry("llava-1.5-evals/pope")
    folder = write_mirror_repo(tmp_path / "m", pope.repo, repo_files(pope, {"test": [picture(5)]}))
    before = references_fingerprint(["llava-1.5-evals/pope"], mirror=tmp_path / "m")
    assert references_fingerprint(["llava-1.5-evals/pope"], mirror=tmp_path / "m") == before
    (folder / "data/test-00000-of-00001.parquet").write_bytes(
        repo_files(pope, {"test": [picture(6)]})["data/test-00000-of-00001.parquet"]
    )
    edited = references_fingerprint(["llava-1.5-evals/pope"], mirror=tmp_path / "m")
    assert edited != before
    shipped = shipped_sets()["llava-1.5-evals"]
    object.__setattr__(shipped, "digest", "0" * 64)
    try:
        assert references_fingerprint(["llava-1.5-evals/pope"], mirror=tmp_path / "m") != edited
    finally:
        shipped_sets.cache_clear()


def test_the_cli_lists_the_sets_and_reads_the_mirror_flag(
    playground: Playground,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["list", "--benchmarks"]) == 0
    shown = capsys.readouterr().out
    assert "llava-1.5-evals (12 benchmarks)" in shown and "llava-1.5-evals/mmbench-cn" in shown
    assert "lmms-lab/MMBench:cn" in shown and "lmms-eval-images (" in shown
    monkeypatch.setenv(MIRROR_ENV, "")  # the command sets it; restored after the test
    mme = entry("llava-1.5-evals/mme")
    write_mirror_repo(tmp_path / "mirror", mme.repo, repo_files(mme, {"test": [picture(8)]}))
    flags = [
        "--data-dir",
        str(playground.root),
        "--cache-dir",
        str(tmp_path / "hf"),
        "--stats-json",
        str(tmp_path / "s"),
    ]
    named = ["--decontaminate", "llava-1.5-evals/mme"]
    assert main(["build", "mix665k", *flags, *named, "--benchmark-mirror", str(tmp_path / "mirror")]) == 0
    assert "| llava-1.5-evals/mme | lmms-lab/MME | (default) | test | mirror | - | 1 |" in capsys.readouterr().out
    code = main(["build", "mix665k", *flags, *named, "--benchmark-mirror", str(tmp_path / "no-such-folder")])
    assert code == 2 and "no-such-folder' is not a folder" in caplog.text


def test_a_missing_entry_fails_naming_it_and_the_command_that_fetches_it(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    pope = entry("llava-1.5-evals/pope")
    write_mirror_repo(mirror, pope.repo, repo_files(pope, {"test": [picture(1)]}))
    with pytest.raises(BenchmarksMissingError) as caught:
        load_references(["llava-1.5-evals"], mirror=mirror)
    message = str(caught.value)
    assert "11 of the benchmarks named cannot be read" in message and "llava-1.5-evals/pope (" not in message
    assert "llava-1.5-evals/vqav2 (lmms-lab/VQAv2)" in message
    assert "hf download lmms-lab/VQAv2 --repo-type dataset --include 'README.md' --include 'data/testdev-*'" in message
    assert f"--local-dir {mirror}/lmms-lab/VQAv2" in message and "llava-1.5-evals/pope" in message
    assert isinstance(caught.value, ConfigError)


def test_a_recipe_names_a_benchmark_set_and_its_report_records_it(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    pope = entry("llava-1.5-evals/pope")
    pictures = [path.read_bytes() for path in sorted((evals.root / "pope" / "val2014").iterdir())]
    write_mirror_repo(tmp_path / "mirror", pope.repo, repo_files(pope, {"test": pictures}))
    recipe = tmp_path / "recipe" / "named.yaml"
    recipe.parent.mkdir()
    recipe.write_text("sources: [mix665k]\ndecontaminate: {references: [llava-1.5-evals/pope], embedder: thumbnail}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
        built = build("recipe", str(playground.root), str(tmp_path / "hf"), recipe=str(recipe))
    contaminated = built.dataset[CONTAMINATED_SPLIT]
    assert len(contaminated) > 0
    assert {label.split(":")[0] for label in contaminated[MATCHED_REFERENCE]} == {"llava-1.5-evals/pope"}
    record = built.report.decontamination["named_benchmarks"][0]
    assert record["repo"] == "lmms-lab/POPE" and record["pictures"] == len(set(map(sha, pictures)))
    table = format_benchmark_table(built.report.decontamination)
    assert "| named benchmark | repo |" in table and "| llava-1.5-evals/pope | lmms-lab/POPE | (default) |" in table


def test_decontamination_keeps_named_pictures_as_files_in_the_content_cache(tmp_path: Path) -> None:
    pope = entry("llava-1.5-evals/pope")
    write_mirror_repo(tmp_path / "m", pope.repo, repo_files(pope, {"test": [picture(1), picture(2)]}))
    train = tmp_path / "train.jpg"
    train.write_bytes(picture(2))
    rows = datasets.Dataset.from_dict(
        {schema.IMAGE: [str(train)], schema.IMAGE_SHA256: [sha(picture(2))]},
        features=datasets.Features({schema.IMAGE: datasets.Image(), schema.IMAGE_SHA256: datasets.Value("string")}),
    )
    found = find_contamination(
        rows, ["llava-1.5-evals/pope"], embedder="thumbnail", cache_dir=tmp_path / "cc", mirror=tmp_path / "m"
    )
    assert found.rows == [0] and found.matched_reference == ["llava-1.5-evals/pope:test/1"]
    stored = sorted(path.name for path in (tmp_path / "cc" / PICTURE_STORE).rglob("*.bin"))
    assert stored == sorted(f"{sha(picture(seed))}.bin" for seed in (1, 2))


def test_an_entry_the_mirror_holds_only_in_part_is_read_from_the_hub_cache(tmp_path: Path) -> None:
    mmbench = entry("llava-1.5-evals/mmbench")
    files = repo_files(mmbench, {"dev": [picture(1)], "test": [picture(2)]})
    write_mirror_repo(tmp_path / "m", mmbench.repo, {k: v for k, v in files.items() if "test-" not in k})
    write_cached_repo(Path(huggingface_hub.constants.HF_HUB_CACHE), mmbench.repo, files)
    found = load_references(["llava-1.5-evals/mmbench"], mirror=tmp_path / "m")
    assert found.named[0]["read_from"] == "hub cache"
    assert {image.sha256 for image in found.images} == {sha(picture(1)), sha(picture(2))}


def test_an_entry_of_several_columns_reads_those_a_shard_has(tmp_path: Path) -> None:
    iconqa = entry("lmms-eval-images/iconqa")
    shards = {
        split: parquet_table(query_image=[picture(seed)], choice_image_1=[picture(seed + 1)], choice_image_0=[None])
        for split, seed in (("val", 1), ("test", 3))
    }
    files = {f"data/{split}-00000-of-00001.parquet": data for split, data in shards.items()}
    write_mirror_repo(tmp_path / "m", iconqa.repo, files)
    found = load_references(["lmms-eval-images/iconqa"], mirror=tmp_path / "m")
    assert sorted(image.ref_id for image in found.images) == [
        "test/0/choice_image_1",
        "test/0/query_image",
        "val/0/choice_image_1",
        "val/0/query_image",
    ]
