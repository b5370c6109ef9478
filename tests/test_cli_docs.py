"""The docs and every --help tell one truth: the settings table against SearchConfig, the
export formats against ponas.files (what the server and `ponas deploy` use)."""

import re
from pathlib import Path

import pytest
import yaml

from ponas.cli import build_parser
from ponas.files import DEFAULT_FORMATS, FORMATS
from ponas.search.config import SearchConfig

ROOT = Path(__file__).resolve().parent.parent


def settings_rows() -> dict:
    text = (ROOT / "docs" / "settings.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.M)
    return {name: yaml.safe_load(default) for name, default in rows}


def test_the_settings_table_lists_every_setting_with_its_default():
    documented = settings_rows()
    defaults = SearchConfig().to_dict()
    assert list(documented) == list(defaults)  # every setting, in SearchConfig's order
    for name, value in defaults.items():
        assert documented[name] == value, name


def help_of(*command: str) -> str:
    parser = build_parser()
    for name in command:
        parser = next(
            a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
        ).choices[name]
    return parser.format_help()


@pytest.mark.parametrize("command", [("deploy",), ("remote", "deploy")])
def test_deploy_help_lists_the_formats_and_the_default(command):
    text = " ".join(help_of(*command).split())
    assert f"of {', '.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)};" in text


def test_readme_and_service_doc_list_the_same_formats():
    readme = (ROOT / "README.md").read_text()
    service = (ROOT / "docs" / "service.md").read_text()
    wanted = f"formats: {', '.join(FORMATS)}; default {','.join(DEFAULT_FORMATS)}"
    assert wanted in " ".join(readme.split())
    assert wanted in " ".join(service.split())
    assert "download/{" + ",".join(FORMATS) + "}/" in service
    # no list of formats anywhere that leaves one out
    for doc in (readme, service):
        for listed in re.findall(r"\{(pt(?:,\w+)+)\}", doc):
            assert sorted(listed.split(",")) == sorted(FORMATS), listed


def test_the_server_default_formats_are_ponas_s():
    serializers = (ROOT / "webapp" / "runs" / "serializers" / "deployments.py").read_text()
    assert "from ponas.files import DEFAULT_FORMATS" in serializers


def test_the_digits_evaluate_config_is_one_evaluate_takes():
    from ponas.evaluate import CONFIG_KEYS

    cfg = yaml.safe_load((ROOT / "examples" / "evaluate_digits.yml").read_text())
    assert set(cfg) <= CONFIG_KEYS and cfg["datasets"] == "digits"
    readme = (ROOT / "README.md").read_text()
    assert "ponas evaluate --cfg examples/evaluate_digits.yml --model out/model.pt" in readme
    assert "examples/evaluate.yml --model out/model.pt" not in readme  # ImageNet's, not digits'
