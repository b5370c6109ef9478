"""Errors that say what to do: each names the flag or setting that fixes it, in one line, with
exit status 2 (issue 29, items 7 and 8)."""

import io
import itertools
import json

import pytest
import yaml

from ponas.cli import main
from ponas.progress import TqdmCallback


def error_of(capsys, *args) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def usage_error_of(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no usage block
    return err


# ---- 7 ------------------------------------------------------------------------------------


def test_warmup_error_names_the_setting_and_the_flag(tmp_path, capsys):
    err = error_of(
        capsys, "search", "--preset", "digits", "--epochs", "1", "--set", "warmup_epochs=1",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert err == (
        "ponas: error: warmup_epochs (1) must be below epochs (1): --set warmup_epochs=0 for "
        "no warm-up, or a larger --epochs\n"
    )


def test_an_image_folder_without_its_folder_names_dataset_dir(tmp_path, capsys):
    err = error_of(capsys, "search", "--preset", "imagenet", "--out", str(tmp_path / "run"))
    assert err == (
        "ponas: error: the imagefolder data set needs its folder: give --dataset-dir DIR "
        "(holding train/ and val/)\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_latency_budget_on_a_table_without_latency_names_lut(tiny_search, capsys):
    out, _, _ = tiny_search
    err = error_of(capsys, "deploy", "--table", str(out / "table.json"), "--max-latency-ms", "20")
    assert err == (
        "ponas: error: --max-latency-ms: this table has no latency; add --lut lut.json (from "
        "`ponas profile` of its space), or search with --lut\n"
    )


def test_a_latency_budget_may_say_ms(tiny_search, tmp_path, capsys):
    out, table, _ = tiny_search
    lut = tmp_path / "lut.json"
    rows = [[None if a is None else 0.5 for a in row] for row in table.accuracy]
    lut.write_text(
        json.dumps(
            {
                "format": "ponas-latency/1",
                "space": "digits",
                "device": "test board",
                "candidates": table.candidates,
                "base_ms": 1.0,
                "layers": rows,
            }
        )
    )
    args = ["deploy", "--table", str(out / "table.json"), "--lut", str(lut), "--json"]
    assert main([*args, "--max-latency-ms", "20ms"]) == 0
    assert json.loads(capsys.readouterr().out)["cost"]["latency_ms"] <= 20
    err = error_of(capsys, *args, "--max-latency-ms", "fast")
    assert err == (
        "ponas: error: --max-latency-ms: invalid budget 'fast': expected milliseconds, e.g. 20 "
        "or 12.5\n"
    )


def test_an_infeasible_budget_is_named_as_its_flag(tiny_search, capsys):
    out, _, _ = tiny_search
    err = error_of(capsys, "deploy", "--table", str(out / "table.json"), "--max-macs", "100000")
    assert err.startswith(
        "ponas: error: --max-macs 100000 is below the smallest network in this space ("
    )


def test_describe_of_a_supernet_says_how_to_get_a_network(tiny_search, capsys):
    out, _, _ = tiny_search
    err = error_of(capsys, "describe", "--model", str(out / "supernet.pt"))
    assert err == (
        f"ponas: error: --model {out / 'supernet.pt'} is a supernet (every candidate of every "
        "layer), not one network: build one with `ponas deploy --table TABLE --export DIR`, "
        "then describe DIR/model.pt\n"
    )
    assert "--pretrain" not in err  # describe has no such flag


def test_convert_of_a_text_file_says_it_is_not_a_weights_file(tmp_path, capsys):
    card = tmp_path / "model_card.md"
    card.write_text("# PONAS specialized network\n\n" + "x" * 200)
    err = error_of(capsys, "convert", "--to", "ponas", str(card), str(tmp_path / "out.pt"))
    assert err == (
        f"ponas: error: IN {card}: not a PyTorch weights file (a bundle .pt or a state dict "
        ".pth, as torch.save writes them)\n"
    )


def test_a_value_of_the_wrong_type_is_one_line(capsys):
    err = usage_error_of(capsys, "plan", "--preset", "digits", "--images-per-s", "abc")
    assert err == (
        "ponas plan: error: argument --images-per-s: invalid float value: 'abc' "
        "(see ponas plan --help)\n"
    )


def test_a_misspelt_setting_gets_the_close_name(tmp_path, capsys):
    err = error_of(
        capsys, "search", "--preset", "digits", "--set", "epoch=3", "--out", str(tmp_path / "r")
    )
    assert err == (
        "ponas: error: unknown search settings ['epoch'] ('epoch': did you mean 'epochs'?); "
        "every setting is listed in docs/settings.md\n"
    )


def test_a_setting_given_as_a_flag_and_as_set_is_refused(tmp_path, capsys):
    err = error_of(
        capsys, "search", "--preset", "digits", "--epochs", "3", "--set", "epochs=4",
        "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert err == "ponas: error: --epochs 3 and --set epochs=4 both set epochs; give one of them\n"


# ---- 8: plan ------------------------------------------------------------------------------


def test_plan_takes_the_flags_of_search_and_says_which_change_nothing(tmp_path, capsys):
    args = ["plan", "--preset", "digits", "--device", "cpu", "--out", str(tmp_path), "--resume"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "ponas: note: plan: --out, --resume change no figure (the plan is of the whole search "
        "with these settings)\n"
    )
    assert captured.out.startswith("search plan: space digits")


def test_plan_says_device_auto_is_assumed_to_be_cuda(capsys):
    assert main(["plan", "--preset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "device cuda\n" in out
    assert "note: device auto is planned as cuda; set device cpu to plan a run on the CPU" in out


def test_plan_assumes_imagenet_only_where_it_has_to(tmp_path, capsys):
    assert main(["plan", "--preset", "shapes", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ImageNet" not in out and "10,000 training images" in out
    missing = tmp_path / "nowhere"
    args = ["plan", "--preset", "imagenet", "--dataset-dir", str(missing), "--device", "cuda"]
    assert main(args) == 0
    assert (
        f"note: {missing / 'train'} is not a folder: assumed ImageNet-1k's 1,281,167 training "
        "images (give --train-images N, or --dataset-dir DIR holding train/)"
    ) in capsys.readouterr().out


def test_plan_warns_of_device_memory_no_gpu_has(capsys):
    args = ["plan", "--preset", "digits", "--device", "cuda", "--set", "input_size=4096"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "is more than any one GPU holds (the largest, 192.0 GiB): lower batch_size or" in out


# ---- 13, 14, 17: the settings, the progress, the table -------------------------------------


def test_print_config_prints_what_would_run_as_a_cfg_file(tmp_path, capsys):
    args = ["search", "--preset", "digits", "--epochs", "7", "--set", "lr=0.05", "--print-config"]
    assert main(args) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["preset"] == "digits" and doc["epochs"] == 7 and doc["lr"] == 0.05
    assert doc["val_size"] == 300  # the preset's, resolved
    cfg = tmp_path / "search.yml"
    cfg.write_text(yaml.safe_dump(doc))
    assert main(["search", "--cfg", str(cfg), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == doc


def test_progress_into_a_log_has_no_carriage_returns_and_quiet_has_nothing():
    for quiet in (False, True):
        log = io.StringIO()
        bars = TqdmCallback(quiet=quiet, stream=log)
        bars.stage_started("stage1", 20)
        for step in range(1, 21):
            bars.step("stage1", step, 20, {"loss": 1.0})
        bars.epoch_end(1, 1, {"train_loss": 1.0, "train_acc": 0.5, "images_per_s": 100})
        bars.stage_started("stage2", 3)
        bars.row_done(0, [0.5, 0.25, None], "e3_k3")
        bars.close()
        text = log.getvalue()
        if quiet:
            assert text == ""
        else:
            assert "\r" not in text
            lines = text.splitlines()
            assert lines[0] == "stage 1: meta-training: 20 steps"
            assert "epoch 1/1: loss 1.000, train acc 50.0%, 100 img/s" in lines
            assert "layer 0: chose e3_k3 (50.0% validation)" in lines


def test_table_prints_a_grid_csv_and_close_calls(tiny_search, capsys):
    out, table, _ = tiny_search
    path = str(out / "table.json")
    assert main(["table", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["layer", *table.candidates]
    assert len(lines) == 2 + table.num_layers and lines[2].split()[0] == "0"  # from 0
    assert main(["table", path, "--csv"]) == 0
    assert capsys.readouterr().out == table.to_csv()
    assert main(["table", path, "--close-calls"]) == 0
    calls = capsys.readouterr().out.splitlines()
    assert [c.split(":")[0] for c in calls if c.startswith("layer")] == [
        f"layer {c.layer}" for c in table.close_calls()
    ]


def test_deploy_top_lists_the_best_networks_best_first(tiny_search, capsys):
    out, table, _ = tiny_search
    args = ["deploy", "--table", str(out / "table.json"), "--max-macs", "2M"]
    assert main([*args, "--top", "5", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert len(top) == 5 and all(p["cost"]["macs"] <= 2e6 for p in top)
    assert [p["score"] for p in top] == sorted((p["score"] for p in top), reverse=True)
    assert len({tuple(p["choices"]) for p in top}) == 5
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == pytest.approx(top[0]["score"])
    # against every network of the table within the budget
    allowed = [
        [(a, m) for a, m in zip(row, macs, strict=True) if a is not None]
        for row, macs in zip(table.accuracy, table.cost["macs"], strict=True)
    ]
    base = table.base_cost["macs"]
    scores = sorted(
        (
            sum(a for a, _ in net)
            for net in itertools.product(*allowed)
            if base + sum(m for _, m in net) <= 2e6
        ),
        reverse=True,
    )
    assert [p["score"] for p in top] == pytest.approx(scores[:5])


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    assert "(default: 20)" in capsys.readouterr().out
