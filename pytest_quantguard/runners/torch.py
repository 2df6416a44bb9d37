"""PyTorch models: ``nn.Module`` objects, TorchScript files, ``torch.export`` programs (``.pt2``) and
state dicts loaded into a module that the user's factory builds.

Nothing is ever unpickled: a model file is read only as TorchScript, as a ``torch.export`` archive
checked beforehand to hold no pickled or compiled payload, or with ``torch.load(weights_only=True)``.
Every call runs in eval mode under ``torch.no_grad()``; torch is imported only when a runner is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.batching import Footprint, SampleShapes
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.runners import file_sha256, first_line, run_in_fixed_batches
from pytest_quantguard.runners.torch_load import (
    import_torch,
    load_model_file,
    load_state_dict_module,
    torch_device,
)

DEFAULT_DEVICE = "cpu"
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
# Kernels of dynamically quantized graphs (exported programs, traced modules).
DYNAMIC_KERNELS = ("linear_dynamic", "choose_qparams", "quantize_per_tensor_dynamic")


class TorchRunner:
    """Runs a torch model on a batch: eval mode, ``torch.no_grad()``, inputs as tensors on ``device``.

    One data input is passed positionally; several are matched to ``forward``'s parameters by name
    (positionally, in the data's order, when ``forward`` has none of those names). Floating inputs
    are cast to the model's parameter dtype (so FP16/BF16 models get FP16/BF16 inputs); outputs come
    back as numpy arrays, FP16/BF16 as float32.
    """

    notes: tuple[str, ...] = ()  # what a verdict on this model does not cover (see Runner)

    def __init__(self, model: Any, *, device: str = DEFAULT_DEVICE, description: str | None = None,
                 path: str | None = None, sha256: str | None = None, nbytes: int | None = None):
        self.description = description or _class_name(model)
        torch = import_torch(f"the PyTorch model {self.description}")
        self.device = torch_device(torch, device, self.description)
        self.exported = _is_exported_program(model)
        self.path = path
        if sha256 is None:
            sha256, nbytes = _model_digest(torch, model)
        self.sha256, self.nbytes = sha256, nbytes
        if self.exported:
            self.fixed_batch = _static_batch(model)
            self.module = _exported_module(torch, model, self.device)
            self.parameters = _exported_parameters(model, self.module)
        else:
            _check_module_device(model, self.device, self.description)
            self.fixed_batch = None
            self.module = model
            self.parameters = _forward_parameters(model)
        self.float_dtype = _float_dtype(torch, self.module)
        self._torch = torch
        # said as a dynamic_quant risk note (docs/risks.md)
        self.dynamic_quantization = _dynamically_quantized(self.module)

    def memory_per_sample(self, shapes: SampleShapes) -> Footprint:
        """Outputs and activations per sample from one forward on a zero sample of ``shapes``,
        counting tensor bytes (never the process's memory): the outputs' bytes, and the three
        largest submodule outputs as the activations alive at once (docs/models.md, "Batch size")."""
        seen: list[int] = []

        def count(_module: Any, _inputs: Any, output: Any) -> None:
            seen.append(_tensor_bytes(self._torch, output))

        hooks = [module.register_forward_hook(count) for module in self.module.modules()
                 if module is not self.module and not _is_script_module(module)]
        try:
            outputs = self({name: np.zeros((1, *shape), dtype) for name, (shape, dtype)
                            in shapes.items()})
        finally:
            for hook in hooks:
                hook.remove()
        size = sum(int(value.nbytes) for value in outputs.values())
        return Footprint(size, sum(sorted(seen)[-3:]) if seen else 2 * size)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, device: str = DEFAULT_DEVICE,
                  description: str | None = None) -> TorchRunner:
        """A TorchScript file or a ``torch.export`` program, found by the file's content.

        A state dict is refused here (it needs a factory: ``from_state_dict``), and so is any
        other pickle, which is never loaded.
        """
        path = Path(path)
        description = description or str(path)
        torch = import_torch(f"the PyTorch model {description}")
        device = str(torch_device(torch, device, description))
        model = load_model_file(torch, path, device)
        return cls(model, device=device, description=description, path=str(path),
                   sha256=file_sha256(path), nbytes=path.stat().st_size)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_in_fixed_batches(self._forward, inputs, self.fixed_batch)

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensors = {name: self._tensor(array) for name, array in inputs.items()}
        args, kwargs = self._arrange(tensors)
        with _inference(torch, self.module, switch_to_eval=not self.exported):
            try:
                result = self.module(*args, **kwargs)
            except Exception as error:
                shapes = {name: list(array.shape) for name, array in inputs.items()}
                raise QuantGuardError(
                    f"{self.description}: forward failed on a batch of {shapes} "
                    f"({type(error).__name__}: {first_line(error)}); check that the data fits this "
                    "model's inputs") from error
        outputs: dict[str, np.ndarray] = {}
        _collect(torch, result, "", outputs, self.description)
        if not outputs:
            raise QuantGuardError(f"{self.description}: forward returned no tensor "
                                  f"({type(result).__name__}); return a tensor, a tuple or a dict "
                                  "of tensors")
        return outputs

    def _tensor(self, array: np.ndarray) -> Any:
        dtype = self.float_dtype if np.issubdtype(array.dtype, np.floating) else None
        # torch.tensor copies: read-only (memory-mapped) arrays are fine and never aliased
        return self._torch.tensor(array, dtype=dtype, device=self.device)

    def _arrange(self, tensors: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for ``forward`` (the class docstring says how)."""
        names = list(tensors)
        if len(names) == 1 or self.parameters is None:
            return list(tensors.values()), {}
        named = [p.name for p in self.parameters if p.kind not in VARIADIC]
        takes = {p.kind for p in self.parameters}
        unknown = [name for name in names if name not in named]
        if len(unknown) == len(names) and inspect.Parameter.VAR_KEYWORD not in takes:
            positional = [p for p in self.parameters if p.kind in POSITIONAL]
            if len(names) > len(positional) and inspect.Parameter.VAR_POSITIONAL not in takes:
                raise QuantGuardError(
                    f"{self.description}: the data has {len(names)} inputs {names} but forward takes "
                    f"{named}; name the data arrays after forward's parameters")
            return list(tensors.values()), {}
        if unknown and inspect.Parameter.VAR_KEYWORD not in takes:
            raise QuantGuardError(
                f"{self.description}: the data's inputs {names} do not match forward's parameters "
                f"{named} (no parameter for {unknown}); name the data arrays after forward's "
                "parameters, or name none of them to pass them in order")
        missing = [p.name for p in self.parameters if p.kind not in VARIADIC
                   and p.default is inspect.Parameter.empty and p.name not in tensors]
        if missing:
            raise QuantGuardError(f"{self.description}: forward needs {missing}, which the data "
                                  f"({names}) does not have; add them to the data")
        # leading positional parameters by position (exported programs and positional-only
        # parameters need that), every later one by name
        args: list[Any] = []
        kwargs = {name: tensors[name] for name in unknown}
        for index, parameter in enumerate(self.parameters):
            if parameter.name not in tensors or parameter.kind in VARIADIC:
                continue
            if parameter.kind in POSITIONAL and len(args) == index:
                args.append(tensors[parameter.name])
            elif parameter.kind == inspect.Parameter.POSITIONAL_ONLY:
                raise QuantGuardError(f"{self.description}: forward's parameter {parameter.name!r} "
                                      "is positional-only and comes after one that the data does "
                                      "not have; give the data every input before it")
            else:
                kwargs[parameter.name] = tensors[parameter.name]
        return args, kwargs


def from_state_dict(path: str | os.PathLike[str], factory: Callable[[], Any], *,
                    device: str = DEFAULT_DEVICE) -> TorchRunner:
    """A runner for weights saved with ``torch.save(model.state_dict(), path)``.

    ``factory()`` builds the module (e.g. the model class itself, or ``lambda: Net(hidden=64)``); the
    file is read with ``torch.load(weights_only=True)`` and loaded with ``strict=True``. The runner's
    identity is the file's: its ``path``, ``sha256`` and size.
    """
    path = Path(path)
    torch = import_torch(f"the PyTorch state dict {path}")
    device = str(torch_device(torch, device, str(path)))
    module = load_state_dict_module(torch, path, factory, device)
    return TorchRunner(module, device=device, description=str(path), path=str(path),
                       sha256=file_sha256(path), nbytes=path.stat().st_size)


# --- the module and its identity --------------------------------------------------------------------

def _is_exported_program(model: Any) -> bool:
    return any(cls.__name__ == "ExportedProgram" and cls.__module__ == "torch.export.exported_program"
               for cls in type(model).__mro__)


def _dynamically_quantized(module: Any) -> bool:
    """A module with dynamically quantized submodules (``torch.ao.nn.quantized.dynamic``, found by
    class, or by TorchScript type name), or a graph that calls dynamic quantized kernels."""
    for submodule in module.modules():
        name = type(submodule).__module__
        if _is_script_module(submodule):
            name = submodule._c._type().qualified_name()
        if "nn.quantized.dynamic" in name:
            return True
    code = getattr(module, "code", "")
    return isinstance(code, str) and any(op in code for op in DYNAMIC_KERNELS)


def _tensor_bytes(torch: Any, value: Any) -> int:
    if torch.is_tensor(value):
        return int(value.numel() * value.element_size())
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(torch, item) for item in value)
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(torch, item) for item in value.values())
    return 0


