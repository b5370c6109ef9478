import random

import pytest
import torch
import torch.nn.functional as F

from ponas.blocks import DepthwiseConv2d, _live_taps
from ponas.network import RELEASED, Network, build_released
from ponas.space import load_space
from ponas.supernet import Supernet
from ponas.train import recalibrate_bn


def small(name):
    space = load_space(name)
    # the imagenet space at low resolution keeps the test fast; structure is unchanged
    return space.replace(input_size=64) if space.input_size > 64 else space


@pytest.mark.parametrize("preset", ["digits", "cifar10", "imagenet"])
def test_supernet_and_standalone_network_agree_with_inherited_weights(preset):
    torch.manual_seed(0)
    space = small(preset)
    supernet = Supernet(space)
    choices = supernet.sample(random.Random(1))
    x = torch.randn(4, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (4,))

    # forward and backward on the sampled path
    supernet.train()
    loss = torch.nn.functional.cross_entropy(supernet(x, choices), y)
    loss.backward()
    used = supernet.path_modules(choices)
    assert all(p.grad is not None for p in used.parameters())
    unused = [
        p
        for i, c in enumerate(space.candidates)
        if space.allowed(0, c) and c != choices[0]
        for p in supernet.layers[0][c].parameters()
    ]
    assert unused and all(p.grad is None for p in unused)

    # give BatchNorm non-trivial statistics, then compare in eval mode
    recalibrate_bn(used, [(x, y)], forward=lambda b: supernet(b, choices))
    net = Network(space, choices)
    net.load_state_dict(supernet.path_state_dict(choices))
    supernet.eval()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), supernet(x, choices), rtol=0, atol=0)


def test_standalone_keys_map_one_to_one_onto_the_supernet():
    space = small("digits")
    supernet = Supernet(space)
    choices = ["e6_k5", "skip", "e3_k3", "e3_k7", "e6_k3", "skip"]
    assert set(supernet.path_state_dict(choices)) == set(Network(space, choices).state_dict())


@pytest.mark.parametrize("name", ["PONASA", "PONAS-B", "ponasc"])
def test_released_networks_build_and_run(name):
    net = build_released(name, load_space("imagenet").replace(input_size=64)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_released_architectures_have_19_layers_of_known_names():
    space = load_space("imagenet")
    for choices in RELEASED.values():
        assert space.validate_choices(choices) == choices
    assert RELEASED["PONASA"][0] == "e6_k5" and RELEASED["PONASA"][2] == "e3_k7_se"


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_on_small_maps_matches_the_full_kernel(kernel, stride):
    """Leaving out the taps that only see padding changes neither outputs nor gradients."""
    torch.manual_seed(kernel * 10 + stride)
    conv = DepthwiseConv2d(6, kernel, stride)
    cropped = 0
    for size in range(1, 10):
        x = torch.randn(3, 6, size, size, requires_grad=True)
        out = conv(x)
        full = F.conv2d(x, conv.weight, None, stride, kernel // 2, 1, 6)
        assert out.shape == full.shape
        torch.testing.assert_close(out, full)
        grad = torch.randn_like(full)
        for a, b in zip(
            torch.autograd.grad(out, (x, conv.weight), grad),
            torch.autograd.grad(full, (x, conv.weight), grad),
            strict=True,
        ):
            torch.testing.assert_close(a, b)
        cropped += _live_taps(size, kernel, stride, kernel // 2) is not None
    assert cropped  # the small maps above do take the cropped path


def test_traced_depthwise_conv_keeps_the_full_kernel_for_other_input_sizes():
    torch.manual_seed(0)
    conv = DepthwiseConv2d(4, 7).eval()
    with torch.no_grad():
        traced = torch.jit.trace(conv, torch.randn(1, 4, 2, 2))  # would crop to 3x3 eagerly
        x = torch.randn(1, 4, 9, 9)
        torch.testing.assert_close(traced(x), conv(x))
