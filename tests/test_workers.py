"""Worker processes: results and errors come back per item, and a worker that dies loses only its item."""

from __future__ import annotations

import pytest

from compute.workers import process_map
from tests.helpers.worker_tasks import die_on, scale


def test_results_and_errors_come_back_per_item() -> None:
    outcomes = dict(process_map(scale, range(5), workers=2, shared=10, progress=True))
    assert {k: v for k, v in outcomes.items() if k != 2} == {0: 0, 1: 10, 3: 30, 4: 40}
    assert isinstance(outcomes[2], ValueError) and "item 2 is bad" in str(outcomes[2])


@pytest.mark.timeout(60)  # without the dead-worker check the driver waits forever
def test_a_worker_that_dies_loses_only_its_item() -> None:
    outcomes = dict(process_map(die_on, range(6), workers=2, shared=1, progress=False))
    assert sorted(outcomes) == list(range(6))
    assert isinstance(outcomes[1], RuntimeError) and "worker process died" in str(outcomes[1])
    assert {k: v for k, v in outcomes.items() if k != 1} == {0: 0, 2: 2, 3: 3, 4: 4, 5: 5}


@pytest.mark.timeout(120)  # without the start-failure count the pool replaces dying workers forever
def test_workers_that_die_while_starting_fail_the_items_in_one_message() -> None:
    from compute.workers import START_FAILURES
    from tests.helpers.worker_tasks import BreaksInWorkers

    outcomes = dict(process_map(scale, range(4), workers=2, shared=BreaksInWorkers(), progress=False))
    assert sorted(outcomes) == list(range(4))
    for error in outcomes.values():
        assert isinstance(error, RuntimeError)
        assert "died while starting" in str(error) and "--workers 1" in str(error)
    assert int(str(outcomes[0]).split("(")[1].split()[0]) >= START_FAILURES
