"""The accuracy table file (``ponas-table/1``): round trips, atomic saves, precise errors."""

from __future__ import annotations

import copy
import csv
import io
import json
import os

import pytest

from ponas.space import load_space
from ponas.table import FORMAT, AccuracyTable, TableError


def table_dict() -> dict:
    """A small valid table: 3 layers x 3 candidates, skip not allowed at layer 0."""
    return {
        "format": "ponas-table/1",
        "space": {"name": "toy"},
        "candidates": ["e3_k3", "e6_k5_se", "skip"],
        "accuracy": [[0.5, 0.75, None], [0.625, 0.5, 0.25], [0.5, 0.5, 0.125]],
        "cost": {
            "macs": [[100, 300, None], [80, 240, 0], [80, 240, 0]],
            "params": [[10, 40, None], [8, 30, 0], [8, 30, 0]],
        },
        "base_cost": {"macs": 1000, "params": 50},
        "path": ["e6_k5_se", "e3_k3", "e3_k3"],
        "meta": {"dataset": "toy", "seed": 0},
    }


def with_latency(d: dict) -> dict:
    d["cost"]["latency_ms"] = [[0.5, 1.25, None], [0.25, 1.0, 0.0], [0.25, 1.0, 0.0]]
    d["base_cost"]["latency_ms"] = 2.0
    d["meta"]["latency_device"] = "test CPU"
    return d


def error_of(d: dict) -> str:
    with pytest.raises(TableError) as err:
        AccuracyTable.from_dict(d)
    return str(err.value)


# ---- round trip and files ------------------------------------------------------------------


def test_a_saved_table_loads_back_equal(tmp_path):
    table = AccuracyTable.from_dict(with_latency(table_dict()))
    table.save(tmp_path / "table.json")
    loaded = AccuracyTable.load(tmp_path / "table.json")
    assert loaded == table
    assert loaded.to_dict() == with_latency(table_dict())
    assert json.loads((tmp_path / "table.json").read_text())["format"] == FORMAT


def test_the_file_has_one_matrix_row_per_line(tmp_path):
    AccuracyTable.from_dict(table_dict()).save(tmp_path / "table.json")
    lines = (tmp_path / "table.json").read_text().splitlines()
    assert "    [0.5, 0.75, null]," in lines
    assert "      [100, 300, null]," in lines


def test_saving_replaces_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "table.json"
    path.write_text("old")
    AccuracyTable.from_dict(table_dict()).save(path)
    assert AccuracyTable.load(path).path == ["e6_k5_se", "e3_k3", "e3_k3"]
    assert os.listdir(tmp_path) == ["table.json"]


def test_a_failed_save_keeps_the_old_file_and_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    AccuracyTable.from_dict(table_dict()).save(path)
    before = path.read_text()
    table = AccuracyTable.from_dict(table_dict())
    table.meta["note"] = "changed"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        table.save(path)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["table.json"]


def test_a_table_that_cannot_be_written_as_json_touches_no_file(tmp_path):
    table = AccuracyTable.from_dict(table_dict())
    table.meta["bad"] = object()
    with pytest.raises(TypeError):
        table.save(tmp_path / "table.json")
    assert os.listdir(tmp_path) == []


def test_loading_a_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(TableError) as err:
        AccuracyTable.load(path)
    assert str(err.value) == f"{path}: no such table file"


def test_loading_a_file_that_is_not_json_names_it_and_the_place(tmp_path):
    path = tmp_path / "table.json"
    path.write_text('{"format": "ponas-table/1",\n  oops}')
    with pytest.raises(TableError) as err:
        AccuracyTable.load(path)
    assert str(err.value) == (
        f"{path}: not valid JSON (Expecting property name enclosed in double quotes at line 2 "
        "column 3)"
    )


def test_loading_an_invalid_table_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "table.json"
    d = table_dict()
    d["format"] = "ponas-table/0"
    path.write_text(json.dumps(d))
    with pytest.raises(TableError) as err:
        AccuracyTable.load(path)
    assert str(err.value) == (
        f"{path}: unsupported table format 'ponas-table/0': this version reads 'ponas-table/1'"
    )


# ---- validation: each message a user reads -----------------------------------------------------


