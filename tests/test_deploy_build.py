"""Specialize (inherit, recalibrate, fine-tune, evaluate), export, and `ponas deploy`."""

import copy
import json
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ponas.cli import main
from ponas.data import load_dataset, make_loader
from ponas.deploy import specialize
from ponas.export import (
    ExportError,
    export_all,
    export_onnx,
    export_program,
    load_bundle,
    trace,
)
from ponas.files import FORMATS
from ponas.solve import solve
from ponas.table import AccuracyTable


def test_specialized_network_inherits_the_supernets_weights(tiny_search):
    out, table, _ = tiny_search
    choices = solve(table, {}).choices
    net, metrics = specialize(out / "supernet.pt", choices, overrides={"val_size": 64})
    assert net.choices == choices
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0 and metrics["finetune_epochs"] == 0
    from ponas.search import load_supernet

    supernet = load_supernet(out / "supernet.pt")
    inherited = supernet.path_state_dict(choices)
    for key, value in net.state_dict().items():
        if "running_" not in key and "num_batches" not in key:  # BN statistics are recalibrated
            torch.testing.assert_close(value, inherited[key], msg=key)


def test_finetuning_reports_progress_and_changes_weights(tiny_search):
    out, table, _ = tiny_search
    choices = table.path
    steps = []

    from ponas.search import SearchCallback

    class Steps(SearchCallback):
        def step(self, stage, step, total, metrics):
            steps.append((stage, step, total))

    before, _ = specialize(out / "supernet.pt", choices, overrides={"val_size": 64})
    after, metrics = specialize(
        out / "supernet.pt",
        choices,
        overrides={"val_size": 64},
        finetune_epochs=1,
        callback=Steps(),
    )
    assert metrics["finetune_epochs"] == 1
    assert steps and steps[-1][1] == steps[-1][2] and {s[0] for s in steps} == {"finetune"}
    changed = [
        k
        for k, v in after.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before.state_dict()[k])
    ]
    assert any(k.endswith("weight") for k in changed)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")  # legacy
