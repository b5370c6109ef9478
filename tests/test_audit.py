"""`ponas audit`'s per-budget figures, checked against a hand computation on a small pool."""

import pytest

from ponas.audit import budget_figures, percentile, seed_agreement, sentence, tau


def test_audit_figures_match_a_hand_computation_on_four_networks():
    truth = [0.50, 0.60, 0.70, 0.80]
    score = [1.0, 3.0, 2.0, 4.0]  # one discordant pair of 6: tau = (5 - 1) / 6
    macs = [4.0, 3.0, 2.0, 1.0]  # every pair discordant: tau = -1
    fig = budget_figures(truth, score, macs, deployed_truth=0.70, n_boot=200)
    assert fig["tau_table"] == pytest.approx(4 / 6)
    assert fig["tau_macs"] == pytest.approx(-1.0)
    assert fig["difference"] == pytest.approx(4 / 6 + 1)
    assert fig["deployed_percentile"] == pytest.approx(100 * 2.5 / 4)  # beats 2, ties 1
    lo, hi = fig["difference_interval"]
    assert lo <= fig["difference"] <= hi
    assert fig["networks"] == 4


def test_seed_agreement_is_the_mean_pairwise_tau_between_seeds():
    import numpy as np

    truths = np.array([[0.1, 0.2, 0.3], [0.1, 0.3, 0.2], [0.3, 0.2, 0.1]])
    expected = (
        tau(truths[0], truths[1]) + tau(truths[0], truths[2]) + tau(truths[1], truths[2])
    ) / 3
    agreement, spread = seed_agreement(truths)
    assert agreement == pytest.approx(expected)
    assert spread[0] == pytest.approx(np.std([0.1, 0.1, 0.3], ddof=1))


def test_sentence_says_cannot_tell_when_the_truth_disagrees_with_itself():
    fig = {
        "budget": 1.2e6,
        "tau_table": 0.41,
        "tau_macs": 0.05,
        "difference_interval": [0.1, 0.7],
        "networks": 10,
    }
    assert sentence(fig).startswith(
        "On this data set the table ranks networks of 1.20M MACs better"
    )
    assert "cannot tell" in sentence({**fig, "cannot_tell": True, "seed_agreement": 0.2})
    assert percentile(0.5, [0.5]) == 50


@pytest.mark.slow
def test_ponas_audit_trains_the_drawn_networks_once_and_a_rerun_resumes(
    tiny_search, tmp_path, capsys
):
    import json

    from ponas.cli import main

    out, table, _ = tiny_search
    store = tmp_path / "truth.json"
    args = ["audit", "--table", str(out / "table.json"), "--budgets", "1.2M"]
    args += ["--networks", "3", "--epochs", "1", "--store", str(store), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    (fig,) = report["budgets"]
    assert fig["networks"] == 3 and len(fig["truth"]) == 3
    assert all(0 <= t <= 1 for t in fig["truth"])
    trained = json.loads(store.read_text())
    assert 3 <= len(trained) <= 4  # the pool and the deployed network, each once
    assert main(args) == 0  # every network is in the store: nothing is trained again
    assert json.loads(capsys.readouterr().out)["budgets"][0]["truth"] == fig["truth"]
