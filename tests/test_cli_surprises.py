"""The command line as a new user meets it: refusals that say what to do, exit status 2."""

import json

import pytest

from ponas.cli import main


@pytest.mark.parametrize("flag", [["--finetune-epochs", "1"], ["--formats", "tflite"]])
def test_deploy_refuses_export_only_flags_without_export(tiny_search, capsys, flag):
    out, _, _ = tiny_search
    assert main(["deploy", "--table", str(out / "table.json"), *flag]) == 2
    err = capsys.readouterr().err
    assert f"ponas: error: {flag[0]} needs --export DIR" in err


def test_search_refuses_a_folder_that_holds_a_search(tiny_search, capsys):
    out, _, _ = tiny_search
    assert main(["search", "--preset", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"ponas: error: {out} already holds a search; add --resume" in err
    assert "--overwrite to replace it" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("ponas ")


def test_deploy_json_still_one_object(tiny_search, capsys):
    out, _, _ = tiny_search
    assert main(["deploy", "--table", str(out / "table.json"), "--json"]) == 0
    json.loads(capsys.readouterr().out)
