"""Remedies that run: code a user can paste, written for their own model paths and the diagnosed
layers (docs/diagnosis.md, "Remedies").

- per-channel INT8 when a weight was quantized per-tensor (one scale for the whole tensor: an
  outlier stretches the range and crushes every other channel onto a few levels);
- INT8 instead of a 4-bit (or lower) weight format where 8-bit weights were not tried;
- ``nodes_to_exclude=[...]``: the worst diagnosed layers left in float;
- for ``try-qat``, quantization-aware training with torchao (``torch.ao.quantization`` is
  deprecated), then the same export and quantization as before.

Each snippet is executed by the test suite on a real model (tests/diagnosis/test_remedies.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_quantguard.runners import Runner
from pytest_quantguard.verdict import Verdict

__all__ = ["WORST", "propose", "qat_code", "quantize_code"]

WORST = 3  # layers named in nodes_to_exclude: the worst, and those within half of its error

QAT = '''import torch
from torchao.quantization import quantize_
from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

# model: your float torch.nn.Module; train_loader: (inputs, labels) batches of TRAINING data;
# loss_fn: its training loss. Fake-quantizes the Linear layers (INT8 weights per channel,
# INT8 activations per token) while it fine-tunes.
weights = IntxFakeQuantizeConfig(torch.int8, "per_channel")
activations = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
quantize_(model, QATConfig(activation_config=activations, weight_config=weights, step="prepare"))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)  # a small rate: fine-tuning
model.train()
for epoch in range(epochs):
    for inputs, labels in train_loader:
        optimizer.zero_grad()
        loss_fn(model(inputs), labels).backward()
        optimizer.step()
quantize_(model, QATConfig(activation_config=activations, weight_config=weights, step="convert"))
model.eval()  # float weights that quantize well: export to ONNX and quantize as before
'''


def propose(diagnosis: Mapping[str, Any], reference: Runner, candidate: Runner,
            verdict: Verdict | str, risks: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, str]]:
    """The remedies for a diagnosed comparison: ``[{"title", "why", "code"}]``, most specific
    first (docs/diagnosis.md, "Remedies")."""
    remedies = []
    reference_path = getattr(reference, "path", None)
    candidate_path = getattr(candidate, "path", None)
    layers = list(diagnosis.get("layers", ()))
    onnx_pair = not diagnosis.get("skipped") and reference_path and candidate_path
    if onnx_pair:
        fmt = diagnosis.get("format", "")
        per_tensor = per_tensor_weights(str(candidate_path)) if fmt == "QDQ" else set()
        flagged = [layer for layer in layers if layer.get("weight") in per_tensor
                   or "outlier_weights" in layer.get("risks", ())]
        flagged += [note for note in risks if note.get("kind") == "outlier_weights"
                    and note.get("granularity") == "per-tensor"]
        if flagged and fmt == "QDQ":
            first = flagged[0]
            remedies.append({
                "title": "quantize the weights per channel",
                "why": f"weight {first.get('weight') or first.get('tensor')!r} (node "
                       f"{first.get('node')!r}) has one scale for the whole tensor: its largest "
                       "values set the range and the other channels fall onto a few levels; per "
                       "channel each output channel gets its own scale",
                "code": quantize_code(str(reference_path), _beside(candidate_path, "per_channel"),
                                      per_channel=True)})
        if fmt == "MatMulNBits":
            remedies.append({
                "title": "8-bit weights instead of the 4-bit (or lower) format",
                "why": "weights below 8 bits are for large language models; for other models "
                       "INT8 (per channel) keeps the accuracy (add pruning for size)",
                "code": quantize_code(str(reference_path), _beside(candidate_path, "int8"),
                                      per_channel=True)})
        worst = worst_nodes(layers)
        if worst and fmt in ("QDQ", "QOperator"):
            remedies.append({
                "title": f"leave the worst layer{'s' if len(worst) > 1 else ''} in float",
                "why": "the diagnosis ranks " + ", ".join(repr(each) for each in worst) + " first "
                       "by the error they add; excluded, they run in float and the rest stays "
                       "quantized",
                "code": quantize_code(str(reference_path), _beside(candidate_path, "exclude"),
                                      per_channel=not per_tensor, nodes=worst,
                                      fmt=fmt, dynamic=_dynamic(str(candidate_path)))})
    if Verdict(str(verdict)) is Verdict.TRY_QAT:
        remedies.append({"title": "quantization-aware training (torchao)",
                         "why": "the drop is within the try-qat band: fine-tuning with the "
                                "quantization simulated usually wins it back",
                         "code": qat_code()})
    return remedies


def worst_nodes(layers: list[Mapping[str, Any]]) -> list[str]:
    """The worst diagnosed layer and those whose local error is within half of its."""
    if not layers or not layers[0].get("local_error"):
        return []
    top = layers[0]["local_error"]
    return [layer["node"] for layer in layers[:WORST] if layer["local_error"] >= top / 2]


def quantize_code(reference: str, out: str, *, per_channel: bool, nodes: list[str] | None = None,
                  fmt: str = "QDQ", dynamic: bool = False) -> str:
    """The onnxruntime call that quantizes ``reference`` into ``out``."""
    exclude = f"    nodes_to_exclude={nodes!r},\n" if nodes else ""
    if dynamic:
        return ("from onnxruntime.quantization import QuantType, quantize_dynamic\n\n"
                f"quantize_dynamic(\n    {reference!r},\n    {out!r},\n"
                f"    weight_type=QuantType.QInt8,\n    per_channel={per_channel},\n{exclude})\n")
    return ("from onnxruntime.quantization import QuantFormat, QuantType, quantize_static\n\n"
            "# calibration_reader: your onnxruntime CalibrationDataReader over TRAINING inputs\n"
            f"quantize_static(\n    {reference!r},\n    {out!r},\n    calibration_reader,\n"
            f"    quant_format=QuantFormat.{'QOperator' if fmt == 'QOperator' else 'QDQ'},\n"
            f"    per_channel={per_channel},\n"
            "    activation_type=QuantType.QUInt8,\n    weight_type=QuantType.QInt8,\n"
            f"{exclude})\n")


def qat_code() -> str:
    """The torchao quantization-aware training snippet (``model``, ``train_loader``, ``loss_fn``
    and ``epochs`` are the user's)."""
    return QAT


def per_tensor_weights(path: str) -> set[str]:
    """The float names of a QDQ model's weights quantized with one scale for the whole tensor."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path, load_external_data=False).graph
    sizes = {each.name: int(numpy_helper.to_array(each).size) for each in graph.initializer
             if each.name.endswith("_scale")}
    constant = {each.name for each in graph.initializer}
    return {node.input[0].removesuffix("_quantized") for node in graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in constant
            and sizes.get(node.input[1]) == 1 and "bias" not in node.input[0]
            and len(node.input[0]) > 0}


def _dynamic(path: str) -> bool:
    import onnx

    return any(node.op_type == "DynamicQuantizeLinear"
               for node in onnx.load(path, load_external_data=False).graph.node)


def _beside(path: Any, label: str) -> str:
    path = Path(str(path))
    return str(path.with_name(f"{path.stem}_{label}.onnx"))