def test_exported_bundle_program_onnx_and_legacy_torchscript_predict_the_same(
    tiny_search, tmp_path
):
    out, table, _ = tiny_search
    net, metrics = specialize(out / "supernet.pt", table.path, overrides={"val_size": 64})
    files = export_all(net, tmp_path, FORMATS, metrics=metrics, predicted_score=1.0)
    assert set(files) == {"pt", "pt2", "onnx", "torchscript", "model_card"}
    assert files["pt2"].name == "model.pt2"

    data = load_dataset("digits", input_size=16, mean=[0.5], std=[0.5], val_size=64)
    x, _ = next(iter(make_loader(data.test, 32, shuffle=False)))
    with torch.no_grad():
        expected = net.eval()(x)
        bundle_model, bundle = load_bundle(files["pt"])
        from_bundle = bundle_model(x)
        from_program = torch.export.load(files["pt2"]).module()(x)
        from_script = torch.jit.load(str(files["torchscript"]))(x)
    from_onnx = ort.InferenceSession(str(files["onnx"])).run(None, {"images": x.numpy()})[0]
    torch.testing.assert_close(from_bundle, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(from_program, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(from_script, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_onnx, expected.numpy(), rtol=0, atol=1e-4)
    assert (from_onnx.argmax(1) == expected.argmax(1).numpy()).all()
    assert bundle["choices"] == table.path and bundle["metrics"]["top1"] == metrics["top1"]
    card = files["model_card"].read_text()
    assert "## Architecture" in card and f"{100 * metrics['top1']:.2f}%" in card


def test_default_export_writes_current_formats_without_deprecation_warnings(tiny_search, tmp_path):
    out, table, _ = tiny_search
    net, _ = specialize(out / "supernet.pt", table.path, overrides={"val_size": 64})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = export_all(net, tmp_path)
    assert set(files) == {"pt", "pt2", "onnx", "model_card"}  # TorchScript only when asked
    assert not (tmp_path / "model.torchscript.pt").exists()
    deprecations = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    assert deprecations == []
    # one file each: the ONNX weights are inside the graph, not in a model.onnx.data beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "model.pt",
        "model.pt2",
        "model_card.md",
    ]


def test_an_export_that_disagrees_with_the_network_is_not_written(tiny_search, tmp_path):
    out, table, _ = tiny_search
    net, _ = specialize(out / "supernet.pt", table.path, overrides={"val_size": 64})
    other = copy.deepcopy(net)
    with torch.no_grad():  # a program of other weights than the network it claims to be
        next(other.parameters()).add_(1.0)
    program = trace(other)
    with pytest.raises(ExportError, match=r"^model\.pt2: its outputs differ from PyTorch's by "):
        export_program(tmp_path / "model.pt2", net, program)
    with pytest.raises(ExportError, match=r"^model\.onnx: its outputs differ from PyTorch's by "):
        export_onnx(tmp_path / "model.onnx", net, program)
    assert list(tmp_path.iterdir()) == []


def test_deploy_json_contract_and_budget_errors(tiny_search, capsys):
    out, table, _ = tiny_search
    frontier_min = min(
        a for a in json.loads((out / "table.json").read_text())["base_cost"].values()
    )
    assert frontier_min > 0
    assert main(["deploy", "--table", str(out / "table.json"), "--max-macs", "1M", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # with "space": the output is an ARCH.json that `ponas describe --model` takes
    assert set(result) == {"choices", "score", "score_stderr", "loss", "cost", "space"}
    assert result["cost"]["macs"] <= 1e6
    assert result["score"] == pytest.approx(
        sum(table.accuracy[i][table.candidates.index(c)] for i, c in enumerate(result["choices"]))
    )

    assert main(["deploy", "--table", str(out / "table.json"), "--max-macs", "10K"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "ponas: error: --max-macs 10000 is below the smallest network in this space ("
    )
    assert err.count("\n") == 1

    assert main(["deploy", "--table", str(out / "table.json"), "--max-params", "lots"]) == 2
    assert "--max-params: invalid budget 'lots'" in capsys.readouterr().err


def test_a_table_with_only_a_space_name_deploys_but_cannot_be_built(tiny_search, tmp_path, capsys):
    out, table, _ = tiny_search
    d = table.to_dict()
    d["space"] = {"name": "digits-from-a-spreadsheet"}
    path = tmp_path / "table.json"
    AccuracyTable.from_dict(d).save(path)
    assert main(["deploy", "--table", str(path), "--max-macs", "2M", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["choices"]


def test_deploy_export_builds_files_that_evaluate_loads(tiny_search, tmp_path, capsys):
    out, _, _ = tiny_search
    export = tmp_path / "export"
    code = main(
        ["deploy", "--table", str(out / "table.json"), "--max-macs", "2M",
         "--supernet", str(out / "supernet.pt"), "--export", str(export), "--set", "val_size=64",
         "--formats", "pt", "--json"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["files"]) == {"pt", "model_card"}
    cfg = tmp_path / "config.yml"
    cfg.write_text("datasets: digits\nbatch_size: 64\ncuda: False\nval_size: 64\n")
    assert main(["evaluate", "--cfg", str(cfg), "--model", result["files"]["pt"], "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["top1"] == pytest.approx(result["metrics"]["top1"])


def test_deploy_rejects_a_malformed_table_in_one_line(tmp_path, capsys):
    bad = tmp_path / "table.json"
    bad.write_text('{"format": "ponas-table/1", "candidates": []')
    assert main(["deploy", "--table", str(bad), "--max-macs", "1M"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ponas: error:") and str(bad) in err and err.count("\n") == 1


def test_deploy_names_a_bad_export_format_before_building(tiny_search, tmp_path, capsys):
    out, _, _ = tiny_search
    args = ["deploy", "--table", str(out / "table.json"), "--max-macs", "2M",
            "--supernet", str(out / "supernet.pt"), "--export", str(tmp_path / "export")]  # fmt: skip
    assert main([*args, "--formats", "pt,zip"]) == 2
    assert capsys.readouterr().err == (
        "ponas: error: --formats: unknown export format 'zip'; choose from pt, pt2, onnx, "
        "torchscript\n"
    )
    assert not (tmp_path / "export").exists()


def test_deploy_says_which_extra_installs_onnx_when_it_is_missing(
    tiny_search, tmp_path, capsys, monkeypatch
):
    out, _, _ = tiny_search
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as on `pip install ponas-studio`
    code = main(
        ["deploy", "--table", str(out / "table.json"), "--max-macs", "2M",
         "--supernet", str(out / "supernet.pt"), "--export", str(tmp_path / "export")]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        "ponas: error: --formats: the onnx format needs onnxscript (not installed): "
        "pip install 'ponas-studio[onnx]', or leave onnx out of the formats\n"
    )
