"""Faults a release gate must survive (docs/development.md, "Fuzzing and faults"): two processes
writing one cache entry, SIGINT in the middle of a write, a cache folder that cannot be written
(read-only, full), files that change after their digest, symlinks in model and data folders."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pytest_quantguard import ValidationSet
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.errors import QuantGuardError

REPO = Path(__file__).resolve().parents[2]
GATE = """
def test_int8(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx")

def test_int8_again(quant_compare):
    quant_compare("models/fp32.onnx", "models/int8.onnx", name="again")
"""


def _python(script: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=sigint_as_default, **kwargs)


def sigint_as_default() -> None:
    """A run started in the background (``cmd &``) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt: the child gets the default handling back, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_two_processes_writing_one_cache_key_leave_one_whole_entry(tmp_path):
    script = """
        import sys
        import numpy as np
        from pathlib import Path
        from pytest_quantguard.cache import ReferenceCache
        records = np.arange(200_000, dtype=np.int64) * int(sys.argv[1])
        for _ in range(30):
            ReferenceCache(Path("cache")).put("k" * 64, records)
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), "1"], cwd=tmp_path,
                                env=env) for _ in range(2)]
    readers = 0
    while any(writer.poll() is None for writer in writers):
        records, status = ReferenceCache(tmp_path / "cache").get("k" * 64, 200_000)
        if records is not None:  # never half an entry: a miss or the whole array
            readers += 1
            assert status == "hit" and records[-1] == 199_999
    assert [writer.wait() for writer in writers] == [0, 0]
    assert ReferenceCache(tmp_path / "cache").get("k" * 64, 200_000)[1] == "hit"
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["k" * 64 + ".npy"]


def test_xdist_workers_sharing_a_reference_key_both_pass(example, pytester, plugin_args):
    pytester.makepyfile(test_gate=GATE)
    first = pytester.runpytest_subprocess("--quant-data", "prod_val", *plugin_args)
    first.assert_outcomes(passed=2)
    second = pytester.runpytest_subprocess("--quant-data", "prod_val", *plugin_args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["*int8 *hit*"])
    assert not list((example / ".pytest_cache" / "d" / "quantguard").glob("*.tmp"))


# SIGINT arrives after the bytes are written and before the rename (os.fsync is the last step).
SIGINT_WRITES = {
    "cache": "ReferenceCache(Path('out')).put('k' * 64, np.arange(10))",
    "report": "write_json(Path('out/report.json'), {'comparisons': []})",
    "markdown": "write_atomically('out/summary.md', lambda stream: stream.write(b'# quantguard'))",
    "plot": "write_atomically('out/plot.png', lambda stream: Figure().savefig(stream, format='png'))",
}


@pytest.mark.parametrize("what", SIGINT_WRITES)
def test_sigint_while_writing_leaves_no_partial_file(tmp_path, what):
    if what == "plot":
        pytest.importorskip("matplotlib")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text('{"old": "whole"}')  # an earlier whole report
    result = _python(f"""
        import os, signal, time
        from pathlib import Path
        import numpy as np
        from pytest_quantguard._files import write_atomically
        from pytest_quantguard.cache import ReferenceCache
        from pytest_quantguard.reports.json_report import write_json
        from matplotlib.figure import Figure

        def interrupted(fd):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)

        os.fsync = interrupted
        {SIGINT_WRITES[what]}
        print("finished")
    """, tmp_path)
    assert "finished" not in result.stdout
    assert "KeyboardInterrupt" in result.stderr and result.returncode != 0
    left = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert left == ["report.json"], left  # no temporary file, no half-written file
    assert (tmp_path / "out" / "report.json").read_text() == '{"old": "whole"}'


def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if setpriv else None


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_cache_folder_that_cannot_be_written_turns_the_cache_off(example, pytester, fault):
    """Read-only: a non-root process (as root, chmod does not stop writes) under a read-only cache
    folder. Full: a file-size limit (RLIMIT_FSIZE) that refuses every write, as a full disk does."""
    pytester.makepyfile(test_gate=GATE)
    if fault == "full":  # after pytest has started: every later write past 0 bytes fails
        pytester.makeconftest("import resource\n\n\ndef pytest_configure(config):\n"
                              "    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n")
    cache = example / ".pytest_cache"
    (cache / "d" / "quantguard").mkdir(parents=True)
    prefix: list[str] = []
    if fault == "read-only":
        prefix = _as_nobody()
        if prefix is None:
            pytest.skip("needs setpriv to drop root")
        reach = subprocess.run([*prefix, sys.executable, "-c", "import pytest"], capture_output=True)
        if reach.returncode != 0:  # e.g. a checkout under `mktemp -d` (mode 0700)
            pytest.skip(f"an unprivileged user cannot run {sys.executable} with pytest (a private "
                        "folder above the environment)")
        for path in [*example.parents, example, *example.rglob("*")]:  # nobody reaches the project
            os.chmod(path, os.stat(path).st_mode | (0o755 if path.is_dir() else 0o644))
        for path in [cache, *cache.rglob("*")]:
            os.chmod(path, 0o555)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(example)}
    result = subprocess.run([*prefix, sys.executable, "-m", "pytest", "-p", "no:randomly",
                             "--quant-data", "prod_val", "-W", "ignore::pytest.PytestCacheWarning"],
                            cwd=example, env=env, capture_output=True, text=True, timeout=300)
    assert "2 passed" in result.stdout, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "int8" in line and "::" in line]
    assert lines and all(" off " in f" {line} " for line in lines), result.stdout
    assert not list(cache.rglob("*.npy")) and not list(cache.rglob("*.tmp"))


def test_a_data_file_changed_after_its_digest_is_refused(tmp_path):
    np.save(tmp_path / "inputs.npy", np.ones((10, 2), np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    dataset = ValidationSet.from_folder(tmp_path)
    np.save(tmp_path / "inputs.npy", np.full((10, 2), 2, np.float32))  # same size, new bytes
    with pytest.raises(QuantGuardError, match=r"inputs\.npy: changed since"):
        list(dataset.batches(4))


def test_an_npz_shard_changed_after_its_digest_is_refused(tmp_path):
    np.savez(tmp_path / "val.npz", inputs=np.ones((10, 2), np.float32), labels=np.zeros(10, np.int64))
    dataset = ValidationSet.from_folder(tmp_path)
    np.savez(tmp_path / "val.npz", inputs=np.full((10, 2), 2, np.float32),
             labels=np.zeros(10, np.int64))
    os.utime(tmp_path / "val.npz", ns=(1, 1))  # whatever the clock's resolution
    with pytest.raises(QuantGuardError, match=r"val\.npz: changed since the set was read"):
        list(dataset.batches(4))


def _csv_set(folder: Path) -> Path:
    rows = "\n".join(f"{i}.5,{i % 2}" for i in range(10))
    (folder / "part.csv").write_text(f"x,label\n{rows}\n")
    return folder / "part.csv"


def _image_set(folder: Path) -> Path:
    from PIL import Image

    for index in range(6):
        (folder / f"c{index % 2}").mkdir(exist_ok=True)
        Image.new("RGB", (3, 2), (index, 0, 0)).save(folder / f"c{index % 2}" / f"{index}.png",
                                                 compress_level=0)
    return folder / "c1" / "3.png"


def _same_size_rewrite(file: Path) -> None:
    """Other bytes of the same size, the mtime put back: only the bytes tell."""
    status = file.stat()
    if file.suffix == ".csv":
        file.write_text(file.read_text().replace("3.5,1", "9.5,1"))
    else:
        from PIL import Image

        Image.new("RGB", (3, 2), (0, 0, 9)).save(file, compress_level=0)
    assert file.stat().st_size == status.st_size
    os.utime(file, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize("fmt", ["csv", "images"])
def test_a_csv_or_image_file_changed_after_its_digest_is_refused(tmp_path, fmt):
    if fmt == "images":
        pytest.importorskip("PIL.Image")
    changed = (_csv_set if fmt == "csv" else _image_set)(tmp_path)
    dataset = ValidationSet.from_folder(tmp_path)
    assert len(np.concatenate([batch.labels for batch in dataset.batches(4)])) == 10 - 4 * (
        fmt == "images")  # unchanged: it streams
    _same_size_rewrite(changed)
    with pytest.raises(QuantGuardError, match=rf"{changed.name}: changed since the set was read"):
        list(dataset.batches(4))
    fresh = ValidationSet.from_folder(tmp_path)  # read again, it loads (with another digest)
    assert fresh.digest != dataset.digest and list(fresh.batches(4))


def test_a_symlink_in_a_data_folder_loads_what_it_points_at(tmp_path):
    outside = tmp_path / "store"
    outside.mkdir()
    np.save(outside / "x.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "inputs.npy").symlink_to(outside / "x.npy")
    np.save(folder / "labels.npy", np.arange(6) % 2)
    first = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(np.concatenate([b.inputs["inputs"] for b in first.batches(4)]),
                                  np.arange(12, dtype=np.float32).reshape(6, 2))
    np.save(outside / "x.npy", np.zeros((6, 2), np.float32))
    assert ValidationSet.from_folder(folder).digest != first.digest  # the digest reads the target


def _external_data_model(folder: Path, location: str = "w.data") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                              [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / "m.onnx"


def test_a_model_folder_link_to_data_outside_it_is_refused_naming_the_fix(tmp_path):
    """onnxruntime refuses external data that resolves outside the model's folder; the error says
    which link and what to do, not "a truncated .onnx file"."""
    from pytest_quantguard.runners import make_runner

    stored = _external_data_model(tmp_path / "store")
    (tmp_path / "model").mkdir()
    shutil.copy(stored, tmp_path / "model" / "m.onnx")
    (tmp_path / "model" / "w.data").symlink_to(tmp_path / "store" / "w.data")
    with pytest.raises(QuantGuardError, match=r"w\.data: this external data file of m\.onnx links "
                                              r"to .*store/w\.data, outside the model's folder .*copy "
                                              r"the data file into the folder"):
        make_runner(tmp_path / "model" / "m.onnx")
    inside = tmp_path / "model" / "copy.data"  # a link that stays inside the folder is followed
    shutil.copy(tmp_path / "store" / "w.data", inside)
    (tmp_path / "model" / "w.data").unlink()
    (tmp_path / "model" / "w.data").symlink_to(inside)
    assert make_runner(tmp_path / "model" / "m.onnx").sha256 == make_runner(stored).sha256


def test_a_model_rewritten_while_it_is_hashed_and_loaded_is_refused(tmp_path, monkeypatch):
    """The fault injected where it can happen: between the sha256 and the session."""
    from pytest_quantguard.runners import make_runner
    from pytest_quantguard.runners import onnx as onnx_runner

    model = _external_data_model(tmp_path)
    real_session = onnx_runner._session

    def rewritten_first(*args, **kwargs):
        with (tmp_path / "w.data").open("r+b") as handle:  # another writer, same size
            handle.write(np.float32(7).tobytes())
        os.utime(tmp_path / "w.data", ns=(1, 1))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnx_runner, "_session", rewritten_first)
    with pytest.raises(QuantGuardError, match=r"w\.data: the file changed while it was being "
                                              r"hashed and loaded"):
        make_runner(model)
    monkeypatch.setattr(onnx_runner, "_session", real_session)
    assert make_runner(model).output_names == ["y"]  # once it stands still, it loads


def test_an_export_stopped_by_a_data_error_leaves_no_dataset_json(tmp_path, monkeypatch, capsys):
    """dataset.json is written last; an export into a folder holding an earlier one removes it
    first, so a stopped export never leaves the old dataset.json describing new arrays."""
    from pytest_quantguard.cli import main

    (tmp_path / "val").mkdir()
    first = _csv_set(tmp_path / "val")
    changed = tmp_path / "val" / "part_2.csv"  # the second shard: read after the arrays are open
    changed.write_bytes(first.read_bytes())
    assert main(["export-inputs", "--data", str(tmp_path / "val"), "-o", str(tmp_path / "x")]) == 0
    read = ValidationSet.from_folder

    def changed_after_the_digest(*args, **kwargs):
        dataset = read(*args, **kwargs)
        _same_size_rewrite(changed)
        return dataset

    monkeypatch.setattr(ValidationSet, "from_folder", changed_after_the_digest)
    capsys.readouterr()
    assert main(["export-inputs", "--data", str(tmp_path / "val"), "-o", str(tmp_path / "x")]) == 3
    assert "part_2.csv: changed since the set was read" in capsys.readouterr().err
    assert not (tmp_path / "x" / "dataset.json").exists()
