"""The reference's published PONAS-A/B/C checkpoints: `ponas evaluate` reads their layout,
`ponas convert` writes either layout, and the reference's config.yml runs as it is."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ponas.cli import main
from ponas.export import load_bundle
from ponas.network import RELEASED, Network, load_weights
from ponas.space import load_space

SIZE = 32
CLASSES = 3


def reference_state(net: Network) -> dict[str, torch.Tensor]:
    """Our network's weights under the reference's names, written from its model code's facts
    (independently of ponas.network): stem ``first.{conv,bn}``; blocks
    ``stages.{l}.block.{point_wise,depthwise,point_wise_1}.{conv,bn}`` and
    ``se.operation.{1,3}``; head ``stages.last.{0,1}``, ``classifier.1``."""
    out = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if parts[:2] == ["stem", "0"]:
            name = f"first.{['conv', 'bn'][int(parts[2])]}"
        elif parts[:2] == ["head", "conv"]:
            name = f"stages.last.{parts[2]}"
        elif parts[:2] == ["head", "classifier"]:
            name = "classifier.1"
        else:
            if parts[0] == "stem":  # the fixed first block: expansion 1, no SE
                stage, expansion, se, rest = 0, 1, False, parts[3:]
            else:
                layer = int(parts[1])
                cand = net.choices[layer]
                stage, expansion, se = layer + 1, int(cand[1]), cand.endswith("_se")
                rest = parts[3:]
            roles = ["point_wise"] * (expansion != 1) + ["depthwise"] + ["se"] * se
            roles += ["point_wise_1.conv", "point_wise_1.bn"]
            role = roles[int(rest[0])]
            if role in ("point_wise", "depthwise"):
                role += ".conv" if rest[1] == "0" else ".bn"
            elif role == "se":
                role += ".operation.1" if rest[1] == "reduce" else ".operation.3"
            name = f"stages.{stage}.block.{role}"
        out[f"{name}.{parts[-1]}"] = value.clone()
    return out


def random_network(model: str, seed: int) -> Network:
    """A released network with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    space = load_space("imagenet").replace(num_classes=CLASSES, input_size=SIZE)
    net = Network(space, RELEASED[model])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def test_only_folder(tmp_path_factory):
    """An image folder with only test/ (what the reference's test.py reads), no train/."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for label in range(CLASSES):
        folder = root / "test" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (36, 36, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def reference_config(tmp_path, root, **overrides):
    """The reference's config.yml, as it ships (4 GPUs, CUDA), pointed at the test folder."""
    cfg = {
        "cuda": False,
        "ngpu": 1,
        "num_workers": 0,
        "batch_size": 4,
        "datasets": "imagenet",
        "dataset_dir": str(root),
        "input_size": SIZE,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        **overrides,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def predictions(net: Network, root) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every test image, preprocessed as evaluation does."""
    from ponas.data import load_test_split

    test, _ = load_test_split(
        "imagefolder",
        root,
        input_size=SIZE,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    xs, ys = zip(*(test[i] for i in range(len(test))), strict=True)
    with torch.no_grad():
        return net.eval()(torch.stack(xs)), torch.tensor(ys)


@pytest.mark.parametrize("model", ["PONASA", "PONASB", "PONASC"])
def test_reference_checkpoint_evaluates_like_the_network_it_came_from(
    model, tmp_path, test_only_folder, capsys
):
    net = random_network(model, seed=len(model) + ord(model[-1]))
    weights = tmp_path / f"{model}.pth"
    prefix = "module." if model == "PONASB" else ""  # as saved from DataParallel
    torch.save({prefix + k: v for k, v in reference_state(net).items()}, weights)

    fresh = Network(net.space, net.choices)  # other random weights, until loaded
    assert load_weights(fresh, weights) == "reference"
    logits, labels = predictions(net, test_only_folder)
    assert torch.equal(predictions(fresh, test_only_folder)[0], logits)

    cfg = reference_config(tmp_path, test_only_folder)
    args = ["evaluate", "--cfg", str(cfg), "--model", model, "--pretrain", str(weights), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["examples"] == len(labels) == 4 * CLASSES
    assert result["top1"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_convert_round_trip_gives_identical_tensors(tmp_path, capsys):
    net = random_network("PONASC", seed=3)
    ours = tmp_path / "ours.pth"
    torch.save(net.state_dict(), ours)
    ref, back = tmp_path / "reference.pth", tmp_path / "back.pt"

    assert main(["convert", "--to", "reference", str(ours), str(ref)]) == 0
    assert main(["convert", "--to", "ponas", str(ref), str(back)]) == 0

    reference = torch.load(ref, weights_only=True)
    assert reference.keys() == reference_state(net).keys()
    assert all(torch.equal(reference[k], v) for k, v in reference_state(net).items())
    model, bundle = load_bundle(back)  # the released network the weights fit, found by shape
    assert model.choices == RELEASED["PONASC"] and model.space.num_classes == CLASSES
    original = net.state_dict()
    assert bundle["state_dict"].keys() == original.keys()
    assert all(torch.equal(bundle["state_dict"][k], v) for k, v in original.items())


def test_weights_of_another_network_list_the_keys_in_one_line(tmp_path, test_only_folder, capsys):
    weights = tmp_path / "b_reference.pth"
    torch.save(reference_state(random_network("PONASB", seed=0)), weights)
    cfg = reference_config(tmp_path, test_only_folder)
    args = ["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", str(weights)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"ponas: error: --pretrain {weights} does not fit the model "
        "(read as the reference's layout): "
    )
    assert "stages.1.block" in err and "\n" not in err


def test_convert_names_what_it_cannot_read(tmp_path, capsys):
    weights = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    assert main(["convert", "--to", "ponas", str(weights), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ponas: error: {weights}: no classifier weights (classifier.1.weight or "
        "head.classifier.weight): not a PONAS network's state dict"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a CPU-only machine")
def test_reference_config_as_shipped_falls_back_to_the_cpu(tmp_path, test_only_folder, capsys):
    net = random_network("PONASA", seed=1)
    weights = tmp_path / "a.pth"
    torch.save(reference_state(net), weights)
    cfg = reference_config(tmp_path, test_only_folder, cuda=True, ngpu=4)
    args = ["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", str(weights)]
    assert main(args) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("ponas: note:")]
    assert notes == [
        "ponas: note: cuda: True but this machine has no CUDA device: evaluating on the CPU"
    ]
    assert "(batch 1, cpu, median)" in captured.out