def _is_script_module(model: Any) -> bool:
    return any(cls.__name__ == "ScriptModule" and cls.__module__ == "torch.jit._script"
               for cls in type(model).__mro__)


def _class_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _model_digest(torch: Any, model: Any) -> tuple[str, int]:
    """sha256 over the class qualname and the state dict (names, dtypes, shapes, bytes) in order;
    TorchScript modules add their code, exported programs their graph and constants."""
    digest = hashlib.sha256(_class_name(model).encode())
    if _is_exported_program(model):
        digest.update(model.graph_module.code.encode())
        state = {**model.state_dict, **{f"constant:{k}": v for k, v in model.constants.items()}}
    else:
        if _is_script_module(model):
            digest.update(model.original_name.encode())
            with contextlib.suppress(RuntimeError):  # a module without methods has no code
                digest.update(model.code.encode())
        state = model.state_dict()
    nbytes = sum(_feed(torch, digest, name, value) for name, value in state.items())
    return digest.hexdigest(), nbytes


def _feed(torch: Any, digest: Any, name: str, value: Any) -> int:
    """Add one state-dict entry to ``digest``; returns its tensor bytes."""
    if isinstance(value, (tuple, list)):  # e.g. a quantized Linear's packed (weight, bias)
        return sum(_feed(torch, digest, f"{name}.{i}", item) for i, item in enumerate(value))
    if not torch.is_tensor(value):  # dtypes, ints, extra state
        digest.update(f"{name}={value!r};".encode())
        return 0
    tensor = value.detach()
    digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
    if tensor.is_quantized:
        digest.update(repr(_quantization(tensor)).encode())
        tensor = tensor.int_repr()
    if tensor.is_meta:
        return 0
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    raw = tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    digest.update(raw)
    return int(raw.nbytes)


