"""A new instruction set takes three files (docs/new-instruction-set.md): its module from the template, one registry
entry, and its test with its sample. In a copy of the package, nothing else changed, the generic tests and
`llava-mixes demo` run over it."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import llava_mixes

PACKAGE = Path(llava_mixes.__file__).parent
TESTS = Path(__file__).parents[1]
TEMPLATE = PACKAGE.parent / "docs" / "new-instruction-set.md"

OWN_TEST = '''"""NEW SET's own test, with its sample rows (the quirks the generic fixture cannot show)."""

import datasets

SAMPLE = [{"id": "real-1", "image": "generic/a.jpg", "conversations": [
    {"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A picture."}]}]


def test_its_sample_row_normalises(source: type) -> None:
    row = source().normalise(SAMPLE[0])
    assert row.source_id == "real-1" and row.image_path == "generic/a.jpg"
'''

SCRIPT = """
import sys
from pathlib import Path

from llava_mixes.builders import SOURCES
from llava_mixes.cli.main import main
from llava_mixes.playground.layout import write_playground
import test_new_set
import test_sources

out = Path(sys.argv[1])
playground = write_playground(out / "playground")
test_new_set.test_its_sample_row_normalises(SOURCES["new-set"])
test_sources.test_plain_config_keeps_the_invariants_and_rejects_what_was_planted(playground, "new-set")
test_sources.test_dedup_config_removes_exactly_the_planted_copies(playground, "new-set")
assert main(["--log-level", "error", "demo", "--out", str(out / "demo")]) == 0
"""


def template_module() -> str:
    return TEMPLATE.read_text().split("```python\n", 1)[1].split("```", 1)[0]


def changed_files(original: Path, copy: Path) -> list[str]:
    """The files of `copy` that are new or differ from `original` (caches left out)."""
    found = []
    for path in sorted(copy.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(copy)
            if not (original / relative).is_file() or not filecmp.cmp(original / relative, path, shallow=False):
                found.append(relative.as_posix())
    return found


def test_a_new_instruction_set_takes_three_files_and_the_generic_tests_and_demo_run_over_it(tmp_path: Path) -> None:
    package = tmp_path / "package" / "llava_mixes"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "builders" / "new_set.py").write_text(template_module())
    registry = package / "builders" / "__init__.py"
    text = registry.read_text()
    text = text.replace(
        "from llava_mixes.builders.zh600k import Zh600k\n",
        "from llava_mixes.builders.zh600k import Zh600k\nfrom llava_mixes.builders.new_set import NewSet\n",
    )
    text = text.replace("TextOcrGpt4v, Zh600k)", "TextOcrGpt4v, Zh600k, NewSet)")
    registry.write_text(text)
    own_tests = tmp_path / "tests"
    own_tests.mkdir()
    (own_tests / "test_new_set.py").write_text(OWN_TEST)
    assert changed_files(PACKAGE, package) == ["builders/__init__.py", "builders/new_set.py"]

    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(path) for path in (package.parent, own_tests, TESTS, TESTS / "builders")),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
        "LLAVA_MIXES_CACHE": str(tmp_path / "content_cache"),
    }
    command = [sys.executable, "-c", SCRIPT, str(tmp_path / "out")]
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "new-set" in result.stdout and (tmp_path / "out" / "demo" / "new-set.stats.json").is_file()
