"""Loading PyTorch model files and state dicts without ever unpickling them.

A model file is read only as TorchScript, as a ``torch.export`` archive checked beforehand to hold
no pickled or compiled payload, or with ``torch.load(weights_only=True)``; anything else is refused
with advice on how to save the model. torch is passed in by the caller, which imports it lazily.
"""

from __future__ import annotations

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

from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import callable_name, first_line

SAVE_ADVICE = ("save the model with torch.jit.save(torch.jit.script(model), 'model.pt') or "
               "torch.export.save(torch.export.export(model, example_inputs), 'model.pt2'), or save "
               "model.state_dict() and pass pytest_quantguard.runners.torch.from_state_dict(path, "
               "factory)")


def import_torch(what: str) -> Any:
    """torch, or a MissingBackendError naming the extra to install for ``what``."""
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
    if os.environ.get("PYTEST_XDIST_WORKER") and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


def torch_device(torch: Any, device: str, description: str) -> Any:
    """``torch.device(device)``, refused with advice when unknown or when CUDA is unavailable."""
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


def load_model_file(torch: Any, path: Path, device: str) -> Any:
    """A TorchScript module or a ``torch.export`` program, found by the file's content.

    A state dict is refused (it needs a factory: ``from_state_dict``), and so is any other
    pickle, which is never loaded.
    """
    kind = _archive_kind(path)
    if kind == "torchscript":
        return _load_torchscript(torch, path, device)
    if kind == "export":
        return _load_exported(torch, path)
    _refuse_pickle(torch, path, kind)


def load_state_dict_module(torch: Any, path: Path, factory: Callable[[], Any], device: str) -> Any:
    """``factory()``'s module with the state dict at ``path`` loaded (``strict=True``), on ``device``."""
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
    return module.to(device)


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


def _is_module(model: Any) -> bool:
    return any(cls.__name__ == "Module" and cls.__module__ == "torch.nn.modules.module"
               for cls in type(model).__mro__)


def _first_lines(error: BaseException, count: int) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[:count]) or type(error).__name__
