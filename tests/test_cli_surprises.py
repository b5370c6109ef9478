"""The command line as a new user meets it: nothing lost or wrong without a word.

One test (or a few) per "silent surprise" of issue 29, asserting the text a user reads.
"""

import json
import shutil

import pytest

from ponas.cli import main
from tests.conftest import TINY

TINY_SET = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]


def copy_of(tiny_search, tmp_path):
    out, _, _ = tiny_search
    folder = tmp_path / "search"
    shutil.copytree(out, folder)
    return folder


# ---- 1: --resume with the settings of the checkpoint, or a refusal ----------------------------


def test_resume_of_a_finished_search_says_it_is_complete(tiny_search, tmp_path, capsys):
    folder = copy_of(tiny_search, tmp_path)
    before = (folder / "table.json").read_text()
    args = ["search", "--preset", "digits", "--out", str(folder), "--resume", *TINY_SET]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        out == f"{folder}: search already complete; nothing to resume ({folder / 'table.json'})\n"
    )
    assert (folder / "table.json").read_text() == before


def test_resume_with_changed_settings_of_a_finished_search_is_refused(
    tiny_search, tmp_path, capsys
):
    folder = copy_of(tiny_search, tmp_path)
    before = (folder / "table.json").read_text()
    args = ["search", "--preset", "digits", "--out", str(folder), "--resume", *TINY_SET]
    assert main([*args, "--set", "lr=0.05"]) == 2
    assert capsys.readouterr().err == (
        f"ponas: error: --resume: {folder} holds a finished search made with other settings "
        "(lr 0.1 there, 0.05 now): nothing to resume; use --out DIR for a new search with these "
        "settings, or --overwrite to replace it\n"
    )
    assert (folder / "table.json").read_text() == before