def _quantization(tensor: Any) -> tuple[Any, ...]:
    scheme = str(tensor.qscheme())
    if "per_channel" in scheme:
        return (scheme, tensor.q_per_channel_axis(), tensor.q_per_channel_scales().tolist(),
                tensor.q_per_channel_zero_points().tolist())
    return scheme, tensor.q_scale(), tensor.q_zero_point()


def _check_module_device(module: Any, device: Any, description: str) -> None:
    """A module passed in memory is never moved (it is the user's): it must already be on ``device``."""
    first = next(iter((*module.parameters(), *module.buffers())), None)
    if first is None:
        return
    where = first.device
    if where.type != device.type or (device.index is not None and where.index != device.index):
        raise QuantGuardError(f"{description}: the module's weights are on {where} but the "
                              f"runner's device is {device}; move the module with "
                              f".to({str(device)!r}) or ask for device {str(where)!r}")


def _exported_module(torch: Any, program: Any, device: Any) -> Any:
    placed = {tensor.device for tensor in program.state_dict.values() if torch.is_tensor(tensor)}
    if placed and placed != {device}:
        program = torch.export.passes.move_to_device_pass(program, device)
    return program.module()


def _float_dtype(torch: Any, module: Any) -> Any:
    """The dtype floating inputs are cast to: the module's first floating parameter (or buffer)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _forward_parameters(module: Any) -> list[inspect.Parameter] | None:
    """``forward``'s parameters, from TorchScript's schema or Python's signature; None if unknown."""
    schema = getattr(module.forward, "schema", None)
    if schema is not None:
        return [inspect.Parameter(arg.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  default=None if arg.has_default_value() else inspect.Parameter.empty)
                for arg in schema.arguments[1:]]
    try:
        return list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None


