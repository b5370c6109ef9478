import pytest

from ponas.space import Candidate, SearchSpace, SpaceError, load_space, preset_names


def test_presets_are_listed():
    assert {"imagenet", "cifar10", "digits"} <= set(preset_names())


@pytest.mark.parametrize("name", ["e3_k3", "e6_k5", "e3_k7_se", "e6_k3_se", "skip"])
def test_candidate_names_round_trip(name):
    assert Candidate.parse(name).name == name


@pytest.mark.parametrize(
    "bad", ["e6k5", "e6_k4", "k5_e6", "e6_k5_SE", "e0_k3", "", "skip_se", "e6_k5_se_se"]
)
def test_unknown_candidate_names_are_clear_errors(bad):
    with pytest.raises(SpaceError, match="e<expansion>_k<kernel>|kernel size must be odd"):
        Candidate.parse(bad)


def test_imagenet_space_is_the_papers():
    space = load_space("imagenet")
    assert space.num_layers == 19
    assert len(space.candidates) == 12
    assert [(lay.out_channels, lay.stride) for lay in space.layers] == [
        (32, 2), (32, 1),
        (40, 2), (40, 1), (40, 1), (40, 1),
        (80, 2), (80, 1), (80, 1), (80, 1),
        (96, 1), (96, 1), (96, 1), (96, 1),
        (192, 2), (192, 1), (192, 1), (192, 1),
        (320, 1),
    ]  # fmt: skip
    assert space.layers[0].in_channels == 16 and space.layers[0].in_size == 112
    assert space.layers[-1].out_size == 7


def test_spec_round_trips_through_dict():
    for name in preset_names():
        space = load_space(name)
        assert SearchSpace.from_dict(space.to_dict()) == space


def test_wrong_layer_count_is_a_clear_error():
    space = load_space("imagenet")
    with pytest.raises(SpaceError, match="architecture has 3 layers, the 'imagenet' space has 19"):
        space.validate_choices(["e3_k3"] * 3)


def test_skip_only_where_stride_one_and_channels_match():
    space = load_space("digits")
    assert "skip" in space.candidates
    allowed = [space.layers[i].allows_skip for i in range(space.num_layers)]
    assert allowed == [False, True, False, True, False, True]
    choices = ["e3_k3"] * space.num_layers
    choices[0] = "skip"
    with pytest.raises(SpaceError, match="layer 0: 'skip' is only allowed where stride is 1"):
        space.validate_choices(choices)
    choices[0], choices[1] = "e3_k3", "skip"
    assert space.validate_choices(choices)[1] == "skip"


def test_candidate_outside_the_space_is_rejected():
    space = load_space("digits")
    with pytest.raises(SpaceError, match="'e3_k3_se' is not a candidate of the 'digits' space"):
        space.validate_choices(["e3_k3_se"] + ["e3_k3"] * 5)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stages": [[32, 2, 3]]}, "stride 1|2"),
        ({"candidates": {"expansions": [3], "kernels": [4]}}, "odd positive"),
        ({"bogus": 1}, "unknown search-space keys"),
        ({"input_size": "big"}, "wrong type"),
        ({"preprocessing": {"mean": [0.5, 0.5], "std": [0.5]}}, "one per input channel"),
    ],
)
def test_invalid_specs_say_what_is_wrong(change, message):
    spec = load_space("digits").to_dict()
    spec.update(change)
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(spec)


def test_missing_key_is_named():
    spec = load_space("digits").to_dict()
    del spec["stages"]
    with pytest.raises(SpaceError, match="missing the key 'stages'"):
        SearchSpace.from_dict(spec)


def test_unknown_preset_lists_presets():
    with pytest.raises(SpaceError, match="use a preset .*digits"):
        load_space("mnist")
