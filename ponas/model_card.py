"""The model card: a short Markdown page for a specialized network (architecture, costs,
predicted score, measured accuracy, preprocessing), written beside its exported files."""

from __future__ import annotations

from typing import Any

from ponas.cost import network_cost
from ponas.network.model import Network
from ponas.units import format_budget, format_cost, format_count


def model_card(
    model: Network,
    metrics: dict[str, Any] | None = None,
    cost: dict[str, float] | None = None,
    predicted_score: float | None = None,
    budgets: dict[str, float] | None = None,
    title: str = "PONAS specialized network",
) -> str:
    """A short Markdown model card: architecture, costs, predicted score, measured accuracy."""
    space = model.space
    metrics = dict(metrics or {})
    computed = network_cost(space, model.choices)
    cost = {"macs": computed.macs, "params": computed.params, **(cost or {})}
    lines = [
        f"# {title}",
        "",
        f"Searched with PONAS in the `{space.name}` space ({space.num_layers} layers, "
        f"{len(space.candidates)} candidates per layer); input {space.in_channels}x"
        f"{space.input_size}x{space.input_size}, {space.num_classes} classes.",
        "",
        "## Cost",
        "",
        f"- MACs: {format_count(cost['macs'])}",
        f"- Parameters: {format_count(cost['params'])}",
    ]
    if "latency_ms" in cost:
        lines.append(f"- Predicted latency: {format_cost('latency_ms', cost['latency_ms'])}")
    if budgets:
        shown = ", ".join(f"{k} <= {format_budget(v)}" for k, v in budgets.items())
        lines.append(f"- Budgets: {shown}")
    lines += ["", "## Accuracy", ""]
    if predicted_score is not None:
        lines.append(
            f"- Predicted score (sum of table accuracies over layers): {predicted_score:.4f}"
        )
    for key, label in (("top1", "Top-1"), ("top5", "Top-5")):
        if key in metrics:
            lines.append(f"- Measured {label} on the test split: {100 * metrics[key]:.2f}%")
    if "finetune_epochs" in metrics:
        lines.append(
            f"- Fine-tuned for {metrics['finetune_epochs']} epochs after inheriting weights"
        )
    lines += [
        "",
        "## Architecture",
        "",
        "| layer | block | in | out | stride |",
        "|---:|---|---:|---:|---:|",
    ]
    for layer, name in zip(space.layers, model.choices, strict=True):
        lines.append(
            f"| {layer.index} | `{name}` | {layer.in_channels} | {layer.out_channels} | {layer.stride} |"
        )
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Resize to {space.input_size}x{space.input_size}, scale to [0, 1], normalize with "
        f"mean {list(space.mean)} and std {list(space.std)}.",
        "",
    ]
    return "\n".join(lines)
