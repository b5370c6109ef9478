"""Training-step throughput of the supernet on a sampled path vs the standalone network.

Both models hold the same path with the same weights and take the same SGD steps on the same
batches; rounds alternate between them so machine noise hits both alike. Prints the ratio
supernet/standalone (goal: at least 0.9) for digits and for imagenet at low resolution.

    python bench/supernet_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from ponas.network import Network
from ponas.space import load_space
from ponas.supernet import Supernet


def steps_per_second(step, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches / (time.perf_counter() - start)


def compare(
    space, batch: int, rounds: int, steps: int, seed: int = 0
) -> tuple[float, float, float]:
    torch.manual_seed(seed)
    supernet = Supernet(space).to(memory_format=torch.channels_last)
    choices = supernet.sample(random.Random(seed))
    network = Network(space, choices).to(memory_format=torch.channels_last)
    network.load_state_dict(supernet.path_state_dict(choices))
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,))
    opt_s = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    opt_n = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)

    def step_supernet():
        opt_s.zero_grad(set_to_none=True)
        F.cross_entropy(supernet(x, choices), y).backward()
        opt_s.step()

    def step_network():
        opt_n.zero_grad(set_to_none=True)
        F.cross_entropy(network(x), y).backward()
        opt_n.step()

    for fn in (step_supernet, step_network):  # warm-up
        steps_per_second(fn, 2)
    sup, net = [], []
    for _ in range(rounds):
        sup.append(steps_per_second(step_supernet, steps))
        net.append(steps_per_second(step_network, steps))
    s, n = statistics.median(sup), statistics.median(net)
    return s, n, s / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds, steps = (3, 3) if args.quick else (7, 8)
    cases = [
        ("digits (16x16, batch 64)", load_space("digits"), 64),
        ("imagenet at 64x64 (batch 16)", load_space("imagenet").replace(input_size=64), 16),
    ]
    print(f"{'space':<32} {'supernet steps/s':>17} {'standalone steps/s':>19} {'ratio':>6}")
    for name, space, batch in cases:
        s, n, ratio = compare(space, batch, rounds, steps)
        print(f"{name:<32} {s:>17.2f} {n:>19.2f} {ratio:>6.3f}")
    print("goal: ratio >= 0.9 (supernet overhead of a sampled path under 10%)")


if __name__ == "__main__":
    main()
