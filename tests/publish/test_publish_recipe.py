"""Publishing a recipe build: the config `recipe-<name>` with every split the recipe made, viewer-ready (check-repo)
and loadable from the local tree; its card section (the settings as YAML with their digest, the per-source and
per-benchmark tables); the version rules with the recipe's settings part of the compared content; and the build
flags a recipe build would ignore, refused by name in `build --recipe`, `publish --recipe`, `release` and
`load_dataset`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest
import yaml
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.entry import Built, build
from llava_mixes.building.mixing import DUPLICATE_SPLIT
from llava_mixes.building.report import BuildReport, recipe_accounted
from llava_mixes.building.tables import format_benchmark_table, format_recipe_table
from llava_mixes.cli.main import main
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.errors import ConfigError, PathEscapeError, PublishError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.publish.publish import CARD_FILE, MANIFEST_FILE
from llava_mixes.recipes.recipe import parse_recipe
from llava_mixes.workflows.release import release

REPO = "demo/llava_mixes"
MIX = "recipe-mix"


def write_recipe(path: Path, references: Path, seed: int = 0, name: str = "mix") -> Path:
    """A recipe of every step: sampling, exact duplicate rows, decontamination and dedup across sources."""
    path.write_text(
        f"name: {name}\nseed: {seed}\nsources:\n  - mix665k\n  - {{config: sharegpt4v-mix665k, sample: 0.5}}\n"
        "dedup: {threshold: 0.8, embedder: thumbnail}\n"
        f"decontaminate: {{references: [{str(references)!r}], embedder: thumbnail}}\n"
    )
    return path


@pytest.fixture
def evals(playground: Playground) -> Path:
    return write_eval_playground(playground.root).root


@pytest.fixture
def recipe(evals: Path, tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "mix.yaml", evals)


def caches(tmp_path: Path) -> list[str]:
    return ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]


def publish_argv(playground: Playground, tmp_path: Path, out: Path, version: str, *names: str) -> list[str]:
    where = ["--repo", REPO, "--version", version, "--local-dir", str(out), "--data-dir", str(playground.root)]
    return ["--log-level", "error", "publish", *names, *where, *caches(tmp_path)]


def build_recipe(recipe: Path | str, playground: Playground, tmp_path: Path) -> Built:
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def card_section(text: str, config: str) -> str:
    """The card's section of one recipe config: from its heading to the next heading of its level or above."""
    start = text.index(f"### `{config}`")
    end = re.search(r"^#{2,3} ", text[start + 4 :], flags=re.MULTILINE)
    return text[start : start + 4 + end.start()] if end else text[start:]


