"""Hostile and careless named benchmarks: mirror folders with links that lead out, shards of the wrong type,
empty or broken; list files edited to paths; names that are almost right. Nothing outside the mirror or the Hub
cache is read, every missing entry is named, and the list parser answers with a `BenchmarkSet` or `ConfigError`."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from benchmark_files import picture, secret_picture
from benchmark_mirrors import IMAGE, entry, parquet_bytes, readme, repo_files, write_cached_repo, write_mirror_repo
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes.decontam import load_references, references_fingerprint
from llava_mixes.decontam.benchmark_repos import MIRROR_ENV, split_patterns
from llava_mixes.decontam.benchmark_sets import BenchmarkSet, parse_set, shipped_sets
from llava_mixes.decontam.named_benchmarks import BenchmarksMissingError
from llava_mixes.errors import ConfigError

FEATURE = "decontamination"
POPE = "llava-1.5-evals/pope"
SHARD = "data/test-00000-of-00001.parquet"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pope_mirror(tmp_path: Path, shard: bytes | None = None, **files: bytes) -> Path:
    pope = entry(POPE)
    written = repo_files(pope, {"test": [picture(1), picture(2)]})
    if shard is not None:
        written[SHARD] = shard
    write_mirror_repo(
        tmp_path / "mirror", pope.repo, {**written, **{k.replace("__", "/"): v for k, v in files.items()}}
    )
    return tmp_path / "mirror"


def refused(mirror: Path | None, reference: str = POPE) -> str:
    with pytest.raises(BenchmarksMissingError) as caught:
        load_references([reference], mirror=mirror)
    return str(caught.value)


def table(**columns: pa.Array) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


# Mirrors with links that lead out.


@pytest.mark.adversarial("error")
def test_a_mirror_repo_folder_that_links_out_is_not_read(tmp_path: Path) -> None:
    outside = write_mirror_repo(tmp_path / "elsewhere", "x/y", repo_files(entry(POPE), {"test": [picture(9)]}))
    (tmp_path / "mirror" / "lmms-lab").mkdir(parents=True)
    os.symlink(outside, tmp_path / "mirror" / "lmms-lab" / "POPE")
    assert "leads outside" in refused(tmp_path / "mirror")


@pytest.mark.adversarial("error")
def test_a_mirror_owner_folder_that_links_out_is_not_read(tmp_path: Path) -> None:
    write_mirror_repo(tmp_path / "elsewhere", "lmms-lab/POPE", repo_files(entry(POPE), {"test": [picture(9)]}))
    (tmp_path / "mirror").mkdir()
    os.symlink(tmp_path / "elsewhere" / "lmms-lab", tmp_path / "mirror" / "lmms-lab")
    assert "leads outside" in refused(tmp_path / "mirror")


@pytest.mark.adversarial("error")
def test_a_shard_that_links_out_is_skipped_and_named(tmp_path: Path) -> None:
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(parquet_bytes([picture(7)]))
    mirror = pope_mirror(tmp_path)
    shard = mirror / "lmms-lab/POPE" / SHARD
    shard.unlink()
    os.symlink(secret, shard)
    message = refused(mirror)
    assert "no Parquet file for the split(s) ['test'] in the mirror" in message


@pytest.mark.adversarial("error")
def test_a_hub_cache_file_that_links_out_of_its_repo_folder_is_not_read(tmp_path: Path) -> None:
    pope = entry(POPE)
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
    snapshot = write_cached_repo(cache, pope.repo, {"README.md": readme(pope).encode()})
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(parquet_bytes([picture(7)]))
    (snapshot / "data").mkdir()
    os.symlink(secret, snapshot / SHARD)
    assert "no Parquet file for the split(s) ['test'] in the hub cache" in refused(None)


@pytest.mark.adversarial("error")
def test_a_readme_whose_patterns_point_outside_matches_nothing_outside(tmp_path: Path) -> None:
    secret_picture(tmp_path)
    card = b"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: ../../outside/*\n---\n"
    mirror = pope_mirror(tmp_path, README__md=b"")
    (mirror / "lmms-lab/POPE/README.md").write_bytes(card)
    assert "no Parquet file" in refused(mirror)


# Shards that are not what they should be.


@pytest.mark.adversarial("error")
def test_a_shard_whose_image_column_is_text_is_named_with_its_type(tmp_path: Path) -> None:
    shard = table(question_id=pa.array([0]), image=pa.array(["COCO_val2014_000000000042.jpg"]))
    message = refused(pope_mirror(tmp_path, shard))
    assert "column 'image' is string, not an Image" in message and "test/test-00000-of-00001.parquet" in message


@pytest.mark.adversarial("error")
def test_a_shard_whose_struct_has_text_bytes_is_refused(tmp_path: Path) -> None:
    kind = pa.struct([("bytes", pa.string()), ("path", pa.string())])
    shard = table(image=pa.array([{"bytes": "not bytes", "path": None}], kind))
    assert "not an Image" in refused(pope_mirror(tmp_path, shard))


@pytest.mark.adversarial("error")
def test_a_shard_without_the_column_names_the_columns_it_has(tmp_path: Path) -> None:
    shard = table(question_id=pa.array([0]), picture=pa.array([{"bytes": picture(1), "path": None}], IMAGE))
    assert "no column ['image']; its columns are ['question_id', 'picture']" in refused(pope_mirror(tmp_path, shard))


@pytest.mark.adversarial("error")
def test_a_corrupt_shard_is_named(tmp_path: Path) -> None:
    assert "does not read" in refused(pope_mirror(tmp_path, b"PAR1 this is not parquet PAR1"))


@pytest.mark.adversarial("error")
def test_a_truncated_shard_is_named(tmp_path: Path) -> None:
    whole = parquet_bytes([picture(1), picture(2)])
    assert "does not read" in refused(pope_mirror(tmp_path, whole[: len(whole) // 2]))


@pytest.mark.adversarial("error")
def test_an_empty_split_is_a_missing_benchmark(tmp_path: Path) -> None:
    assert "no picture in the split(s) ['test']" in refused(pope_mirror(tmp_path, parquet_bytes([])))


@pytest.mark.adversarial("error")
def test_a_split_of_rows_without_pictures_is_a_missing_benchmark(tmp_path: Path) -> None:
    assert "no picture" in refused(pope_mirror(tmp_path, parquet_bytes([None, None, None])))


@pytest.mark.adversarial("rejected")
def test_a_picture_stored_as_a_path_is_never_opened(tmp_path: Path) -> None:
    outside = secret_picture(tmp_path)
    rows = [{"bytes": picture(1), "path": None}, {"bytes": None, "path": str(outside)}]
    found = load_references(
        [POPE], mirror=pope_mirror(tmp_path, table(question_id=pa.array([0, 1]), image=pa.array(rows, IMAGE)))
    )
    assert [image.sha256 for image in found.images] == [sha(picture(1))]
    assert "test/1 (a path and no bytes" in found.missing[POPE][0]
    assert sha(outside.read_bytes()) not in {image.sha256 for image in found.images}


@pytest.mark.adversarial("correct")
def test_a_readme_that_does_not_parse_falls_back_to_the_default_layout(tmp_path: Path) -> None:
    mirror = pope_mirror(tmp_path)
    (mirror / "lmms-lab/POPE/README.md").write_bytes(b"---\nconfigs: [unclosed\n---\n")
    found = load_references([POPE], mirror=mirror)
    assert {image.sha256 for image in found.images} == {sha(picture(1)), sha(picture(2))}
    assert "README.md (its YAML header does not parse" in found.missing[POPE][0]


@pytest.mark.adversarial("correct")
def test_rows_with_a_null_list_of_pictures_are_passed_over(tmp_path: Path) -> None:
    seed = entry("llava-1.5-evals/seed-bench")
    files = repo_files(seed, {"test": [picture(3), None, picture(3)]})
    write_mirror_repo(tmp_path / "m", seed.repo, files)
    found = load_references(["llava-1.5-evals/seed-bench"], mirror=tmp_path / "m")
    assert [image.sha256 for image in found.images] == [sha(picture(3))]
    assert found.images[0].ref_id == "test/0#0" and found.missing == {}


# Names, mirrors and lists the user got wrong.


@pytest.mark.adversarial("error")
def test_a_set_name_that_is_almost_right_is_suggested(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"did you mean the benchmark set 'llava-1\.5-evals'"):
        load_references(["llava-15-evals"])


@pytest.mark.adversarial("error")
def test_an_entry_name_that_is_almost_right_is_suggested() -> None:
    with pytest.raises(ConfigError, match=r"did you mean llava-1\.5-evals/mmbench-cn"):
        load_references(["llava-1.5-evals/mmbench_cn"])


@pytest.mark.adversarial("error")
def test_a_mirror_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "file"))
    with pytest.raises(ConfigError, match=r"\$LLAVA_MIXES_BENCHMARK_MIRROR=.* is not a folder"):
        load_references([POPE])


@pytest.mark.adversarial("error")
def test_a_set_name_that_is_also_a_folder_here_is_ambiguous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "llava-1.5-evals").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"both a benchmark set and a path .* write ./llava-1.5-evals"):
        load_references(["llava-1.5-evals"])


@pytest.mark.adversarial("error")
def test_offline_with_nothing_cached_and_no_mirror_names_the_fetch_command() -> None:
    message = refused(None, "llava-1.5-evals/mmbench-cn")
    assert "not found in the Hub cache (offline)" in message
    assert "hf download lmms-lab/MMBench --repo-type dataset --include 'README.md' --include 'cn/dev-*'" in message


@pytest.mark.adversarial("reflected")
def test_a_shard_replaced_in_the_mirror_changes_the_fingerprint(tmp_path: Path) -> None:
    mirror = pope_mirror(tmp_path)
    before = references_fingerprint([POPE], mirror=mirror)
    shard = mirror / "lmms-lab/POPE" / SHARD
    replacement = tmp_path / "new.parquet"
    replacement.write_bytes(parquet_bytes([picture(5)]))
    os.replace(replacement, shard)
    assert references_fingerprint([POPE], mirror=mirror) != before
    assert [image.sha256 for image in load_references([POPE], mirror=mirror).images] == [sha(picture(5))]


VALID = {
    "name": "mine",
    "benchmarks": [{"name": "pope", "repo": "lmms-lab/POPE", "splits": ["test"], "columns": ["image"]}],
}


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repo", "/etc/passwd"),
        ("repo", "../../etc/x"),
        ("repo", "lmms-lab/../x"),
        ("config", "../outside"),
        ("config", "/abs"),
        ("splits", ["a/b"]),
        ("splits", "test"),
        ("columns", []),
        ("name", "Bad Name"),
        ("confirmed", "yes"),
    ],
)
def test_a_list_file_edited_to_a_path_or_a_bad_value_is_refused(field: str, value: object) -> None:
    edited = {**VALID, "benchmarks": [{**VALID["benchmarks"][0], field: value}]}
    with pytest.raises(ConfigError):
        parse_set(yaml.safe_dump(edited))


@pytest.mark.adversarial("error")
def test_a_list_with_an_unknown_key_a_twice_listed_entry_or_too_many_bytes_is_refused() -> None:
    item = VALID["benchmarks"][0]
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_set(yaml.safe_dump({**VALID, "benchmarks": [{**item, "path": "/etc"}]}))
    with pytest.raises(ConfigError, match="more than once"):
        parse_set(yaml.safe_dump({**VALID, "benchmarks": [item, item]}))
    with pytest.raises(ConfigError, match="too large"):
        parse_set("#" * (1 << 21))


@pytest.mark.adversarial("correct")
def test_every_shipped_list_parses_to_what_it_says() -> None:
    for name, named in shipped_sets().items():
        assert named.name == name and len({item.name for item in named.entries}) == len(named.entries)


# The list parser: any text gives a BenchmarkSet or ConfigError.

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.sampled_from(["test", "image"]))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@pytest.mark.adversarial("correct")
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_text_parses_or_is_refused(text: str | bytes) -> None:
    try:
        parsed = parse_set(text)
    except ConfigError:
        return
    assert isinstance(parsed, BenchmarkSet) and parsed.entries


@pytest.mark.adversarial("correct")
@given(
    key=st.sampled_from(["name", "repo", "config", "splits", "columns", "confirmed", "other"]),
    value=_VALUES,
    top=st.dictionaries(st.sampled_from(["name", "description", "benchmarks", "x"]), _VALUES, max_size=2),
)
def test_a_mutated_list_parses_or_is_refused(key: str, value: object, top: dict[str, object]) -> None:
    document = {**VALID, "benchmarks": [{**VALID["benchmarks"][0], key: value}], **top}
    try:
        parsed = parse_set(yaml.safe_dump(document))
    except ConfigError:
        return
    for item in parsed.entries:
        assert "/" in item.repo and ".." not in item.repo and not item.repo.startswith("/")
        assert all("/" not in name and ".." not in name for name in (*item.splits, *item.columns))


@pytest.mark.adversarial("repaired")
def test_a_kept_picture_edited_behind_the_stores_back_is_written_again(tmp_path: Path) -> None:
    mirror, store = pope_mirror(tmp_path), tmp_path / "store"
    first = load_references([POPE], mirror=mirror, picture_store=store)
    paths = sorted(Path(image.path) for image in first.images if image.path)
    assert len(paths) == 2 and all(path.is_relative_to(store) for path in paths)
    assert all(image.data is None for image in first.images)
    paths[0].write_bytes(b"edited")
    again = load_references([POPE], mirror=mirror, picture_store=store)
    assert sorted(Path(image.path) for image in again.images if image.path) == paths
    assert {sha(path.read_bytes()) for path in paths} == {sha(picture(1)), sha(picture(2))}


@pytest.mark.adversarial("correct")
@given(configs=_VALUES, raw=st.binary(max_size=200))
def test_any_readme_gives_patterns_for_every_split(
    tmp_path_factory: pytest.TempPathFactory, configs: object, raw: bytes
) -> None:
    pope = entry(POPE)
    card = tmp_path_factory.mktemp("card") / "README.md"
    for text in (b"---\n" + yaml.safe_dump({"configs": configs}).encode() + b"---\n", b"---\n" + raw):
        card.write_bytes(text)
        notes: list[str] = []
        patterns = split_patterns(pope, card, notes)
        assert set(patterns) == {"test"} and patterns["test"]
        assert all(isinstance(pattern, str) for pattern in patterns["test"])
