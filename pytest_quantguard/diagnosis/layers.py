"""The per-layer diagnosis of a failing ONNX comparison: which quantized layers lose the accuracy
(docs/diagnosis.md).

``attach_diagnosis`` is the pipe's hook: on a non-ship verdict (``--quant-diagnose on-failure``,
the default) or always, it runs both models on a small seeded sample of the validation set with
every intermediate tensor exposed, matches the candidate's quantized layers to the reference's
tensors (``graphs.py``), ranks the layers by the error each ADDS over its inputs, and puts the top
five under ``details["diagnosis"]`` with the remedies (``remedies.py``) under
``details["remedies"]``. A diagnosis never fails a comparison: what cannot be diagnosed is
``skipped`` with the reason.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from pytest_quantguard.data import ValidationSet
from pytest_quantguard.diagnosis.graphs import (
    Graph,
    dequantized_weight,
    float_weight_name,
    is_layer,
    quant_format,
    relative_error,
    stripped,
)
from pytest_quantguard.record import Comparison
from pytest_quantguard.runners import Runner
from pytest_quantguard.settings import Execution

__all__ = ["MEASURE", "SAMPLES", "TOP", "attach_diagnosis", "diagnose", "wanted"]

# validation samples the diagnosis runs: a 32nd of the set, at least 16 and at most 64 (seeded;
# docs/diagnosis.md, "What is run")
SAMPLES, MIN_SAMPLES, SHARE = 64, 16, 32
CHUNK = 16  # samples per run: the sums are accumulated, so memory is a chunk's tensors
TOP = 5
# what quantizers append to a node's name: QOperator "_quant", dynamic "<gemm>_MatMul_quant",
# MatMulNBits "_Q4", "<gemm>_MatMul_Q4"
NODE_SUFFIXES = ("_MatMul_quant", "_quant", "_MatMul_Q2", "_MatMul_Q4", "_MatMul_Q8", "_Q2", "_Q4",
                 "_Q8", "_MatMul")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # QDQ ops whose input 1 is a weight
MEASURE = ("local relative error: each quantized layer run on the reference's values of its "
           "inputs (quantized as the candidate quantizes them), its output against the "
           "reference's: sqrt of the mean over channels of ||candidate - reference||^2 / "
           "||reference - its mean||^2, on the same samples; the error the layer itself adds, not "
           "the error accumulated upstream")


def wanted(mode: str, comparison: Comparison) -> bool:
    """Whether ``--quant-diagnose`` asks for a diagnosis of this comparison."""
    return mode == "always" or (mode == "on-failure" and comparison.verdict.failed)


def attach_diagnosis(comparison: Comparison, reference: Runner, candidate: Runner,
                     dataset: ValidationSet, execution: Execution,
                     risks: list[dict]) -> Comparison:
    """``comparison`` with ``details["diagnosis"]`` and ``details["remedies"]`` when
    ``execution.diagnose`` asks for them (docs/diagnosis.md, "When it runs"); else unchanged."""
    if not wanted(execution.diagnose, comparison):
        return comparison
    from pytest_quantguard.diagnosis.remedies import propose

    started = time.perf_counter()
    try:
        diagnosis = diagnose(reference, candidate, dataset, seed=execution.seed, risks=risks)
    except ImportError as error:  # onnx is not a dependency of onnxruntime
        diagnosis = empty(skipped=f"the per-layer diagnosis needs the {error.name or 'onnx'} "
                                  f"package: pip install {error.name or 'onnx'}",
                          seed=execution.seed)
    except Exception as error:  # never out of the hook: the comparison itself stands
        diagnosis = empty(skipped=f"the diagnosis failed: {type(error).__name__}: "
                                  f"{str(error).splitlines()[0] if str(error) else ''}".rstrip(": "),
                          seed=execution.seed)
    try:
        remedies = propose(diagnosis, reference, candidate, comparison.verdict, risks)
    except Exception as error:  # a remedy that cannot be written is left out, and said so
        remedies = [{"title": "no remedy could be written", "why": f"{type(error).__name__}: "
                     f"{error}", "code": ""}]
    diagnosis["seconds"] = round(time.perf_counter() - started, 3)
    details = {**comparison.details, "diagnosis": diagnosis, "remedies": remedies}
    return dataclasses.replace(comparison, details=details)


def empty(*, skipped: str | None = None, fmt: str = "", samples: int = 0, seed: int = 0,
          layers: list[dict] | None = None, not_matched: list[str] | None = None) -> dict[str, Any]:
    """``details["diagnosis"]`` (docs/diagnosis.md, "When it runs", shows it)."""
    return {"measure": MEASURE, "format": fmt, "samples": samples, "seed": seed, "seconds": 0.0,
            "layers": layers or [], "not_matched": not_matched or [], "skipped": skipped}


def onnx_path(runner: Any) -> str | None:
    path = getattr(runner, "path", None)
    return str(path) if path and str(path).lower().endswith(".onnx") and \
        hasattr(runner, "session") else None


def diagnose(reference: Runner, candidate: Runner, dataset: ValidationSet, *, seed: int = 0,
             risks: Iterable[Mapping[str, Any]] = (), samples: int = SAMPLES) -> dict[str, Any]:
    """The diagnosis of one ONNX pair on ``samples`` seeded samples of ``dataset``."""
    paths = [onnx_path(runner) for runner in (reference, candidate)]
    if None in paths:
        which = " and ".join(role for role, path in zip(("reference", "candidate"), paths,
                                                          strict=True) if path is None)
        return empty(seed=seed, skipped=f"the {which} is not an ONNX model file (a torch model, "
                     "a callable or results): the per-layer diagnosis reads ONNX graphs")
    import onnx

    models = [onnx.load(path) for path in paths]
    reference_graph, candidate_graph = Graph.of(models[0]), Graph.of(models[1])
    fmt = quant_format(candidate_graph.nodes)
    if fmt is None:
        return empty(seed=seed, skipped="the candidate has no quantized operator (QDQ, QLinear* / "
                     "*Integer or MatMulNBits): there is no quantized layer to match")
    matched, not_matched = match_layers(reference_graph, candidate_graph, fmt)
    feed = sample(dataset, samples, seed)
    n = len(next(iter(feed.values())))
    errors = tensor_errors(models, candidate_graph, feed, matched)
    weights = weight_errors(paths, candidate_graph, reference_graph, fmt, matched)
    layers = []
    for layer in matched:
        local = errors.get(layer["output"])
        if local is None:
            not_matched.append(f"{layer['candidate_node']} ({layer['op_type']}): its output "
                               f"{layer['output'][1]!r} differs in shape from the reference's "
                               f"{layer['output'][0]!r}")
            continue
        weight, weight_error = weights.get(layer["candidate_node"], (None, None))
        layers.append({"node": layer["node"], "op_type": layer["op_type"],
                       "tensor": layer["output"][0], "local_error": round(local, 6),
                       "weight": weight, "weight_error": weight_error,
                       "risks": touching(risks, layer, weight)})
    layers.sort(key=lambda each: -each["local_error"])
    ranked = [{"rank": rank, **each} for rank, each in enumerate(layers[:TOP], 1)]
    return empty(fmt=fmt, samples=n, seed=seed, layers=ranked, not_matched=not_matched)


def match_layers(reference: Graph, candidate: Graph, fmt: str) -> tuple[list[dict], list[str]]:
    """Each quantized layer of the candidate with its (reference name, candidate tensor) output
    and activation inputs; the layers that cannot be matched, each with the reason."""
    known = set(reference.producers) | {name for node in reference.nodes for name in node.input}
    known -= set(reference.initializers)
    reference_nodes = {node.name for node in reference.nodes}
    matched, not_matched = [], []
    for node in candidate.nodes:
        if not is_layer(node, candidate.producers, fmt):
            continue
        output = candidate.trace_output(node.output[0], known)
        inputs = [(candidate.trace_input(name, known), name) for name in node.input
                  if name and not _is_constant(candidate, name)]
        if output[0] is None or any(name is None for name, _ in inputs):
            missing = output[1] if output[0] is None else next(t for n, t in inputs if n is None)
            not_matched.append(f"{node.name or node.output[0]} ({node.op_type}): tensor {missing!r} "
                               "has no counterpart of the same name in the reference")
            continue
        own = stripped(node.name, reference_nodes, NODE_SUFFIXES)
        output = (_past_activation(reference, candidate, output[0]), *output[1:])
        anchors = [(reference_name, *candidate.entry(node, list(node.input).index(tensor)))
                   for reference_name, tensor in inputs]
        matched.append({"candidate_node": node.name, "node": own or node.name,
                        "op_type": node.op_type, "output": output, "inputs": inputs,
                        "anchors": anchors})
    return matched, not_matched


def _past_activation(reference: Graph, candidate: Graph, name: str) -> str:
    """The reference's ReLU output where the candidate folded that ReLU into its output's
    quantization (a QOperator output whose range starts at 0 has no Relu node after it)."""
    following = reference.consumers.get(name, [])
    if len(following) == 1 and following[0].op_type in ("Relu", "Clip") and \
            following[0].output[0] not in candidate.producers and \
            not any(node.op_type == following[0].op_type and name in node.input
                    for node in candidate.consumers.get(name, [])):
        return following[0].output[0]
    return name


def _is_constant(graph: Graph, name: str) -> bool:
    """A weight, bias, scale or zero point: an initializer, a DequantizeLinear of one, or the
    scale / zero point a DynamicQuantizeLinear computed."""
    if name in graph.initializers or name.endswith(("_scale", "_zero_point")):
        return True
    node = graph.producers.get(name)
    return node is not None and node.op_type in ("DequantizeLinear", "Constant") and (
        node.op_type == "Constant" or node.input[0] in graph.initializers)


def sample(dataset: ValidationSet, samples: int, seed: int) -> dict[str, np.ndarray]:
    """At most ``samples`` samples of the set (fewer for a smaller set: a 32nd of it, at least
    16), drawn with ``seed``, in their order in the set."""
    n = min(samples, max(MIN_SAMPLES, dataset.n // SHARE), dataset.n)
    indices = np.sort(np.random.default_rng(seed).choice(dataset.n, size=n, replace=False))
    subset = dataset.subset(indices) if n < dataset.n else dataset
    return dict(next(iter(subset.batches(n))).inputs)


def tensor_errors(models: list[Any], candidate: Graph, feed: dict[str, np.ndarray],
                  matched: list[dict], *, anchored: bool = True) -> dict[tuple, float | None]:
    """The error e (``channel_error``) of every layer's output, keyed (reference name, candidate
    tensor, its QuantizeLinear), the sums accumulated over chunks of the sample. ``anchored``:
    each layer reads the reference's values of its inputs (quantized as the candidate quantizes
    them), so e is the error the layer itself adds; else the candidate runs as it is (the
    cumulative error)."""
    pairs = {layer["output"] for layer in matched}
    anchors = {(name, entry) for layer in matched for name, entry, _, _ in layer["anchors"]} \
        if anchored else set()
    wanted = {pair[0] for pair in pairs} | {name for name, _ in anchors}
    sessions = [_session(models[0], wanted),
                _session(anchored_model(models[1], candidate, matched) if anchored else models[1],
                         {pair[1] for pair in pairs}, as_written=True)]
    sums: dict[tuple, list[Any]] = {pair: [0.0, 0.0, 0.0, 0] for pair in pairs}
    shapes_differ: set[tuple] = set()
    n = len(next(iter(feed.values())))
    for start in range(0, n, CHUNK):
        chunk = {name: array[start:start + CHUNK] for name, array in feed.items()}
        reference = _run(sessions[0], chunk)
        extra = {ANCHOR + entry: _anchor(candidate, entry, reference[name])
                 for name, entry in anchors}
        values = _run(sessions[1], chunk, extra)
        for pair in pairs:
            expected = reference.get(pair[0])
            found = candidate.float_value(pair[1], values)
            if found is not None and pair[2]:
                found = candidate.fake_quantized(found, pair[2])
            if expected is None or found is None or expected.shape != found.shape:
                shapes_differ.add(pair)
                continue
            axes = _all_but_channel(expected.ndim)
            expected = expected.astype(np.float32, copy=False)
            difference = found - expected
            sums[pair][0] += np.square(difference).sum(axis=axes,
                                                                                 dtype=np.float64)
            sums[pair][1] += np.square(expected).sum(axis=axes, dtype=np.float64)
            sums[pair][2] += expected.sum(axis=axes, dtype=np.float64)
            sums[pair][3] += expected.size // max(np.size(sums[pair][2]), 1)
    return {pair: None if pair in shapes_differ else channel_error(*sums[pair]) for pair in pairs}


ANCHOR = "quantguard_anchor/"


def anchored_model(model: Any, graph: Graph, matched: list[dict]) -> Any:
    """A copy of the candidate whose layers read their inputs from new graph inputs
    (``quantguard_anchor/<tensor>``), fed with the reference's values."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    position = {id(node): index for index, node in enumerate(graph.nodes)}
    added = set()
    for layer in matched:
        for _, entry, reader, index in layer["anchors"]:
            copy.graph.node[position[id(reader)]].input[index] = ANCHOR + entry
            if entry not in added:
                added.add(entry)
                elem = onnx.TensorProto.FLOAT
                zero = graph.scale_of(entry, {})[1]
                if entry not in graph.producers or zero is not None:
                    elem = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype) if zero is not None \
                        else elem
                copy.graph.input.append(onnx.helper.make_tensor_value_info(ANCHOR + entry, elem, None))
    return copy


