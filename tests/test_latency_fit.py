"""What a whole forward costs beyond its blocks: fitted by ``ponas profile`` against networks
timed plainly (whole forward, median of calls), kept in the lookup table, applied wherever the
table's latency is used; tables written before the fit still load as the plain sum."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ponas.cli import main
from ponas.cost import (
    FIT_NETWORKS,
    cost_tables,
    fit_overhead,
    lut_fit,
    predict_latency,
    prediction_quality,
    profile_latency,
    with_latency,
)
from ponas.network import Network
from ponas.space import load_space
from tests.test_latency_lut import NAMES, deploy, small_lut, small_table, write


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_fit_recovers_an_overhead_and_a_scale_by_least_squares():
    summed = [10.0, 12.0, 15.0, 20.0, 26.0]
    overhead, scale = fit_overhead(summed, [1.5 + 1.12 * s for s in summed])
    assert overhead == pytest.approx(1.5) and scale == pytest.approx(1.12)
    # too little spread to tell a scale from an overhead: the mean difference, scale 1
    close = [10.0, 10.2, 10.4]
    assert fit_overhead(close, [s + 2.0 for s in close]) == pytest.approx((2.0, 1.0))
    # an implausible slope is not believed either
    assert fit_overhead(summed, [30.0 - s for s in summed])[1] == 1.0
    # one disturbed timing does not move the fit
    disturbed = [1.5 + 1.12 * s for s in summed] + [100.0]
    assert fit_overhead([*summed, 18.0], disturbed) == pytest.approx((1.5, 1.12))
    # the fixed parts never go below 0 ms
    assert fit_overhead([10.0], [1.0], base_ms=2.0) == pytest.approx((-2.0, 1.0))
    with pytest.raises(ValueError, match="as many measured times"):
        fit_overhead([], [])


def test_a_large_whole_forward_overhead_is_fitted_and_the_prediction_is_unbiased(monkeypatch):
    """A network whose whole forward costs 4 ms more than its parts (as dispatch, a head or
    allocation would; here 4 ms of CPU work in ``Network.forward``, which the block timing
    never calls): the plain sum is far too low, the fitted table is not. Timed with the cpu
    clock, so the other programs of a busy machine do not blur a 4 ms figure."""
    forward = Network.forward

    def slow_forward(self, x):
        end = time.thread_time() + 0.004
        while time.thread_time() < end:
            pass
        return forward(self, x)

    monkeypatch.setattr(Network, "forward", slow_forward)
    space = load_space("digits").replace(input_size=8)
    lut = profile_latency(space, "cpu", batch=1, warmup=1, repeats=7, check=4, seed=3, clock="cpu")
    assert lut["fit"]["networks"] == FIT_NETWORKS + 2  # and the fastest and the slowest
    summed_errors = [
        100 * (r["summed_ms"] - r["measured_ms"]) / r["measured_ms"] for r in lut["check"]
    ]
    assert sum(summed_errors) / len(summed_errors) < -50  # the old prediction: the plain sum
    added = [r["predicted_ms"] - r["summed_ms"] for r in lut["check"]]
    assert 3.0 < sum(added) / len(added) < 8.0  # the fit adds about the 4 ms a forward costs
    quality = prediction_quality(lut["check"])
    assert abs(quality["bias_pct"]) < 20 and quality["mean_abs_error_pct"] < 25
    assert lut["plain"] == {
        "what": "whole forward, median of consecutive calls after warm-up",
        "threads": 1,
        "batch": 1,
        "warmup": 1,
        "repeats": 7,
        "clock": "cpu",
    }
    # what a table built from it predicts is the fitted figure, not the sum
    choices = lut["check"][0]["choices"]
    cost, base = cost_tables(space, lut)
    cols = [space.candidates.index(c) for c in choices]
    table_ms = base["latency_ms"] + sum(cost["latency_ms"][i][j] for i, j in enumerate(cols))
    assert table_ms == pytest.approx(lut["check"][0]["predicted_ms"])
    assert table_ms == pytest.approx(predict_latency(lut, space, choices))


def test_a_table_without_the_fit_loads_as_the_plain_sum(tmp_path, capsys):
    table, lut = small_table(), small_lut()
    assert "overhead_ms" not in lut and "scale" not in lut
    assert lut_fit(lut) == (0.0, 1.0)
    old = with_latency(table, lut)
    assert old.base_cost["latency_ms"] == lut["base_ms"]
    assert old.cost["latency_ms"][0] == lut["layers"][0]
    fitted = with_latency(table, {**lut, "overhead_ms": 3.0, "scale": 1.5})
    assert fitted.base_cost["latency_ms"] == pytest.approx(1.5 * lut["base_ms"] + 3.0)
    assert fitted.cost["latency_ms"][0] == pytest.approx([1.5 * v for v in lut["layers"][0]])
    # deploy keeps a budget of the fitted figure
    t, lut_path = write(tmp_path, table, {**lut, "overhead_ms": 3.0})
    budget = (
        3.0 + lut["base_ms"] + sum(min(v for v in row if v is not None) for row in lut["layers"])
    )
    code, result, err = deploy(
        capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", str(budget), "--json"
    )
    assert code == 0, err
    cols = [NAMES.index(c) for c in result["choices"]]
    assert result["cost"]["latency_ms"] == pytest.approx(
        3.0 + lut["base_ms"] + sum(lut["layers"][i][j] for i, j in enumerate(cols))
    )
    code, _, err = deploy(
        capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", str(budget - 2.9)
    )
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"overhead_ms": "2"}, "overhead_ms is '2', expected ms"),
        ({"scale": 0}, "scale is 0, expected a number > 0"),
        ({"scale": float("inf")}, "scale is inf"),
        ({"overhead_ms": -10.0}, "overhead_ms -10.0 takes the fixed parts below 0 ms"),
    ],
)
def test_a_bad_fit_is_refused_in_one_line(tmp_path, capsys, changes, message):
    t, lut_path = write(tmp_path, small_table(), small_lut(**changes))
    code, _, err = deploy(capsys, "--table", t, "--lut", lut_path, "--max-latency-ms", "5")
    assert code == 2 and err.count("\n") == 1
    assert message in err


def test_profile_writes_the_fit_and_reports_the_bias_of_plainly_timed_networks(tmp_path, capsys):
    out = tmp_path / "lut.json"
    args = ["profile", "--space", "digits", "--input-size", "8", "--threads", "1"]
    args += ["--repeats", "3", "--warmup", "1", "--check", "3", "--out", str(out)]
    assert main(args) == 0
    lut = json.loads(out.read_text())
    assert {"overhead_ms", "scale", "fit", "plain"} <= set(lut)
    assert set(lut["quality"]) == {"mean_abs_error_pct", "bias_pct", "rank_correlation"}
    text = capsys.readouterr().out
    assert "each timed whole (1 thread, batch 1, median of 3 after 1 warm-up, wall clock)" in text
    assert f"bias (mean signed error) {lut['quality']['bias_pct']:+.1f}%" in text