def test_a_recipe_is_published_as_its_own_config_with_every_split_and_loads_back(
    playground: Playground, recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = publish_argv(
        playground, tmp_path, out, "1.0.0", "mix665k", "--recipe", str(recipe), "--recipe", "llava-1.5"
    )
    assert main(argv) == 0
    assert f"published v1.0.0 of mix665k, {MIX}, recipe-llava-1.5 to {out}" in capsys.readouterr().out
    assert sorted(path for path in tree(out) if path.startswith(f"{MIX}/")) == [
        f"{MIX}/{split}-00000-of-00001.parquet" for split in ("contaminated", "duplicate_row", "removed", "train")
    ]
    assert check_repo(out) == []
    assert main(["check-repo", str(out)]) == 0

    card = DatasetCard.load(out / CARD_FILE)
    configs = MetadataConfigs.from_dataset_card_data(card.data)
    assert sorted(configs) == ["mix665k", "recipe-llava-1.5", MIX]
    splits = [schema.TRAIN_SPLIT, schema.REMOVED_SPLIT, DUPLICATE_SPLIT, CONTAMINATED_SPLIT]
    assert configs[MIX]["data_files"] == [{"split": split, "path": f"{MIX}/{split}-*"} for split in splits]
    assert [item["split"] for item in configs["recipe-llava-1.5"]["data_files"]] == ["train", DUPLICATE_SPLIT]
    # The sharegpt4v source brings its non-commercial licence onto the card.
    assert "cc-by-nc-4.0" in card.data.license
    assert "1 of them is non-commercial: sharegpt4v_mix665k." in card.text

    built = build_recipe(recipe, playground, tmp_path)
    loaded = datasets.load_dataset(str(out), MIX)
    assert set(loaded) == set(built.dataset) == set(splits)
    for split in splits:
        assert len(loaded[split]) > 0 and loaded[split]["id"] == built.dataset[split]["id"]
        assert loaded[split].features == built.dataset[split].features
    assert set(loaded[CONTAMINATED_SPLIT]["matched_reference"]) and all(loaded[DUPLICATE_SPLIT][schema.DUPLICATE_OF])
    shipped = build_recipe("llava-1.5", playground, tmp_path)
    assert datasets.load_dataset(str(out), "recipe-llava-1.5", split="train")["id"] == shipped.dataset["train"]["id"]


def test_the_card_shows_the_settings_used_and_the_per_source_and_per_benchmark_tables(
    playground: Playground, recipe: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    release(
        [],
        REPO,
        "1.0.0",
        str(playground.root),
        recipes=[str(recipe)],
        local_dir=out,
        cache_dir=str(tmp_path / "hf"),
        config_kwargs={"content_cache_dir": str(tmp_path / "cc")},
    )
    report = build_recipe(recipe, playground, tmp_path).report
    assert recipe_accounted(report)
    text = (out / CARD_FILE).read_text()
    section = card_section(text, MIX)
    digest = report.recipe["digest"]
    assert f"digest `{digest}`" in section
    # The fenced YAML is the exact recipe the build used: parsed again, it has the build's digest.
    block = re.search(r"```yaml\n(.*?)\n```", section, flags=re.DOTALL).group(1)
    assert parse_recipe(yaml.safe_load(block), "other", tuple(SOURCES)).digest() == digest
    assert "sample: 0.5" in block and "embedder: thumbnail" in block
    assert format_recipe_table(report) in section
    sources = report.recipe["sources"]
    assert sources["sharegpt4v-mix665k"]["not_sampled"] > 0 and sources["mix665k"]["contaminated"] > 0
    assert "| total | 115 |" in section
    assert format_benchmark_table(report.decontamination) in section
    assert "| benchmark | reference images | reference images hit | training rows removed |" in section
    assert "cosine ≥ 0.8 with `thumbnail`" in section
    # A recipe is described in its own section, not as a plain dedup config.
    assert "No config of this release but its recipes (see Recipes) is deduplicated." in text
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["configs"][MIX]["sources"] == ["mix665k", "sharegpt4v-mix665k"]


def test_republishing_follows_the_version_rules(
    playground: Playground, evals: Path, recipe: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    assert main(publish_argv(playground, tmp_path, out, "1.0.0", "--recipe", str(recipe))) == 0
    before = tree(out)
    assert main(publish_argv(playground, tmp_path, out, "1.0.0", "--recipe", str(recipe))) == 0
    assert tree(out) == before

    # Another seed samples other sharegpt4v rows: other data under a released version is refused.
    write_recipe(recipe, evals, seed=1)
    assert main(publish_argv(playground, tmp_path, out, "1.0.0", "--recipe", str(recipe))) != 0
    assert f"already exists with different content for {MIX}; a release never changes" in caplog.text
    assert tree(out) == before


def test_the_recipe_digest_is_part_of_the_released_content(playground: Playground, tmp_path: Path) -> None:
    """Two recipes with the same rows but other settings (a seed that samples nothing) write byte-identical
    data files; the release still tells them apart, since the card shows the settings."""
    out = tmp_path / "out"
    kwargs = {
        "local_dir": out,
        "cache_dir": str(tmp_path / "hf"),
        "config_kwargs": {"content_cache_dir": str(tmp_path / "cc")},
    }
    recipe = tmp_path / "plain.yaml"
    recipe.write_text("name: plain\nsources: [mix665k, textocr-gpt4v]\n")
    assert release([], REPO, "1.0.0", str(playground.root), recipes=[str(recipe)], **kwargs).changed
    first = json.loads((out / MANIFEST_FILE).read_text())["configs"]["recipe-plain"]
    recipe.write_text("name: plain\nseed: 7\nsources: [mix665k, textocr-gpt4v]\n")
    with pytest.raises(PublishError, match=r"already exists with different content for recipe-plain"):
        release([], REPO, "1.0.0", str(playground.root), recipes=[str(recipe)], **kwargs)
    assert release([], REPO, "1.0.1", str(playground.root), recipes=[str(recipe)], **kwargs).changed
    second = json.loads((out / MANIFEST_FILE).read_text())["configs"]["recipe-plain"]
    assert second["files"] == first["files"] and second["content"] != first["content"]
    text = (out / CARD_FILE).read_text()
    assert "- updated `recipe-plain` (new data)" in text and "seed: 7" in text
    assert check_repo(out) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--embedder", "thumbnail"],
            r"--embedder thumbnail is not allowed with --recipe: set dedup\.embedder in the recipe$",
        ),
        (["--scope", "global"], r"--scope global is not allowed with --recipe: set dedup\.scope in the recipe"),
        (["--search", "ivf"], r"--search ivf .* the recipe has no such setting"),
        (["--engine", "ray", "--precision", "fp32"], r"--precision fp32 .*; --engine ray is not allowed"),
        (["--decontaminate", "eval"], r"--decontaminate eval .* set decontaminate\.references in the recipe"),
    ],
)
@pytest.mark.parametrize("command", ["build", "publish"])
def test_flags_a_recipe_build_would_ignore_are_refused_by_name(
    playground: Playground,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    command: str,
    flags: list[str],
    message: str,
) -> None:
    args = [command, "--recipe", "llava-en-all", "--data-dir", str(playground.root), *caches(tmp_path), *flags]
    if command == "publish":
        args += ["--repo", REPO, "--version", "1.0.0", "--local-dir", str(tmp_path / "out")]
    assert main(args) == 2
    [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert re.search(message, error) and "=" not in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "hf").exists()


