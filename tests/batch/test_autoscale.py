"""The pool's autoscale formula (infra/batch/autoscale.formula), evaluated for sample metrics.

    .venv/bin/pytest tests/batch/test_autoscale.py -q

The real file is rendered with the parameters pool.bicep fills in and run through the offline
evaluator in autoscale_eval.py, one Batch evaluation per case.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.batch.autoscale_eval import FORMULA_PATH, FormulaError, Metric, evaluate, render

POOL_BICEP = Path(__file__).resolve().parents[2] / "infra" / "batch" / "pool.bicep"


def run(pending: list[float], preempted: list[float] | None = None, *, max_nodes: int = 4,
        max_spot: int = 4, max_dedicated: int = 2, idle_minutes: int = 5,
        percent: float | None = None):
    text = render(FORMULA_PATH.read_text(), MAX_NODES=max_nodes, MAX_SPOT_NODES=max_spot,
                  MAX_DEDICATED_NODES=max_dedicated, IDLE_MINUTES=idle_minutes)
    metrics = {"$PendingTasks": Metric(pending, percent=percent),
               "$PreemptedNodeCount": Metric(preempted if preempted is not None else [0.0])}
    return evaluate(text, metrics)


def test_idle_pool_scales_to_zero():
    r = run([0.0] * 20)
    assert (r.dedicated, r.spot) == (0, 0)
    assert r.deallocation == "taskcompletion"


def test_backlog_is_capped_at_max_nodes_spot_first():
    r = run([0.0] * 10 + [50.0] * 10)  # a 50-chunk job arrived
    assert r.spot == 4 and r.dedicated == 0
    assert r.deallocation == "taskcompletion"


def test_small_backlog_gets_one_node_per_task():
    r = run([0.0] * 19 + [3.0])
    assert (r.spot, r.dedicated) == (3, 0)


def test_preempted_spot_nodes_fall_back_to_dedicated_within_its_cap():
    r = run([8.0] * 20, preempted=[0.0, 1.0, 3.0])
    assert r.spot == 4  # Spot stays wanted: Batch brings preempted nodes back when it can
    assert r.dedicated == 2  # 3 preempted, but the dedicated cap is 2
    r = run([8.0] * 20, preempted=[1.0], max_dedicated=4)
    assert (r.spot, r.dedicated) == (4, 1)


def test_dedicated_only_pool():
    r = run([0.0] * 10 + [6.0] * 10, max_spot=0, max_dedicated=4)
    assert (r.spot, r.dedicated) == (0, 4)


def test_spot_cap_below_demand_takes_dedicated_for_the_rest():
    r = run([6.0] * 20, max_nodes=6, max_spot=4, max_dedicated=1)
    assert (r.spot, r.dedicated) == (4, 1)


def test_short_gap_keeps_nodes_then_idle_window_releases_them():
    # The queue emptied two minutes ago (a chunk failed and is about to be resubmitted).
    r = run([2.0] * 16 + [0.0] * 4)
    assert r.spot == 2
    # Empty for the whole idle window (5 minutes = 10 samples): release everything.
    r = run([2.0] * 5 + [0.0] * 10)
    assert (r.spot, r.dedicated) == (0, 0)


def test_too_few_samples_uses_the_latest_one():
    r = run([5.0, 0.0], percent=10.0)  # a new pool: metrics barely started
    assert (r.spot, r.dedicated) == (0, 0)
    r = run([0.0, 2.0], percent=10.0)
    assert r.spot == 2


def test_every_parameter_is_filled_and_the_formula_fits_batch_limits():
    text = FORMULA_PATH.read_text()
    params = set(re.findall(r"\{\{([A-Z_]+)\}\}", text))
    assert params == {"MAX_NODES", "MAX_SPOT_NODES", "MAX_DEDICATED_NODES", "IDLE_MINUTES"}
    with pytest.raises(FormulaError, match="not filled"):
        render(text, MAX_NODES=1)
    # pool.bicep fills in exactly these parameters from the same file.
    bicep = POOL_BICEP.read_text()
    assert "loadTextContent('autoscale.formula')" in bicep
    for p in params:
        assert "'{{" + p + "}}'" in bicep


def test_evaluator_rejects_what_it_does_not_know():
    metrics = {"$PendingTasks": Metric([1.0])}
    with pytest.raises(FormulaError, match="unsupported function"):
        evaluate("a = ceil(1.5);", metrics)
    with pytest.raises(FormulaError, match="reduce sample vectors"):
        evaluate("a = $PendingTasks.GetSample(1) + 1;", metrics)
    with pytest.raises(FormulaError, match="before it is assigned"):
        evaluate("a = b + 1;", metrics)
    with pytest.raises(FormulaError, match="no samples"):
        evaluate("a = max($PendingTasks.GetSample(TimeInterval_Second * 10));", metrics)
    with pytest.raises(FormulaError, match="keyword"):
        evaluate("$NodeDeallocationOption = 1;", metrics)
    r = evaluate("x = 2 > 1 && !(0) ? TimeInterval_Minute * 2 : TimeInterval_Second;"
                 "y = x > TimeInterval_Minute ? avg(1, 3) : -1;", metrics)
    assert r.variables["y"] == 2.0


def test_pool_module_embeds_files_that_exist_and_documents_its_params():
    """No Bicep compiler here: check what can go wrong silently (paths, documented params)."""
    bicep = POOL_BICEP.read_text()
    for path in re.findall(r"load(?:TextContent|FileAsBase64)\('([^']+)'\)", bicep):
        assert (POOL_BICEP.parent / path).is_file(), path
    header = bicep.split("\n\n", 1)[0] + bicep.split("@description", 1)[0]
    for name in re.findall(r"^param (\w+)", bicep, re.M):
        if not name.startswith("image"):
            assert re.search(rf"//\s+{name}\b", header), f"param {name} is not described"
    # The start task command line unpacks exactly the files the pool carries.
    assert "STYLEBATCH_START_TASK_B64" in bicep and "STYLEBATCH_RUN_SH_B64" in bicep
    assert "taskSlotsPerNode: 1" in bicep
