"""The adversarial suite: each test feeds one bad input (annotation, image, cache or environment fault) to a
build and asserts the class of its outcome. At the end of the run it prints the tally the README states:
inputs tried / clear answer / crash / silently wrong.

Every test here must carry `@pytest.mark.adversarial(<outcome>)`, the outcome class it asserts:
- `rejected`: the bad rows are rejected with a reason and the rest build;
- `error`: the build stops with one `LlavaMixesError` (or a CLI exit 2) whose message names the problem;
- `reflected`: an edit to the inputs shows up in the next build, with no cache clearing;
- `repaired`: a damaged cache is detected, set aside, rebuilt, and the result is the same as before;
- `correct`: the odd input builds, and the result is what it should be.

A test that passes gave a clear answer. One that fails on an `AssertionError` was silently wrong (it
produced an answer, but not the right one); one that fails on any other exception crashed.

Every test module here names the feature it attacks in a module-level `FEATURE` (one of `FEATURES`); the tally
is printed per feature, then in total, and the README states it per feature.
"""

from __future__ import annotations

from collections import Counter

import pytest

OUTCOMES = ("rejected", "error", "reflected", "repaired", "correct")
FEATURES = (
    "annotations and images",
    "caches and build folders",
    "stale builds",
    "vectors",
    "disks and network",
    "recipes",
    "decontamination",
    "export",
    "publish",
    "copy detection",
    "hub sources",
)
_tally: dict[str, Counter[str]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name != "adversarial":
            continue
        marker = item.get_closest_marker("adversarial")
        if marker is None or not marker.args or marker.args[0] not in OUTCOMES:
            raise pytest.UsageError(f"{item.nodeid}: mark it @pytest.mark.adversarial(<one of {list(OUTCOMES)}>)")
        if _feature(item) not in FEATURES:
            raise pytest.UsageError(f"{item.nodeid}: its module's FEATURE must be one of {list(FEATURES)}")


def _feature(item: pytest.Item) -> object:
    return getattr(getattr(item, "module", None), "FEATURE", None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or item.get_closest_marker("adversarial") is None:
        return
    tally = _tally.setdefault(str(_feature(item)), Counter())
    if report.skipped:
        tally["skipped"] += 1
    elif report.passed:
        tally["clear answer"] += 1
    elif call.excinfo is not None and call.excinfo.errisinstance(AssertionError):
        tally["silently wrong"] += 1
    else:
        tally["crash"] += 1


def _line(label: str, tally: Counter[str]) -> str:
    tried = sum(tally.values()) - tally["skipped"]
    return (
        f"{label}: {tried} tried, {tally['clear answer']} clear answer, "
        f"{tally['crash']} crash, {tally['silently wrong']} silently wrong"
        + (f" ({tally['skipped']} skipped)" if tally["skipped"] else "")
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _tally:
        return
    for feature in FEATURES:
        if feature in _tally:
            terminalreporter.write_line(_line(f"  {feature}", _tally[feature]))
    terminalreporter.write_line(_line("adversarial inputs", sum(_tally.values(), Counter())))