def test_the_library_refuses_them_too(playground: Playground, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"embedder='thumbnail' is not allowed for config 'recipe': set dedup\.embedder"
    ):
        datasets.load_dataset(
            "llava_mixes", "recipe", recipe="llava-en-all", data_dir=str(playground.root), embedder="thumbnail"
        )
    with pytest.raises(ConfigError, match=r"dedup_scope='global' is not allowed for config 'recipe'"):
        release(
            ["mix665k"],
            REPO,
            "1.0.0",
            str(playground.root),
            recipes=["llava-1.5"],
            local_dir=tmp_path / "out",
            config_kwargs={"dedup_scope": "global"},
        )
    assert not (tmp_path / "out").exists()


def test_flags_that_apply_to_a_recipe_build_still_work(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = tmp_path / "stats.json"
    args = ["build", "--recipe", "llava-en-all", "--data-dir", str(playground.root), *caches(tmp_path)]
    args += ["--batch-size", "3", "--device", "cpu", "--num-workers", "1", "--stats-json", str(stats)]
    assert main(args) == 0
    report = BuildReport.load(stats)
    assert recipe_accounted(report) and report.dedup["threshold"] == 0.8
    assert (tmp_path / "hf").is_dir() and (tmp_path / "cc").is_dir()


def test_each_recipe_needs_a_name_that_makes_its_own_config(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one, two, spaced = tmp_path / "one.yaml", tmp_path / "two.yaml", tmp_path / "spaced.yaml"
    one.write_text("name: same\nsources: [mix665k]\n")
    two.write_text("name: same\nsources: [textocr-gpt4v]\n")
    spaced.write_text("name: my mix\nsources: [mix665k]\n")
    args = ("1.0.0", str(playground.root))
    with pytest.raises(ConfigError, match=r"both named 'same', so both would be the config 'recipe-same'"):
        release([], REPO, *args, recipes=[str(one), str(two)], local_dir=tmp_path / "out")
    with pytest.raises(PathEscapeError, match=r"recipe name 'my mix' is not allowed: it becomes a file name"):
        release([], REPO, *args, recipes=[str(spaced)], local_dir=tmp_path / "out")
    assert main(["publish", "--repo", REPO, "--version", "1.0.0", "--data-dir", str(playground.root)]) == 2
    assert "name at least one CONFIG or --recipe to publish" in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_decontaminated_config_publishes_under_its_own_name_with_its_contaminated_split(
    playground: Playground, evals: Path, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    where = ["--decontaminate", str(evals), "--embedder", "thumbnail"]
    assert main([*publish_argv(playground, tmp_path, out, "1.0.0", "mix665k-dedup-0.8"), *where]) == 0
    name = "mix665k-dedup-0.8-decontaminated"
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert list(manifest["configs"]) == [name]
    splits = manifest["configs"][name]["splits"]
    assert list(splits) == [schema.TRAIN_SPLIT, schema.REMOVED_SPLIT, CONTAMINATED_SPLIT]
    assert splits[CONTAMINATED_SPLIT]["num_examples"] > 0
    assert check_repo(out) == []
    contaminated = datasets.load_dataset(str(out), name, split=CONTAMINATED_SPLIT)
    assert len(contaminated) == splits[CONTAMINATED_SPLIT]["num_examples"]
    assert all(reference for reference in contaminated["matched_reference"])
    card = (out / CARD_FILE).read_text()
    decontamination = manifest["configs"][name]["report"]["decontamination"]
    section = card.split("## Benchmark pictures taken out", 1)[1].split("## Changelog", 1)[0]
    assert f"### `{name}`" in section
    assert format_benchmark_table(decontamination) in section