def _exported_parameters(program: Any, module: Any) -> list[inspect.Parameter] | None:
    """An exported program takes its inputs exactly as exported: positional ones by position, then
    keyword ones by name; the names come from the original ``forward``."""
    try:
        names = list(inspect.signature(module.forward).parameters)
        spec = program.call_spec.in_spec
        args_spec, kwargs_spec = spec.children() if hasattr(spec, "children") else spec.children_specs
        keywords = list(kwargs_spec.context or [])
    except (AttributeError, TypeError, ValueError):
        return None
    positional = [name for name in names if name not in keywords][:args_spec.num_children]
    return ([inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY) for name in positional]
            + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in keywords])


def _static_batch(program: Any) -> int | None:
    """The batch size an exported program was traced with, if its first dimension is static."""
    inputs = set(program.graph_signature.user_inputs)
    sizes = set()
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            if not shape:
                continue
            if not isinstance(shape[0], int):
                return None
            sizes.add(shape[0])
    return sizes.pop() if len(sizes) == 1 else None


@contextlib.contextmanager
def _inference(torch: Any, module: Any, *, switch_to_eval: bool) -> Iterator[None]:
    """Eval mode and no autograd for one call; every submodule's train/eval flag restored after."""
    modes = [(submodule, submodule.training) for submodule in module.modules()] if switch_to_eval else []
    try:
        if switch_to_eval:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        for submodule, training in modes:
            submodule.training = training


# --- outputs ------------------------------------------------------------------------------------------

def _collect(torch: Any, value: Any, name: str, outputs: dict[str, np.ndarray], description: str) -> None:
    """Flatten forward's result into named arrays: ``output_0``.. for tuples, keys for dicts,
    ``logits`` for a Hugging Face-style object; non-tensor leaves (None, caches) are left out."""
    if torch.is_tensor(value):
        outputs[name or "output_0"] = _array(torch, value, name or "output_0", description)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect(torch, item, f"{name}_{key}" if name else str(key), outputs, description)
    elif isinstance(value, (tuple, list)):
        fields = getattr(value, "_fields", None)  # a namedtuple keeps its field names
        for index, item in enumerate(value):
            label = fields[index] if fields else index
            _collect(torch, item, f"{name}_{label}" if name else
                     (str(label) if fields else f"output_{index}"), outputs, description)
    elif hasattr(value, "logits"):
        _collect(torch, value.logits, name or "logits", outputs, description)


def _array(torch: Any, tensor: Any, name: str, description: str) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if tensor.ndim == 0:
        raise QuantGuardError(f"{description}: output {name!r} is a scalar; forward must return "
                              "outputs with one row per sample")
    return tensor.cpu().numpy()
