"""`ponas evaluate`: the reference's test.py on a tiny imagefolder the test creates."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms

from ponas.cli import main
from ponas.network import RELEASED, Network
from ponas.space import load_space

SIZE = 32


@pytest.fixture
def imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
            folder = tmp_path / "data" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(6):
                noise = rng.integers(0, 60, (40, 40, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "data"


def write_config(tmp_path, root, **extra):
    cfg = {
        "cuda": False,
        "ngpu": 1,
        "num_workers": 0,
        "batch_size": 5,
        "datasets": "imagenet",
        "dataset_dir": str(root),
        "input_size": SIZE,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "log_dir": str(tmp_path / "logs"),
        **extra,
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_evaluate_matches_an_independent_loop(tmp_path, imagefolder, capsys):
    torch.manual_seed(0)
    space = load_space("imagenet").replace(num_classes=2, input_size=SIZE)
    net = Network(space, RELEASED["PONASA"])
    # make BN statistics non-trivial so that eval mode differs from a fresh model
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, SIZE, SIZE))
    weights = tmp_path / "ponas_a.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, weights)
    cfg = write_config(tmp_path, imagefolder)

    code = main(
        ["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", str(weights), "--json"]
    )
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(out)  # --json prints one object and nothing else
    assert {"top1", "top5", "latency_ms"} <= set(result)

    # the independent loop: PIL, torchvision transforms, the model, argmax
    tf = transforms.Compose(
        [
            transforms.Resize(int(SIZE / 0.875)),
            transforms.CenterCrop(SIZE),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    net.eval()
    correct = total = 0
    for label in (0, 1):
        for path in sorted((imagefolder / "val" / f"class{label}").glob("*.png")):
            x = tf(Image.open(path).convert("RGB"))[None]
            with torch.no_grad():
                correct += int(net(x).argmax(1).item() == label)
            total += 1
    assert result["examples"] == total == 12
    assert result["top1"] == pytest.approx(correct / total)
    assert result["top5"] == 1.0  # two classes: every example is in the top 5
    assert result["macs"] > 0 and result["params"] == sum(p.numel() for p in net.parameters())
    assert json.loads((tmp_path / "logs" / "evaluate.json").read_text())["top1"] == result["top1"]


def test_weights_that_do_not_fit_list_the_mismatched_keys(tmp_path, imagefolder, capsys):
    space = load_space("imagenet").replace(num_classes=2, input_size=SIZE)
    state = Network(space, RELEASED["PONASB"]).state_dict()  # B's blocks differ from A's
    weights = tmp_path / "b.pth"
    torch.save(state, weights)
    cfg = write_config(tmp_path, imagefolder)
    assert (
        main(["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", str(weights)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ponas: error: --pretrain {weights} does not fit the model:")
    assert "layers." in err and "\n" not in err


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    cfg = write_config(tmp_path, tmp_path / "nowhere")
    assert main(["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", "x.pth"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and err.count("\n") == 1


def test_unknown_config_key_is_named(tmp_path, imagefolder, capsys):
    cfg = write_config(tmp_path, imagefolder, batchsize=3)
    assert main(["evaluate", "--cfg", str(cfg), "--model", "PONASA", "--pretrain", "x.pth"]) == 2
    assert "unknown config keys ['batchsize']" in capsys.readouterr().err