def _anchor(graph: Graph, entry: str, value: np.ndarray) -> np.ndarray:
    """The reference's value of a tensor, as the candidate holds it there: integers quantized
    with the candidate's scale and zero point."""
    scale, zero = graph.scale_of(entry, {})
    if zero is None or np.issubdtype(zero.dtype, np.floating):
        return value.astype(np.float32)
    info = np.iinfo(zero.dtype)
    levels = np.round(value / scale) + zero.astype(np.float64)
    return np.clip(levels, info.min, info.max).astype(zero.dtype)


def _all_but_channel(ndim: int) -> tuple[int, ...]:
    """The axes summed over: all but the channel axis (1 for [N, C, ...] and [N, C], the last for
    [N, sequence, hidden]); a vector has no channels."""
    channel = {0: None, 1: None, 3: 2}.get(ndim, 1)
    return tuple(axis for axis in range(ndim) if axis != channel)


def channel_error(noise: Any, squares: Any, total: Any, count: int) -> float:
    """e = sqrt(mean over channels of ||candidate - reference||^2 / the reference's variance):
    each channel relative to its own spread, so that a layer that shifts or rescales channels (a
    BatchNormalization, a LayerNorm, a bias) neither hides nor adds error; channels the reference
    leaves (nearly) constant are not counted (docs/diagnosis.md, "The measure")."""
    noise = np.atleast_1d(noise)
    signal = np.atleast_1d(squares) - np.square(np.atleast_1d(total)) / max(count, 1)
    alive = signal > 1e-9 * max(float(signal.max()), np.finfo(np.float32).tiny)
    if not alive.any():
        return 0.0
    # a channel nearly constant on the sample is measured against 1 % of the mean spread
    floor = 0.01 * float(signal[alive].mean())
    return float(np.sqrt(np.mean(noise[alive] / np.maximum(signal[alive], floor))))


