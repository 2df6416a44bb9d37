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
# INT8 activations per row) while it fine-tunes.
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
quantize_(model, QATConfig(step="convert"))  # the fake quantizers out: plain Linear layers again
model.eval()  # float weights that quantize well: export to ONNX and quantize as before
'''


def propose(diagnosis: Mapping[str, Any], reference: Runner, candidate: Runner,
            verdict: Verdict | str, risks: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, str]]:
    """The remedies for a diagnosed comparison: ``[{"title", "why", "code"}]``, most specific
    first (docs/diagnosis.md, "Remedies")."""
    remedies = []
    paths = [str(getattr(runner, "path", None) or "") for runner in (reference, candidate)]
    fmt = diagnosis.get("format", "")
    if not diagnosis.get("skipped") and all(paths) and fmt in ("QDQ", "QOperator", "MatMulNBits"):
        remedies += onnx_remedies(diagnosis, paths[0], paths[1], risks)
    if Verdict(str(verdict)) is Verdict.TRY_QAT:
        remedies.append({"title": "quantization-aware training (torchao)",
                         "why": "the drop is within the try-qat band: fine-tuning with the "
                                "quantization simulated usually wins it back",
                         "code": qat_code()})
    return remedies


def onnx_remedies(diagnosis: Mapping[str, Any], reference: str, candidate: str,
                  risks: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Per-channel weights, 8-bit weights instead of fewer bits, the worst layers left in float:
    each the onnxruntime call on the user's own model, the candidate's other choices kept."""
    fmt, layers = diagnosis["format"], list(diagnosis.get("layers", ()))
    if fmt == "MatMulNBits":
        return [{"title": "8-bit weights instead of the 4-bit (or lower) format",
                 "why": "weights below 8 bits are for large language models; for other models "
                        "INT8 (per channel) keeps the accuracy (add pruning for size)",
                 "code": quantize_code(reference, _beside(candidate, "int8"), per_channel=True)}]
    dynamic = _dynamic(candidate)
    same = {"reduce_range": seven_bit(candidate), "dynamic": dynamic, "fmt": fmt,
            "op_types": None if dynamic else quantized_op_types(candidate)}
    per_tensor = per_tensor_weights(candidate)
    flagged = [layer for layer in layers if layer.get("weight") in per_tensor]
    flagged += [note for note in risks if note.get("kind") == "outlier_weights"
                and note.get("granularity") == "per-tensor"]
    remedies = []
    if flagged:
        first = flagged[0]
        remedies.append({
            "title": "quantize the weights per channel",
            "why": f"weight {first.get('weight') or first.get('tensor')!r} (node "
                   f"{first.get('node')!r}) has one scale for the whole tensor: its largest values "
                   "set the range and the other channels fall onto a few levels; per channel each "
                   "output channel gets its own scale",
            "code": quantize_code(reference, _beside(candidate, "per_channel"), per_channel=True,
                                  **same)})
    worst = worst_nodes(layers)
    if worst and dynamic:
        worst = _as_dynamic_names(reference, worst)
    if worst:
        remedies.append({
            "title": f"leave the worst layer{'s' if len(worst) > 1 else ''} in float",
            "why": "the diagnosis ranks " + ", ".join(repr(each) for each in worst) + " first by "
                   "the error they add; excluded, they run in float and the rest stays quantized",
            "code": quantize_code(reference, _beside(candidate, "exclude"),
                                  per_channel=not per_tensor, nodes=worst, **same)})
    return remedies


def worst_nodes(layers: list[Mapping[str, Any]]) -> list[str]:
    """The worst diagnosed layer and those whose local error is within half of its."""
    if not layers or not layers[0].get("local_error"):
        return []
    top = layers[0]["local_error"]
    return [layer["node"] for layer in layers[:WORST] if layer["local_error"] >= top / 2]


def quantize_code(reference: str, out: str, *, per_channel: bool, nodes: list[str] | None = None,
                  fmt: str = "QDQ", dynamic: bool = False, reduce_range: bool = False,
                  op_types: list[str] | None = None) -> str:
    """The onnxruntime call that quantizes ``reference`` into ``out`` (``reduce_range``: 7-bit
    weights, ``op_types``: the operators quantized, both as the candidate has them)."""
    exclude = f"    nodes_to_exclude={nodes!r},\n" if nodes else ""
    if op_types:
        exclude = f"    op_types_to_quantize={op_types!r},  # as in the candidate\n" + exclude
    if reduce_range:
        exclude = "    reduce_range=True,  # 7-bit weights, as in the candidate\n" + exclude
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
    """The float names of a model's weights quantized with one scale for the whole tensor (a QDQ
    DequantizeLinear of a constant, or a dynamic MatMulInteger's weight, with a one-value scale)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path, load_external_data=False).graph
    sizes = {each.name: int(numpy_helper.to_array(each).size) for each in graph.initializer}
    found = set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in sizes and \
                sizes.get(node.input[1]) == 1 and "bias" not in node.input[0]:
            found.add(node.input[0])
        if node.op_type in ("MatMulInteger", "ConvInteger") and node.input[1] in sizes and \
                sizes.get(node.input[1].removesuffix("_quantized") + "_scale") == 1:
            found.add(node.input[1])
    return {name.removesuffix("_quantized").removesuffix("_Transposed") for name in found}


def seven_bit(path: str) -> bool:
    """Whether the candidate's INT8 weights all lie in [-64, 64]: quantized with
    ``reduce_range=True``, which a remedy keeps (the same sums with and without VNNI)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(each) for each in
               onnx.load(path, load_external_data=False).graph.initializer
               if each.data_type == onnx.TensorProto.INT8 and "bias" not in each.name]
    return bool(weights) and all(np.abs(each.astype(np.int16)).max(initial=0) <= 64
                                 for each in weights)


def quantized_op_types(path: str) -> list[str]:
    """The operator types a QDQ model quantized: nodes with a dequantized weight, or whose
    inputs are all dequantized and whose output is quantized again (a pooling, a reshape)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    constant = {each.name for each in graph.initializer}
    made = {name: node for node in graph.node for name in node.output}
    read = {name for node in graph.node if node.op_type == "QuantizeLinear" for name in node.input}
    found = set()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        sources = [made.get(name) for name in node.input if name and name not in constant]
        dequantized = [each is not None and each.op_type == "DequantizeLinear" for each in sources]
        weights = any(each is not None and each.op_type == "DequantizeLinear"
                      and each.input[0] in constant for each in map(made.get, node.input))
        if weights or (dequantized and all(dequantized) and node.output[0] in read):
            found.add(node.op_type)
    return sorted(found)


def _as_dynamic_names(reference: str, nodes: list[str]) -> list[str]:
    """``quantize_dynamic`` turns each Gemm into a MatMul named ``<gemm>_MatMul`` (and an Add)
    before it applies ``nodes_to_exclude``: a Gemm is excluded by that name."""
    import onnx

    gemms = {node.name for node in onnx.load(reference, load_external_data=False).graph.node
             if node.op_type == "Gemm"}
    return [f"{name}_MatMul" if name in gemms else name for name in nodes]


def _dynamic(path: str) -> bool:
    import onnx

    return any(node.op_type == "DynamicQuantizeLinear"
               for node in onnx.load(path, load_external_data=False).graph.node)


def _beside(path: Any, label: str) -> str:
    path = Path(str(path))
    return str(path.with_name(f"{path.stem}_{label}.onnx"))
