"""Errors in the command line's own words (issue 23, items 3 and 5): flags, never Python keyword arguments; the
weight-free embedders both named; an offline build among the examples; which embedder serves which step."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_mixes.cli.main import main
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.errors import ConfigError, EmbedderUnavailableError, command_line_spelling, setting, unknown_choice
from llava_mixes.playground.layout import Playground
from llava_mixes.sources import fetch

CLIP = "openai/clip-vit-large-patch14-336"
WEIGHT_FREE_CLI = (
    "use an embedder that needs no weights: --embedder thumbnail (near duplicates) or --embedder gradients "
    "(copies, crops too)"
)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]


def test_a_setting_is_spelled_for_python_outside_the_command_line() -> None:
    assert setting("embedder", "thumbnail") == "embedder='thumbnail'"
    assert setting("embedder", placeholder="FOLDER") == "embedder=FOLDER"
    assert setting("dedup_threshold") == "dedup_threshold"


def test_a_setting_is_spelled_as_its_flag_on_the_command_line() -> None:
    flags = {"embedder": "--embedder", "dedup_threshold": "--threshold"}
    with command_line_spelling(flags):
        assert setting("embedder", "thumbnail") == "--embedder thumbnail"
        assert setting("embedder", "my model") == "--embedder 'my model'"
        assert setting("embedder", placeholder="FOLDER") == "--embedder FOLDER"
        assert setting("dedup_threshold") == "--threshold"
        assert setting("max_candidate_pairs", placeholder="N") == "max_candidate_pairs=N"  # no flag: Python's
    assert setting("embedder", "thumbnail") == "embedder='thumbnail'"


def test_the_spelling_is_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), command_line_spelling({"embedder": "--embedder"}):
        raise RuntimeError("a command failed")
    assert setting("embedder", "gradients") == "embedder='gradients'"


def test_clip_unavailable_from_python_names_both_weight_free_embedders_as_kwargs() -> None:
    with pytest.raises(EmbedderUnavailableError) as caught:
        resolve_embedder(CLIP, device="cpu")
    message = str(caught.value)
    assert (
        "use an embedder that needs no weights: embedder='thumbnail' (near duplicates) or embedder='gradients' "
        "(copies, crops too)" in message
    )
    assert "--embedder" not in message


def test_clip_unavailable_on_the_command_line_names_both_weight_free_embedders_as_flags(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["build", "mix665k-dedup-0.8", "--data-dir", str(playground.root), "--stats-json", str(tmp_path / "s")]
    assert main(argv) == 2
    [message] = _errors(caplog)
    assert message.startswith(f"cannot use the embedder '{CLIP}': ")
    assert WEIGHT_FREE_CLI in message
    assert "or pass --embedder FOLDER with a local checkpoint folder" in message
    assert "--embedder-revision SHA (the commit they were made with) skips the weight lookup" in message
    assert "embedder=" not in message and "embedder_revision=" not in message


def test_a_missing_annotation_file_does_not_repeat_the_embedder_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub is unreachable (the network edge, mocked): the ways out name the annotation files only; the
    embedder, already `thumbnail` here, has nothing to do with a missing annotation file."""
    monkeypatch.setattr(fetch, "unreachable", lambda: "the Hub at http://127.0.0.1:9 is unreachable")
    (tmp_path / "empty").mkdir()
    argv = ["build", "textocr-gpt4v-dedup-0.8", "--data-dir", str(tmp_path / "empty"), "--embedder", "thumbnail"]
    assert main(argv) == 2
    [message] = _errors(caplog)
    assert "set HF_HUB_OFFLINE=1 with the annotation files already in data_dir or the Hub cache" in message
    assert "thumbnail" not in message and "needs no weights" not in message and "embedder=" not in message


def test_the_help_examples_hold_an_offline_build(capsys: pytest.CaptureFixture[str]) -> None:
    offline = (
        "HF_HUB_OFFLINE=1 llava-mixes build mix665k-dedup-0.8 --data-dir playground/data --embedder thumbnail  "
        "# offline: no weights to download"
    )
    for argv in (["--help"], ["build", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert f"  {offline}\n" in capsys.readouterr().out


def test_embedder_on_a_plain_decontaminated_build_is_refused_naming_the_decontamination_flag(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["build", "mix665k", "--data-dir", str(tmp_path), "--decontaminate", str(tmp_path), "--embedder", "x"]
    assert main(argv) == 2
    assert _errors(caplog) == [
        "--embedder does not apply to mix665k: it sets dedup's embedding, and no image is embedded for dedup here "
        "(not deduplicated); decontamination compares pictures with its own embedder, set by "
        "--decontaminate-embedder (default: gradients). To deduplicate too, choose a -dedup- config "
        "(`llava-mixes list`) or add --threshold"
    ]


def test_the_decontamination_flags_without_decontaminate_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["build", "mix665k-dedup-0.8", "--data-dir", str(tmp_path), "--decontaminate-embedder", "thumbnail"]
    assert main([*argv, "--decontaminate-threshold", "0.9"]) == 2
    assert _errors(caplog) == [
        "--decontaminate-embedder, --decontaminate-threshold do nothing without --decontaminate REFERENCE (the "
        "benchmarks whose pictures leave train)"
    ]


def test_the_decontamination_embedder_flag_sets_the_decontamination_embedder(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llava_mixes.playground.eval import write_eval_playground

    evals = write_eval_playground(playground.root)
    argv = ["--log-level", "error", "build", "mix665k", "--data-dir", str(playground.root)]
    argv += ["--decontaminate", str(evals.root), "--decontaminate-embedder", "thumbnail"]
    assert main([*argv, "--stats-json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "decontamination: cosine >= 0.9, embedder kind=thumbnail, size=32, " in out
    assert "(--decontaminate-embedder)\n" in out
    assert "dedup embedder" not in out  # the config is not deduplicated


def test_a_dedup_and_decontamination_build_names_each_steps_embedder(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llava_mixes.playground.eval import write_eval_playground

    evals = write_eval_playground(playground.root)
    argv = ["--log-level", "error", "build", "mix665k-dedup-0.8", "--data-dir", str(playground.root)]
    argv += ["--embedder", "thumbnail", "--decontaminate", str(evals.root)]
    assert main([*argv, "--stats-json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "dedup embedder (--embedder): kind=thumbnail, size=32, " in out
    assert ", embedder kind=gradients, " in out and "(--decontaminate-embedder), confirmed by verification" in out


def test_a_mistyped_choice_is_unknown_and_a_value_of_another_type_is_not_allowed() -> None:
    assert str(unknown_choice("dedup_scope", "globl", ("group", "global"))) == (
        "unknown dedup_scope value 'globl'; choose one of ['group', 'global']"
    )
    assert str(unknown_choice("dedup_scope", 3, ("group", "global"))) == (
        "dedup_scope=3 is not allowed; choose one of ['group', 'global']"
    )
    with command_line_spelling({"dedup_scope": "--scope"}):
        assert str(unknown_choice("dedup_scope", "globl", ("group",))).startswith("unknown --scope value 'globl';")


def test_a_mistyped_config_field_from_python_is_unknown(playground: Playground) -> None:
    import datasets

    with pytest.raises(ConfigError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(playground.root), on_bad_records="skp")
    assert str(caught.value) == "unknown on_bad_records value 'skp'; choose one of ['skip', 'error']"
