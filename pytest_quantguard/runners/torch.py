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
import io
import json
import os
import re
import tokenize
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import callable_name, file_sha256, first_line, pad_rows

DEFAULT_DEVICE = "cpu"
SAVE_ADVICE = ("save the model with torch.jit.save(torch.jit.script(model), 'model.pt') or "
               "torch.export.save(torch.export.export(model, example_inputs), 'model.pt2'), or save "
               "model.state_dict() and pass pytest_quantguard.runners.torch.from_state_dict(path, "
               "factory)")
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class TorchRunner:
    """Runs a torch model on a batch: eval mode, ``torch.no_grad()``, inputs as tensors on ``device``.

    One data input is passed positionally; several are matched to ``forward``'s parameters by name
    (positionally, in the data's order, when ``forward`` has none of those names). Floating inputs
    are cast to the model's parameter dtype (so FP16/BF16 models get FP16/BF16 inputs); outputs come
    back as numpy arrays, FP16/BF16 as float32.
    """

    def __init__(self, model: Any, *, device: str = DEFAULT_DEVICE, description: str | None = None,
                 path: str | None = None, sha256: str | None = None, nbytes: int | None = None):
        self.description = description or _class_name(model)
        torch = _import_torch(f"the PyTorch model {self.description}")
        self.device = _device(torch, device, self.description)
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

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, device: str = DEFAULT_DEVICE,
                  description: str | None = None) -> TorchRunner:
        """A TorchScript file or a ``torch.export`` program, found by the file's content.

        A state dict is refused here (it needs a factory: ``from_state_dict``), and so is any
        other pickle, which is never loaded.
        """
        path = Path(path)
        description = description or str(path)
        torch = _import_torch(f"the PyTorch model {description}")
        device = str(_device(torch, device, description))
        kind = _archive_kind(path)
        if kind == "torchscript":
            model = _load_torchscript(torch, path, device)
        elif kind == "export":
            model = _load_exported(torch, path)
        else:
            _refuse_pickle(torch, path, kind)
        return cls(model, device=device, description=description, path=str(path),
                   sha256=file_sha256(path), nbytes=path.stat().st_size)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if self.fixed_batch is None or n == self.fixed_batch:
            return self._forward(inputs)
        parts = []
        for start in range(0, n, self.fixed_batch):
            chunk = {name: pad_rows(array[start:start + self.fixed_batch], self.fixed_batch)
                     for name, array in inputs.items()}
            stop = min(self.fixed_batch, n - start)
            parts.append({name: value[:stop] for name, value in self._forward(chunk).items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

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
    torch = _import_torch(f"the PyTorch state dict {path}")
    device = str(_device(torch, device, str(path)))
    if not path.is_file():
        raise QuantGuardError(f"state dict file not found: {path}; check the path")
    kind = _archive_kind(path)
    if kind in ("torchscript", "export"):
        raise QuantGuardError(f"{path} is a {'TorchScript' if kind == 'torchscript' else 'torch.export'}"
                              " file, not a state dict; pass the path itself as the model")
    state = _load_weights_only(torch, path, device)
    if not _is_state_dict(torch, state):
        raise QuantGuardError(f"{path}: expected a state dict (a dict of tensors) but the file holds "
                              f"a {type(state).__name__}; save model.state_dict() (from a training "
                              "checkpoint, save checkpoint['state_dict'] alone)")
    module = factory()
    if not _is_module(module):
        raise QuantGuardError(f"from_state_dict({str(path)!r}, factory): factory {callable_name(factory)}"
                              f" returned a {type(module).__name__}; it must build the torch.nn.Module "
                              "the weights were saved from")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise QuantGuardError(f"{path}: the state dict does not fit the module that "
                              f"{callable_name(factory)} builds ({_first_lines(error, 3)}); pass the "
                              "factory of the architecture these weights were saved from") from None
    return TorchRunner(module.to(device), device=device, description=str(path), path=str(path),
                       sha256=file_sha256(path), nbytes=path.stat().st_size)


# --- loading --------------------------------------------------------------------------------------

def _import_torch(what: str) -> Any:
    try:
        import torch
    except ImportError:
        raise MissingBackendError("torch", "torch", what) from None
    _one_thread_under_xdist(torch)
    return torch


def _one_thread_under_xdist(torch: Any) -> None:
    """Under pytest-xdist every worker is a process of its own on shared cores: one intra-op
    thread each, as for onnxruntime (several workers with a thread per core fight over the cores).
    A worker process runs tests only, so this is the worker's setting, set once."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER") and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


def _device(torch: Any, device: str, description: str) -> Any:
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise QuantGuardError(f"{description}: unknown torch device {device!r} ({first_line(error)});"
                              " use 'cpu' or 'cuda'") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise QuantGuardError(f"{description}: device {device!r} was asked for but CUDA is not "
                              f"available to torch {torch.__version__} (no GPU, or a CPU-only build); "
                              "use device 'cpu' or install a CUDA build of torch")
    return chosen


def _archive_kind(path: Path) -> str:
    """``torchscript``, ``export``, ``export-legacy``, ``pickle`` (torch.save) or ``unknown``."""
    if not zipfile.is_zipfile(path):
        return "pickle"  # torch.save's legacy (pre-1.6) format, or not a torch file at all
    with zipfile.ZipFile(path) as archive:
        names = {name.partition("/")[2] for name in archive.namelist()}
    if "constants.pkl" in names and any(name.startswith("code/") for name in names):
        return "torchscript"
    if "archive_format" in names:
        return "export"
    if "serialized_exported_program.json" in names:
        return "export-legacy"
    return "pickle" if "data.pkl" in names else "unknown"


def _load_torchscript(torch: Any, path: Path, device: str) -> Any:
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript; loading the user's file is not ours to warn about
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.load(str(path), map_location=device)
        except Exception as error:
            raise QuantGuardError(f"{path}: torch.jit.load cannot read this TorchScript file "
                                  f"({first_line(error)}); check that it is complete and re-save "
                                  "it if needed") from None


def _load_exported(torch: Any, path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        _check_export_archive(torch, archive, path)
    try:
        with path.open("rb") as handle:
            return torch.export.load(handle)
    except Exception as error:
        raise QuantGuardError(f"{path}: torch.export.load cannot read this program "
                              f"({first_line(error)}); it may come from another torch version: "
                              "re-export it with this one") from None


def _refuse_pickle(torch: Any, path: Path, kind: str) -> NoReturn:
    """Always raises: say what the file is (a state dict, a pickled object) and how to save it."""
    if kind == "export-legacy":
        raise QuantGuardError(f"{path}: a torch.export file in the pre-2.7 format, which stores "
                              "pickles that quantguard does not load; re-save it with "
                              "torch.export.save from this torch version")
    if kind == "unknown":
        raise QuantGuardError(f"{path}: not a TorchScript file, a torch.export program or a state "
                              f"dict; {SAVE_ADVICE}")
    state = _load_weights_only(torch, path, "cpu")
    if _is_state_dict(torch, state):
        raise QuantGuardError(f"{path} is a state dict: weights without the code that uses them. "
                              "Pass pytest_quantguard.runners.torch.from_state_dict(path, factory), "
                              "where factory() builds the module, as the model")
    raise QuantGuardError(f"{path}: holds a {type(state).__name__}, not a model that quantguard can "
                          f"run; {SAVE_ADVICE}")


def _load_weights_only(torch: Any, path: Path, device: str) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = (f"a pickled Python object (it references {found.group(1)}), e.g. from "
                "torch.save(model)") if found else f"unreadable as weights ({first_line(error)})"
        raise QuantGuardError(f"{path}: {what}. quantguard never unpickles model files, since "
                              f"unpickling runs code from the file; {SAVE_ADVICE}") from None


def _is_state_dict(torch: Any, value: Any) -> bool:
    return (isinstance(value, Mapping) and len(value) > 0
            and all(isinstance(key, str) and torch.is_tensor(item) for key, item in value.items()))


# --- torch.export archives: refuse anything torch.export.load would unpickle or evaluate -----------

# torch's sympy helpers and the few sympy names serialized shape expressions use
SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le", "Gt",
    "Ge", "And", "Or", "Not", "Piecewise", "floor", "ceiling", "oo", "zoo", "nan", "true", "false",
    "True", "False", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv",
    "CeilToInt", "FloorToInt", "CeilDiv", "IntTrueDiv", "FloatTrueDiv", "LShift", "RShift",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
    "ToFloat", "FloatPow", "PowByNatural", "Identity",
    # Symbol(...) assumptions
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "nonzero",
    "zero", "even", "odd", "rational", "commutative",
})
SYMBOL_NAME = re.compile(r"[a-z]+\d+")
OPERATORS = frozenset({"+", "-", "*", "/", "**", "//", "%", "(", ")", ",", "=", "<", ">", "<=", ">=",
                       "==", "!="})


def _check_export_archive(torch: Any, archive: zipfile.ZipFile, path: Path) -> None:
    """torch.export.load unpickles tensor subclasses, opaque objects and sample inputs that are not
    plain tensors, loads AOTInductor binaries and evaluates shape expressions with sympy.sympify:
    allow only archives where none of that can run code from the file."""
    def refuse(reason: str) -> None:
        raise QuantGuardError(f"{path}: this torch.export archive holds {reason}, which loading it "
                              "would run as code; quantguard never runs code from a model file. "
                              "Export a model of plain tensors and save it with torch.export.save")

    for name in archive.namelist():
        inner = name.partition("/")[2]
        if inner.startswith(("data/aotinductor/", "data/executorch/")):
            refuse("compiled AOTInductor/ExecuTorch code")
        if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith(".pt"):
            refuse(f"pickled weights in a legacy layout ({inner})")
        if inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json"):
            for key, entry in json.loads(archive.read(name)).get("config", {}).items():
                if entry.get("use_pickle") or str(entry.get("path_name", "")).startswith("opaque_obj_"):
                    refuse(f"a pickled object ({key})")
        if inner.startswith("data/sample_inputs/"):
            try:
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception:
                refuse(f"sample inputs that are not plain tensors ({inner})")
        if inner.startswith("models/") and inner.endswith(".json"):
            for expression in _expressions(json.loads(archive.read(name))):
                if not _plain_expression(expression):
                    refuse(f"a shape expression that is not plain arithmetic ({expression[:80]!r})")


def _expressions(node: Any) -> Iterator[str]:
    """Every ``expr_str`` in a serialized program (torch parses each with sympy.sympify)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr_str" and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _expressions(value)


def _plain_expression(text: str) -> bool:
    """Symbols, numbers, arithmetic and torch's sympy functions only: no attribute, no other name."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    for token in tokens:
        if token.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if token.type == tokenize.NAME and (token.string in SYMPY_NAMES
                                            or SYMBOL_NAME.fullmatch(token.string)
                                            or token.string.startswith("OpaqueUnaryFn_")):
            continue
        if token.type == tokenize.STRING and re.fullmatch(r"'[a-z]+\d+'|\"[a-z]+\d+\"", token.string):
            continue
        if token.type == tokenize.OP and token.string in OPERATORS:
            continue
        return False
    return True


# --- the module and its identity --------------------------------------------------------------------

def _is_module(model: Any) -> bool:
    return any(cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
               for cls in type(model).__mro__)


def _is_exported_program(model: Any) -> bool:
    return any(cls.__name__ == "ExportedProgram" and cls.__module__ == "torch.export.exported_program"
               for cls in type(model).__mro__)


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


# --- small helpers ----------------------------------------------------------------------------------

def _first_lines(error: BaseException, count: int) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[:count]) or type(error).__name__
