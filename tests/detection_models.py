"""Real detection models for the tests: ONNX graphs (built with onnx.helper) and a torch module
that emit a fixed table of post-NMS detections for the image whose index is the input, and the
generated set written as .npz detection shards (docs/data.md, "Detection ground truth")."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np


def onnx_detector(path: Path, table: np.ndarray, separate: bool = False) -> Path:
    """An ONNX model: input ``index`` [batch, 1] float -> the rows ``table[index]``; one output
    ``detections`` [batch, max_det, 6], or (``separate``) ``boxes``, ``scores``, ``labels`` and
    ``num_detections`` (the real rows first, padding after)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", ["index"], ["flat"], axis=0),
             helper.make_node("Squeeze", ["flat", "zero"], ["squeezed"]),
             helper.make_node("Cast", ["squeezed"], ["rows"], to=TensorProto.INT64)]
    if separate:
        arrays = {"boxes": table[..., :4], "scores": table[..., 4],
                  "labels": table[..., 5].astype(np.int64),
                  "num_detections": (table[..., 4] > 0).sum(axis=1).astype(np.int64)}
    else:
        arrays = {"detections": table}
    constants = [numpy_helper.from_array(np.asarray(v if v.dtype == np.int64 else
                                                    v.astype(np.float32)), f"{k}_table")
                 for k, v in arrays.items()]
    constants.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    outputs = []
    for name, value in arrays.items():
        nodes.append(helper.make_node("Gather", [f"{name}_table", "rows"], [name], axis=0))
        kind = TensorProto.INT64 if value.dtype == np.int64 else TensorProto.FLOAT
        outputs.append(helper.make_tensor_value_info(name, kind, ["batch", *value.shape[1:]]))
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info(
        "index", TensorProto.FLOAT, ["batch", 1])], outputs, constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_detection_shards(folder: Path, labels: np.ndarray, bounds: list[int]) -> Path:
    """The padded labels as .npz shards (the flat layout), images ``bounds[k]:bounds[k+1]`` in
    shard k, inputs the image index; and a manifest with task = "detection"."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (start, stop) in enumerate(itertools.pairwise(bounds)):
        part = labels[start:stop]
        real = part[..., 4] >= 0
        rows = part[real]
        np.savez(folder / f"shard_{k}.npz", inputs=np.arange(start, stop, dtype=np.float32)[:, None],
                 box_offsets=np.concatenate([[0], np.cumsum(real.sum(axis=1))]),
                 boxes=rows[:, :4], box_classes=rows[:, 4].astype(np.int64),
                 box_crowd=rows[:, 5].astype(np.int64), box_areas=rows[:, 6])
    (folder / "quantguard.toml").write_text('task = "detection"\n')
    return folder