def test_resume_with_changed_settings_names_them_and_the_override(tiny_search, tmp_path, capsys):
    folder = copy_of(tiny_search, tmp_path)
    (folder / "table.json").unlink()  # stopped before the end: the checkpoint is all there is
    args = ["search", "--preset", "digits", "--out", str(folder), "--resume", *TINY_SET]
    assert main([*args, "--set", "lr=0.05", "--set", "seed=3"]) == 2
    assert capsys.readouterr().err == (
        f"ponas: error: --resume: {folder}'s checkpoint was made with other settings (lr 0.1 "
        "there, 0.05 now; seed 0 there, 3 now); resume without the changes, use --out DIR for "
        "a new search, or add --allow-changed-settings to continue with the new values\n"
    )
    assert not (folder / "table.json").exists()
    # the named override continues (here: stage 2 was done, so only the files are written)
    assert main([*args, "--set", "lr=0.05", "--allow-changed-settings", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "ponas: note: --resume with changed settings (lr 0.1 there, 0.05 now)" in captured.err
    assert captured.out.splitlines()[-1].startswith("took ")  # the end says how long
    assert (folder / "table.json").exists()


def test_search_refuses_a_folder_that_holds_a_search(tiny_search, capsys):
    out, _, _ = tiny_search
    assert main(["search", "--preset", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"ponas: error: {out} already holds a search; add --resume" in err
    assert "--overwrite to replace it" in err


# ---- 3: search --lut is checked before any training -------------------------------------------


def test_search_lut_of_another_space_is_refused_before_training(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    lut.write_text(json.dumps({"format": "ponas-latency/1", "space": "imagenet", "layers": []}))
    out = tmp_path / "run"
    args = ["search", "--preset", "digits", "--out", str(out), "--lut", str(lut), *TINY_SET]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"ponas: error: --lut {lut}: latency table was measured for the 'imagenet' space, the "
        "table is of the 'digits' space\n"
    )
    assert not (out / "checkpoints").exists()  # nothing trained


# ---- 4: deploy flags that need --export; --pareto within the other budgets ---------------------


@pytest.mark.parametrize(
    "flag",
    [
        ["--finetune-epochs", "1"],
        ["--formats", "tflite"],
        ["--supernet", "x.pt"],
        ["--set", "finetune_lr=0.01"],
        ["--dataset-dir", "/nonexistent"],
    ],
)
def test_deploy_refuses_export_only_flags_without_export(tiny_search, capsys, flag):
    out, _, _ = tiny_search
    assert main(["deploy", "--table", str(out / "table.json"), *flag]) == 2
    assert capsys.readouterr().err == (
        f"ponas: error: {flag[0]} needs --export DIR: it only matters for a built network\n"
    )


def test_pareto_honours_the_other_budgets(tiny_search, capsys):
    out, _, _ = tiny_search
    table = str(out / "table.json")
    assert main(["deploy", "--table", table, "--pareto", "params", "--json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    budget = sorted(p["cost"]["macs"] for p in everything)[len(everything) // 2]
    assert max(p["cost"]["macs"] for p in everything) > budget  # the budget cuts something
    args = ["deploy", "--table", table, "--pareto", "params", "--max-macs", str(budget)]
    assert main([*args, "--json"]) == 0
    within = json.loads(capsys.readouterr().out)
    assert within and all(p["cost"]["macs"] <= budget for p in within)
    # a frontier: params ascend, scores ascend
    assert [p["cost"]["params"] for p in within] == sorted(p["cost"]["params"] for p in within)
    assert all(a["score"] < b["score"] for a, b in zip(within, within[1:], strict=False))
    # the best network within the budget is its last point
    assert main(["deploy", "--table", table, "--max-macs", str(budget), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(within[-1]["score"])
    assert main(args) == 0
    assert f"Pareto-optimal networks (score against params) within --max-macs {budget}:" in (
        capsys.readouterr().out
    )


# ---- 5: deploy --json is an ARCH.json that describe takes --------------------------------------


def test_deploy_json_is_an_architecture_file_describe_takes(tiny_search, tmp_path, capsys):
    out, _, _ = tiny_search
    assert main(["deploy", "--table", str(out / "table.json"), "--max-macs", "2M", "--json"]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert chosen["space"]["name"] == "digits"
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(chosen))
    assert main(["describe", "--model", str(arch), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["choices"] == chosen["choices"]
    assert described["macs"] == chosen["cost"]["macs"]


# ---- 6: evaluate --json is one object; it says where it logs, and that it replaced a log -------


def test_evaluate_says_where_it_logs_and_when_it_replaces_a_log(tiny_search, tmp_path, capsys):
    out, _, _ = tiny_search
    export = tmp_path / "export"
    args = ["deploy", "--table", str(out / "table.json"), "--max-macs", "2M"]
    assert main([*args, "--export", str(export), "--formats", "pt"]) == 0
    captured = capsys.readouterr()
    # item 14: the build says what it does after the bars, and that each file was checked
    progress = captured.err.splitlines()
    assert f"exporting pt into {export}, each file checked" in progress
    assert f"wrote pt: {export / 'model.pt'} (checked: its outputs match the network's)" in (
        progress
    )
    assert "\r" not in captured.err  # not a terminal: lines, no bar frames
    assert f"wrote pt: {export / 'model.pt'} (checked)" in captured.out.splitlines()
    assert "- Budgets: macs <= 2M" in (export / "model_card.md").read_text()  # not 2e+06
    cfg = tmp_path / "evaluate.yml"
    logs = tmp_path / "logs"
    cfg.write_text(f"datasets: digits\ncuda: False\nval_size: 64\nlog_dir: {logs}\n")
    evaluate = ["evaluate", "--cfg", str(cfg), "--model", str(export / "model.pt")]
    assert main(evaluate) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {logs / 'evaluate.json'}"
    assert main([*evaluate, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # one object, nothing else
    assert result["log_file"] == str(logs / "evaluate.json")
    assert f"wrote {logs / 'evaluate.json'} (replacing the earlier one)" in captured.err
    # a bundle knows its data set: --cfg may be left out
    assert main(["evaluate", "--model", str(export / "model.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] > 0


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("ponas ")
