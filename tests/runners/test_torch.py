"""The PyTorch runner on real models trained on scikit-learn's digits: modules, TorchScript,
torch.export programs, state dicts, half precision, input mapping, eval/no-grad, identity, safety."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits  # at the top: pytester's in-process runs must not be first
from torch import nn

from pytest_quantguard import Verdict, compare
from pytest_quantguard.errors import MissingBackendError, QuantGuardError
from pytest_quantguard.runners import make_runner
from pytest_quantguard.runners.callables import CallableRunner
from pytest_quantguard.runners.torch import TorchRunner, from_state_dict


class MLP(nn.Module):
    def __init__(self, hidden: int = 32):
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.out(self.dropout(torch.relu(self.hidden(x))))


class TwoInputs(nn.Module):
    """Digits split into two feature groups (top and bottom half of the image)."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.mlp = mlp

    def forward(self, top, bottom):
        return self.mlp(torch.cat([top, bottom], dim=1))


class Outputs(nn.Module):
    """Returns the MLP's logits in the shape ``kind`` names."""

    def __init__(self, mlp: MLP, kind: str):
        super().__init__()
        self.mlp, self.kind = mlp, kind

    def forward(self, x):
        logits = self.mlp(x)
        if self.kind == "tuple":
            return logits, logits.softmax(dim=1)
        if self.kind == "dict":
            return {"logits": logits, "probs": logits.softmax(dim=1), "cache": None}
        if self.kind == "hf":
            return type("ModelOutput", (), {"logits": logits})()
        if self.kind == "bf16":
            return logits.bfloat16()
        return logits.sum()  # "scalar"


class Trap:
    """Unpickling this creates ``marker``: a file that holds one proves that something unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@contextlib.contextmanager
def quiet():
    """Building test artefacts with torch's deprecated savers (jit, ao.quantization) warns; the
    runner itself is held to the project's warnings-are-errors rule outside this block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster, and immune to a busy CI machine
    (two OpenMP threads on two shared cores were measured 60x slower per matmul)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return (bunch.data / 16).astype(np.float32), bunch.target


@pytest.fixture(scope="module")
def model(digits):
    """A small MLP trained for a few full-batch epochs (about 0.3 s), left in eval mode."""
    inputs, labels = digits
    torch.manual_seed(0)
    mlp = MLP()
    optimizer = torch.optim.Adam(mlp.parameters(), lr=0.02)
    x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
    for _ in range(120):
        optimizer.zero_grad()
        nn.functional.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    return mlp.eval()


@pytest.fixture(scope="module")
def expected(model, digits):
    with torch.no_grad():
        return model(torch.from_numpy(digits[0])).numpy()


@pytest.fixture(scope="module")
def exported_file(model, digits, tmp_path_factory):
    """The model as a torch.export program with a dynamic batch dimension."""
    path = tmp_path_factory.mktemp("export") / "model.pt2"
    example = (torch.from_numpy(digits[0][:8]),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, path)
    return path


def test_module_runner_equals_direct_forward(model, digits, expected):
    runner = make_runner(model)
    assert isinstance(runner, TorchRunner) and not isinstance(runner, CallableRunner)
    out = runner({"inputs": digits[0]})
    assert list(out) == ["output_0"] and out["output_0"].dtype == np.float32
    np.testing.assert_array_equal(out["output_0"], expected)
    assert runner.description.endswith("MLP") and runner.path is None and runner.notes == ()
    assert runner.nbytes == sum(p.numel() * 4 for p in model.parameters())
    assert (expected.argmax(1) == digits[1]).mean() > 0.95  # the fixture really learned digits


def test_torchscript_and_exported_files_give_the_module_outputs(model, digits, expected, tmp_path,
                                                                 exported_file):
    scripted = tmp_path / "model.pt"
    with quiet():
        torch.jit.save(torch.jit.script(model), scripted)
    for path in (scripted, exported_file):
        runner = make_runner(path.name, base_dir=path.parent)
        np.testing.assert_allclose(runner({"inputs": digits[0]})["output_0"], expected,
                                   rtol=1e-5, atol=1e-5)
        assert runner.path == str(path) and runner.description == path.name
        assert runner.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert runner.nbytes == path.stat().st_size
    in_memory = make_runner(torch.export.load(exported_file))
    np.testing.assert_allclose(in_memory({"inputs": digits[0][:5]})["output_0"], expected[:5],
                               rtol=1e-5, atol=1e-5)


def test_exported_program_with_a_static_batch_is_run_in_padded_chunks(model, digits, expected,
                                                                      tmp_path):
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(model, (torch.from_numpy(digits[0][:7]),)), path)
    runner = make_runner(path)
    assert runner.fixed_batch == 7
    out = runner({"inputs": digits[0][:20]})["output_0"]  # 2 chunks of 7 and a padded one of 6
    np.testing.assert_allclose(out, expected[:20], rtol=1e-5, atol=1e-5)