def broken(change) -> dict:
    d = copy.deepcopy(table_dict())
    change(d)
    return d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.pop("format"),
            "not a PONAS accuracy table: missing \"format\" (expected 'ponas-table/1')",
        ),
        (
            lambda d: d.update(format=2),
            "unsupported table format 2: this version reads 'ponas-table/1'",
        ),
        (
            lambda d: d.update(extra=1),
            "unknown table keys ['extra']; allowed: ['format', "
            "'space', 'candidates', 'accuracy', 'cost', 'base_cost', 'stderr', 'path', 'meta'] "
            '(put extra information under "meta")',
        ),
        (lambda d: d.pop("cost"), "table is missing the key 'cost'"),
        (
            lambda d: d.update(space="imagenet"),
            '"space" must be an object with at least a '
            'non-empty "name" (e.g. {"name": "imagenet"}), got \'imagenet\'',
        ),
        (
            lambda d: d.update(space={"input_size": 224}),
            '"space" must be an object with at '
            'least a non-empty "name" (e.g. {"name": "imagenet"}), got {\'input_size\': 224}',
        ),
        (
            lambda d: d.update(candidates=[]),
            '"candidates" must be a non-empty list of candidate names, got []',
        ),
        (
            lambda d: d["candidates"].__setitem__(1, "e6_k4"),
            "candidates[1]: candidate 'e6_k4': kernel size must be odd, got 4",
        ),
        (
            lambda d: d["candidates"].__setitem__(1, "conv3"),
            "candidates[1]: unknown candidate "
            "name 'conv3': expected 'e<expansion>_k<kernel>' with an optional '_se' suffix (e.g. "
            "'e6_k5', 'e3_k7_se') or 'skip'",
        ),
        (
            lambda d: d["candidates"].__setitem__(1, "e3_k3"),
            "candidates: 'e3_k3' appears twice (columns 0 and 1); each candidate is one column",
        ),
        (
            lambda d: d.update(accuracy=[]),
            '"accuracy" must be a non-empty list of rows (one per layer), got []',
        ),
        (
            lambda d: d["accuracy"][1].pop(),
            "accuracy row 1 has 2 entries: expected a list of 3 (one per candidate)",
        ),
        (
            lambda d: d["accuracy"][1].__setitem__(2, 1.5),
            "accuracy[1][2] (layer 1, 'skip') is 1.5: expected a number in [0, 1] or null",
        ),
        (
            lambda d: d["accuracy"][1].__setitem__(0, "0.5"),
            "accuracy[1][0] (layer 1, 'e3_k3') is '0.5': expected a number in [0, 1] or null",
        ),
        (
            lambda d: d["accuracy"][1].__setitem__(0, float("nan")),
            "accuracy[1][0] (layer 1, 'e3_k3') is nan: expected a number in [0, 1] or null",
        ),
        (
            lambda d: d["accuracy"][1].__setitem__(0, True),
            "accuracy[1][0] (layer 1, 'e3_k3') is True: expected a number in [0, 1] or null",
        ),
        (
            lambda d: d["accuracy"].__setitem__(0, [None, None, None]),
            "accuracy row 0 is all null: every layer needs at least one allowed candidate",
        ),
        (
            lambda d: d["cost"].pop("params"),
            "\"cost\" is missing 'params': every table carries macs and params",
        ),
        (
            lambda d: d["cost"].update(flops=d["cost"]["macs"]),
            "unknown cost kind 'flops': expected macs, params, latency_ms",
        ),
        (
            lambda d: d["cost"]["macs"].pop(),
            "cost.macs has 2 rows: expected 3 rows, the shape of accuracy",
        ),
        (
            lambda d: d["cost"]["params"][2].append(1),
            "cost.params row 2 has 4 entries: expected a list of 3 (one per candidate)",
        ),
        (
            lambda d: d["cost"]["macs"][1].__setitem__(1, None),
            "cost.macs[1][1] (layer 1, "
            "'e6_k5_se') is null but accuracy[1][1] is 0.5: a cost is null exactly where accuracy "
            "is null",
        ),
        (
            lambda d: d["cost"]["macs"][0].__setitem__(2, 5),
            "cost.macs[0][2] (layer 0, 'skip') "
            "is 5 but accuracy[0][2] is null: a cost is null exactly where accuracy is null",
        ),
        (
            lambda d: d["cost"]["params"][1].__setitem__(0, -1),
            "cost.params[1][0] (layer 1, 'e3_k3') is -1: expected a finite number >= 0",
        ),
        (
            lambda d: d["cost"]["params"][1].__setitem__(0, float("inf")),
            "cost.params[1][0] (layer 1, 'e3_k3') is inf: expected a finite number >= 0",
        ),
        (
            lambda d: d["base_cost"].pop("params"),
            "base_cost has ['macs'] but cost has "
            "['macs', 'params']: give one base cost per cost kind",
        ),
        (
            lambda d: d["base_cost"].update(macs=-5),
            "base_cost.macs is -5: expected a finite number >= 0",
        ),
        (
            lambda d: d["path"].pop(),
            '"path" has 2 entries: expected a list of 3 candidate names (one per layer)',
        ),
        (
            lambda d: d["path"].__setitem__(1, "e6_k7"),
            "path[1] is 'e6_k7': not one of the table's candidates (e3_k3, e6_k5_se, skip)",
        ),
        (
            lambda d: d["path"].__setitem__(0, "skip"),
            "path[0] is 'skip' but accuracy[0][2] is "
            "null: that candidate is not allowed at layer 0",
        ),
        (lambda d: d.update(meta=[]), '"meta" must be an object, got []'),
    ],
)
def test_each_problem_gets_a_precise_message(change, message):
    assert error_of(broken(change)) == message