def _session(model: Any, names: set[str] | None, *, as_written: bool = False) -> Any:
    """An onnxruntime session on ``model`` that outputs ``names`` (None: every node output).
    ``as_written``: no graph optimization, so that a QDQ graph computes what it says (the
    dequantized values in float, the same on every CPU) rather than the integer kernels a fusion
    picks per CPU; otherwise optimized as usual: onnxruntime keeps every tensor asked for
    (docs/diagnosis.md, "What is run")."""
    import onnx
    import onnxruntime

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    wanted_names = [name for node in model.graph.node for name in node.output
                    if name and (names is None or name in names)]
    del augmented.graph.output[:]
    for name in dict.fromkeys(wanted_names):
        augmented.graph.output.append(onnx.ValueInfoProto(name=name))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if as_written:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(augmented.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def _run(session: Any, chunk: dict[str, np.ndarray],
         extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    from pytest_quantguard.runners.onnx import ONNX_DTYPES

    specs = [spec for spec in session.get_inputs() if not spec.name.startswith(ANCHOR)]
    if all(spec.name in chunk for spec in specs):
        pairs = [(spec, chunk[spec.name]) for spec in specs]
    else:
        pairs = [(specs[0], next(iter(chunk.values())))]
    feed = {spec.name: np.ascontiguousarray(array.astype(ONNX_DTYPES.get(spec.type, array.dtype)))
            for spec, array in pairs}
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(names, {**feed, **(extra or {})}), strict=True))
    values.update(feed)  # a graph input read as a layer's input
    return values