def test_state_dict_needs_a_factory(model, digits, expected, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    runner = from_state_dict(path, MLP)
    np.testing.assert_array_equal(runner({"inputs": digits[0]})["output_0"], expected)
    assert runner.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert compare(runner, model, data=digits).drop == 0.0
    with pytest.raises(QuantGuardError, match=r"weights\.pth is a state dict.*from_state_dict"):
        make_runner(path)
    with pytest.raises(QuantGuardError, match=r"does not fit the module that .*<lambda> builds \(.*for "
                                              r"MLP: size mismatch"):
        from_state_dict(path, lambda: MLP(hidden=16))
    with pytest.raises(QuantGuardError, match=r"returned a dict; it must build the torch\.nn\.Module"):
        from_state_dict(path, dict)


def test_pickled_models_are_refused_without_being_unpickled(model, tmp_path, exported_file):
    marker = tmp_path / "unpickled"
    trap = tmp_path / "trap.pt"
    torch.save({"weights": model.state_dict(), "payload": Trap(marker)}, trap)
    full = tmp_path / "full_model.pt"
    torch.save(model, full)  # the whole module, pickled: the usual way to end up here
    disguised = tmp_path / "trap.pt2"
    disguised.write_bytes(trap.read_bytes())
    for path in (trap, full, disguised):
        with pytest.raises(QuantGuardError, match=r"a pickled Python object .*never unpickles model "
                                                  r"files.*torch\.jit\.save.*torch\.export\.save"):
            make_runner(path)
        with pytest.raises(QuantGuardError, match="never unpickles"):
            from_state_dict(path, MLP)
    with pytest.raises(QuantGuardError, match=r"full_model\.pt: a pickled Python object \(it "
                                              r"references [\w.]*MLP\)"):
        make_runner(full)

    # a genuine torch.export archive whose sample inputs were swapped for the trap
    tampered = tmp_path / "tampered.pt2"
    _rewrite(exported_file, tampered, "data/sample_inputs/", trap_bytes(marker, tmp_path))
    with pytest.raises(QuantGuardError, match="sample inputs that are not plain tensors"):
        make_runner(tampered)
    assert not marker.exists()


def test_exported_shape_expressions_must_be_plain_arithmetic(tmp_path, exported_file):
    marker = tmp_path / "evaluated"
    with zipfile.ZipFile(exported_file) as archive:
        name = next(n for n in archive.namelist() if n.endswith("models/model.json"))
        text = archive.read(name).decode()
    assert "expr_str" in text  # the dynamic batch dimension is serialized as a sympy expression
    program = json.loads(text)
    _replace_expressions(program, f"__import__('pathlib').Path({str(marker)!r}).touch() or s0")
    evil = tmp_path / "evil.pt2"
    _rewrite(exported_file, evil, "models/model.json", json.dumps(program).encode())
    with pytest.raises(QuantGuardError, match="a shape expression that is not plain arithmetic"):
        make_runner(evil)
    assert not marker.exists()


def test_half_and_bfloat16_models_take_cast_inputs_and_return_float32(model, digits, expected):
    for dtype in (torch.float16, torch.bfloat16):
        runner = make_runner(copy.deepcopy(model).to(dtype))
        assert runner.float_dtype == dtype
        out = runner({"inputs": digits[0]})["output_0"]
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=0.25)
        assert (out.argmax(1) == expected.argmax(1)).mean() > 0.97


def test_several_inputs_are_passed_by_name(model, digits, expected):
    inputs, labels = digits
    two = TwoInputs(model)
    data = {"bottom": inputs[:, 32:], "top": inputs[:, :32]}  # not in forward's order on purpose
    np.testing.assert_array_equal(make_runner(two)(data)["output_0"], expected)
    half = TwoInputs(copy.deepcopy(model).half())
    assert compare(two, half, data=(data, labels)).verdict in set(Verdict)  # named inputs end to end

    example = {name: torch.from_numpy(array[:4]) for name, array in data.items()}
    program = torch.export.export(two, (example["top"],), {"bottom": example["bottom"]})
    np.testing.assert_allclose(make_runner(program)(data)["output_0"], expected, rtol=1e-5, atol=1e-5)

    unnamed = {"first": inputs[:, :32], "second": inputs[:, 32:]}  # no forward names: data order
    np.testing.assert_array_equal(make_runner(two)(unnamed)["output_0"], expected)
    with pytest.raises(QuantGuardError, match=r"no parameter for \['middle'\]"):
        make_runner(two)({"top": inputs[:, :32], "middle": inputs[:, 32:]})
    with pytest.raises(QuantGuardError, match="forward takes"):
        make_runner(two)({"a": inputs[:, :20], "b": inputs[:, 20:40], "c": inputs[:, 40:]})


@pytest.mark.parametrize(("kind", "names"), [("tuple", ["output_0", "output_1"]),
                                             ("dict", ["logits", "probs"]), ("hf", ["logits"]),
                                             ("bf16", ["output_0"])])