def test_latency_needs_the_device_it_was_measured_on():
    d = with_latency(table_dict())
    del d["meta"]["latency_device"]
    assert error_of(d) == (
        "cost has latency_ms but meta.latency_device is missing: name the device the latency "
        'was measured on (e.g. "meta": {"latency_device": "NVIDIA H100"})'
    )


def test_a_table_that_is_not_an_object_is_refused():
    assert error_of([1, 2]) == "a table must be a JSON object, got list"


def test_meta_may_be_left_out():
    d = table_dict()
    del d["meta"]
    assert AccuracyTable.from_dict(d).meta == {}


def test_direct_construction_is_validated_too():
    fields = table_dict()
    del fields["format"]
    fields["accuracy"][0][0] = 2.0
    with pytest.raises(TableError, match=r"accuracy\[0\]\[0\] \(layer 0, 'e3_k3'\) is 2.0"):
        AccuracyTable(**fields)


# ---- reading -----------------------------------------------------------------------------------


def test_best_path_takes_the_most_accurate_candidate_and_the_cheaper_on_ties():
    table = AccuracyTable.from_dict(table_dict())
    # layer 2: e3_k3 and e6_k5_se tie at 0.5; e3_k3 has fewer MACs
    assert table.best_path() == ["e6_k5_se", "e3_k3", "e3_k3"]
    assert table.num_layers == 3
    assert table.cost_kinds == ["macs", "params"]
    assert AccuracyTable.from_dict(with_latency(table_dict())).cost_kinds == [
        "macs",
        "params",
        "latency_ms",
    ]


def test_csv_has_a_header_and_one_line_per_layer_with_accuracy_then_cost_columns():
    text = AccuracyTable.from_dict(with_latency(table_dict())).to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "layer",
        "path",
        "e3_k3",
        "e6_k5_se",
        "skip",
        "macs:e3_k3",
        "macs:e6_k5_se",
        "macs:skip",
        "params:e3_k3",
        "params:e6_k5_se",
        "params:skip",
        "latency_ms:e3_k3",
        "latency_ms:e6_k5_se",
        "latency_ms:skip",
    ]
    assert len(rows) == 4
    assert rows[1] == [
        "0",
        "e6_k5_se",
        "0.5",
        "0.75",
        "",
        "100",
        "300",
        "",
        "10",
        "40",
        "",
        "0.5",
        "1.25",
        "",
    ]
    assert rows[2][:5] == ["1", "e3_k3", "0.625", "0.5", "0.25"]
    assert text.endswith("\n") and "\r" not in text


def test_a_name_only_space_can_be_read_but_not_built():
    table = AccuracyTable.from_dict(table_dict())
    assert not table.has_full_space
    with pytest.raises(TableError) as err:
        table.search_space()
    assert str(err.value) == (
        "this table's space is only {'name': 'toy'}; building a network needs the full space spec"
    )


def test_build_computes_costs_from_the_space_and_keeps_the_full_spec():
    space = load_space("digits")
    accuracy = [
        [0.5 if space.allowed(i, c) else None for c in space.candidates]
        for i in range(space.num_layers)
    ]
    path = [space.allowed_candidates(i)[0] for i in range(space.num_layers)]
    table = AccuracyTable.build(space, accuracy, path, {"dataset": "digits"})
    assert table.has_full_space and table.search_space() == space
    assert table.candidates == list(space.candidates)
    assert table.cost_kinds == ["macs", "params"]
    assert all(
        (m is None) == (a is None)
        for row_m, row_a in zip(table.cost["macs"], table.accuracy, strict=True)
        for m, a in zip(row_m, row_a, strict=True)
    )
    assert AccuracyTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table


def test_a_full_space_must_agree_with_the_columns_and_rows():
    space = load_space("digits")
    accuracy = [
        [0.5 if space.allowed(i, c) else None for c in space.candidates]
        for i in range(space.num_layers)
    ]
    path = [space.allowed_candidates(i)[0] for i in range(space.num_layers)]
    d = AccuracyTable.build(space, accuracy, path).to_dict()
    first_no_skip = next(i for i in range(space.num_layers) if not space.allowed(i, "skip"))
    d["accuracy"][first_no_skip][-1] = 0.5
    for kind in d["cost"]:
        d["cost"][kind][first_no_skip][-1] = 0
    assert error_of(d) == (
        f"accuracy[{first_no_skip}][6] (layer {first_no_skip}, 'skip') is 0.5 but the 'digits' "
        "space does not allow that candidate there: expected null"
    )
