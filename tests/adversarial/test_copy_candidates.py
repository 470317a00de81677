"""Hostile and careless inputs to copy detection's candidate stage and its budget: a budget given badly, far more
candidates than the budget (memory stays bounded, nothing is verified), vectors that cannot be compared, labels
from odd folder names, and the edges of the budget."""

from __future__ import annotations

import numpy as np
import pytest

from llava_mixes.decontam.candidates import (
    BUDGET_VARIABLE,
    MAX_CANDIDATE_PAIRS,
    CandidateBudget,
    CandidateTally,
    TooManyCandidatesError,
    candidate_pairs,
)
from llava_mixes.errors import BadEmbeddingError, ConfigError

FEATURE = "copy detection"


def _alike(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.ones((count, dim)) + 0.01 * rng.standard_normal((count, dim))).astype(np.float32)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("value", ["-3", "lots", "1e6", "0x10", " "])
def test_a_badly_written_budget_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(BUDGET_VARIABLE, value)
    with pytest.raises(ConfigError, match=BUDGET_VARIABLE):
        CandidateBudget.of()


@pytest.mark.adversarial("correct")
def test_an_empty_budget_variable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUDGET_VARIABLE, "")
    assert CandidateBudget.of().max_pairs == MAX_CANDIDATE_PAIRS


@pytest.mark.adversarial("error")
def test_millions_of_candidates_are_counted_without_being_kept() -> None:
    vectors = _alike(2500)
    tally, budget = CandidateTally(), CandidateBudget(max_pairs=1000)
    found = candidate_pairs(vectors, vectors, 0.9, ["g"] * 2500, ["g"] * 2500, budget, tally, earlier_only=True)
    assert tally.pairs == 2500 * 2499 // 2 and len(found.query) == 0
    with pytest.raises(TooManyCandidatesError, match="3,123,750 candidate pairs"):
        budget.check(tally, "cosine >= 0.9", "a higher threshold")


@pytest.mark.adversarial("correct")
def test_a_budget_equal_to_the_count_lets_the_run_through() -> None:
    vectors = _alike(20)
    tally, budget = CandidateTally(), CandidateBudget(max_pairs=190)
    found = candidate_pairs(vectors, vectors, 0.9, ["g"] * 20, ["g"] * 20, budget, tally, earlier_only=True)
    budget.check(tally, "", "")
    assert len(found.query) == 190 == tally.pairs


@pytest.mark.adversarial("correct")
def test_a_zero_budget_with_no_candidates_runs() -> None:
    rng = np.random.default_rng(1)
    queries, references = rng.standard_normal((30, 64)), rng.standard_normal((30, 64))
    tally, budget = CandidateTally(), CandidateBudget(max_pairs=0)
    found = candidate_pairs(queries, references, 0.95, ["a"] * 30, ["b"] * 30, budget, tally)
    budget.check(tally, "", "")
    assert len(found.query) == 0 and tally.pairs == 0


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0])
def test_a_vector_that_cannot_be_compared_stops_the_candidate_search(bad: float) -> None:
    vectors = _alike(10)
    vectors[4] = bad
    with pytest.raises(BadEmbeddingError, match=r"\[4\]"):
        candidate_pairs(vectors, vectors, 0.5, ["g"] * 10, ["g"] * 10, CandidateBudget(), CandidateTally())


@pytest.mark.adversarial("error")
def test_a_group_or_benchmark_name_with_a_line_break_keeps_the_error_on_one_line() -> None:
    vectors = _alike(6)
    tally, budget = CandidateTally(), CandidateBudget(max_pairs=1)
    labels = ["evil\nALARM: fake line"] * 6
    candidate_pairs(vectors, vectors, 0.5, labels, ["bench\x1b[2J"] * 6, budget, tally)
    with pytest.raises(TooManyCandidatesError) as caught:
        budget.check(tally, "", "")
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and "'evil\\nALARM: fake line' x 'bench\\x1b[2J'" in message


@pytest.mark.adversarial("error")
def test_query_and_reference_vectors_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="dimensions differ"):
        candidate_pairs(_alike(3, 8), _alike(3, 16), 0.5, ["a"] * 3, ["b"] * 3, CandidateBudget(), CandidateTally())