def test_outputs_get_stable_names(model, digits, expected, kind, names):
    out = make_runner(Outputs(model, kind))({"inputs": digits[0][:50]})
    assert list(out) == names
    np.testing.assert_allclose(out[names[0]], expected[:50], atol=0.1 if kind == "bf16" else 1e-6)
    assert all(value.dtype == np.float32 for value in out.values())


def test_scalar_output_is_refused(model, digits):
    with pytest.raises(QuantGuardError, match="output 'output_0' is a scalar"):
        make_runner(Outputs(model, "scalar"))({"inputs": digits[0][:5]})


def test_eval_mode_and_no_grad_are_enforced_and_the_mode_restored(model, digits, expected):
    training = copy.deepcopy(model).train()
    training.out.eval()  # a per-submodule mix that must come back as it was
    seen = []
    training.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    runner = make_runner(training)
    first, second = (runner({"inputs": digits[0]})["output_0"] for _ in range(2))
    np.testing.assert_array_equal(first, second)  # dropout off: deterministic
    np.testing.assert_array_equal(first, expected)
    assert seen == [False, False]
    assert training.training and training.dropout.training and not training.out.training


def test_module_sha256_follows_its_weights(model):
    twin = copy.deepcopy(model)
    assert make_runner(twin).sha256 == make_runner(model).sha256
    with torch.no_grad():
        twin.out.bias[3] += 1e-3
    assert make_runner(twin).sha256 != make_runner(model).sha256
    assert make_runner(TwoInputs(model).mlp).sha256 == make_runner(model).sha256
    assert make_runner(TwoInputs(model)).sha256 != make_runner(model).sha256  # class and names


def test_compare_int8_dynamic_quantization_end_to_end(model, digits):
    with quiet():
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear},
                                                      dtype=torch.qint8)
    runner = make_runner(int8)
    assert runner.sha256 != make_runner(model).sha256 and runner.nbytes < make_runner(model).nbytes
    result = compare(model, int8, data=digits)
    assert result.verdict in set(Verdict) and result.n == len(digits[1])
    assert result.reference_score > 0.95 and abs(result.drop) < 0.02
    assert result.candidate["sha256"] == runner.sha256


def test_device_errors_are_clear(model):
    if not torch.cuda.is_available():
        with pytest.raises(QuantGuardError, match="'cuda' was asked for but CUDA is not available"):
            TorchRunner(model, device="cuda")
    with pytest.raises(QuantGuardError, match="unknown torch device 'gpu0'"):
        TorchRunner(model, device="gpu0")


def test_unreadable_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(QuantGuardError, match=r"junk\.pt: unreadable as weights"):
        make_runner(junk)
    archive = tmp_path / "other.pth"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("other/readme.txt", "hello")
    with pytest.raises(QuantGuardError, match=r"not a TorchScript file, a torch\.export program or a "
                                              r"state dict"):
        make_runner(archive)


def test_missing_torch_names_the_extra(monkeypatch, tmp_path, exported_file):
    monkeypatch.setitem(sys.modules, "torch", None)  # what an environment without torch gives
    with pytest.raises(MissingBackendError, match=r"pip install 'pytest-quantguard\[torch\]'"):
        make_runner(exported_file)


def test_torch_is_imported_lazily():
    code = ("import sys, pytest_quantguard, pytest_quantguard.runners, pytest_quantguard.runners.torch;"
            "from pytest_quantguard.runners import make_runner;"
            "make_runner(lambda batch: batch);"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def trap_bytes(marker, folder) -> bytes:
    path = folder / "trap_inputs.pt"
    torch.save(Trap(marker), path)
    return path.read_bytes()


def _rewrite(source, target, inner_prefix: str, payload: bytes) -> None:
    """Copy a zip archive, replacing the first member under ``inner_prefix`` with ``payload``."""
    replaced = False
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if not replaced and item.filename.partition("/")[2].startswith(inner_prefix):
                data, replaced = payload, True
            new.writestr(item, data)
    assert replaced


def _replace_expressions(node, text: str) -> None:
    if isinstance(node, dict):
        for key in node:
            if key == "expr_str":
                node[key] = text
            else:
                _replace_expressions(node[key], text)
    elif isinstance(node, list):
        for item in node:
            _replace_expressions(item, text)


@pytest.mark.parametrize(("text", "plain"), [
    ("Symbol('s31', positive=True, integer=True)", True), ("2*s0 + 1", True),
    ("Max(1, FloorDiv(s0, 2))", True), ("s0.__class__", False), ("eval(chr(115))", False),
    ("Symbol('os.system')", False), ("[s0 for s0 in ()]", False)])
def test_shape_expression_check(text, plain):
    from pytest_quantguard.runners.torch_load import _plain_expression

    assert _plain_expression(text) is plain


def test_one_torch_thread_per_xdist_worker(monkeypatch):
    import torch

    from pytest_quantguard.runners.torch_load import _one_thread_under_xdist

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        _one_thread_under_xdist(torch)
        assert torch.get_num_threads() == 2  # not a worker: left alone
        monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
        _one_thread_under_xdist(torch)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