def weight_errors(paths: list[str], candidate: Graph, reference: Graph, fmt: str,
                  matched: list[dict]) -> dict[str, tuple[str, float | None]]:
    """Candidate node -> (the reference's weight name, relative error of the dequantized weight)."""
    found = {}
    if fmt == "QDQ":
        from pytest_quantguard.diagnosis.graphs import quiet_weight_matching

        matching = quiet_weight_matching(paths[0], paths[1])
        for layer in matched:
            node = next(each for each in candidate.nodes if each.name == layer["candidate_node"])
            for index, name in enumerate(node.input):
                producer = candidate.producers.get(name)
                if node.op_type not in WEIGHTED or index == 2 or producer is None or \
                        producer.op_type != "DequantizeLinear":
                    continue
                weight = float_weight_name(producer.input[0], matching)
                if weight is not None:
                    pair = matching[weight]
                    found[node.name] = (weight, _rounded(relative_error(pair["float"],
                                                                       pair["dequantized"])))
                    break
        return found
    for layer in matched:
        node = next(each for each in candidate.nodes if each.name == layer["candidate_node"])
        dequantized = dequantized_weight(node, candidate)
        if dequantized is None:
            continue
        weight = float_weight_name(dequantized[0], reference.initializers)
        if weight is not None:
            # both as the MatMul multiplies: MatMulNBits stores it [N, K]; a "_Transposed" weight
            # is a Gemm's [out, in] turned into a MatMul's [in, out]
            original, values = reference.initializers[weight], dequantized[1]
            if node.op_type == "MatMulNBits":
                values = values.T
            if "_Transposed" in dequantized[0] and original.ndim == 2:
                original = original.T
            found[node.name] = (weight, _rounded(relative_error(original, values)))
    return found


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def touching(risks: Iterable[Mapping[str, Any]], layer: Mapping[str, Any],
             weight: str | None) -> list[str]:
    """The kinds of the risk notes that name this layer's weight, tensor or node."""
    names = {layer["node"], layer["candidate_node"], layer["output"][0], weight} - {None}
    return sorted({note["kind"] for note in risks
                   if note.get("tensor") in names or note.get("node") in names})
