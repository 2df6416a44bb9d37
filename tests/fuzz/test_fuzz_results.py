"""Results folders and `quantguard export-inputs`' dataset.json (docs/results.md), fuzzed: a valid
folder reads back to the same rows by sample id (a symlink to its output included); one carrying a
corruption the page refuses is a QuantGuardError naming the file or key, and exit 3 from
`quantguard compare` with the same words; generated `quantguard` arguments exit 0 to 3, never a
traceback (docs/development.md, "Fuzzing and faults")."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from fuzz_sets import FORMATS, expected, read_back, scratch, valid_sets, write
from hypothesis import given
from hypothesis import strategies as st

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.cli import main
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.results import Outputs, write_results

pytest.importorskip("PIL.Image")
RESULTS = "int8-results"  # a name no message holds by chance


def _results(folder: Path, draw) -> tuple[ValidationSet, dict[str, np.ndarray]]:
    """A set of the npy format and a results folder of it: outputs in a drawn row order."""
    data = draw(valid_sets("npy"))
    write(folder / "val", "npy", data)
    dataset = ValidationSet.from_folder(folder / "val")
    n = len(data.labels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    outputs = {"logits": rng.normal(size=(n, 3)).astype(draw(st.sampled_from(["f2", "f4", "f8"]))),
               "score": rng.integers(0, 9, size=n)}
    order = np.array(draw(st.permutations(range(n))), np.int64)
    write_results(folder / RESULTS, {name: array[order] for name, array in outputs.items()}, order,
                  data_digest=dataset.digest, provenance={"data": str(folder / "val")})
    return dataset, outputs


def _replayed(folder: Path, dataset: ValidationSet) -> dict[str, np.ndarray]:
    results = Outputs(folder)
    results.check_data(dataset)
    batches = [(batch.ids, results.outputs_for(batch)) for batch in dataset.batches(4)]
    return {name: np.concatenate([rows[name] for _, rows in batches]) for name in results.arrays}


@given(data=st.data(), linked=st.booleans())
def test_a_valid_results_folder_replays_the_same_rows_by_id(data, linked):
    with scratch() as folder:
        dataset, outputs = _results(folder, data.draw)
        if linked:  # a symlink to a store outside the folder is followed, as in data folders
            (folder / RESULTS / "logits.npy").rename(folder / "store.npy")
            (folder / RESULTS / "logits.npy").symlink_to(folder / "store.npy")
        replayed = _replayed(folder / RESULTS, dataset)
    for name, array in outputs.items():
        assert replayed[name].dtype == array.dtype
        np.testing.assert_array_equal(replayed[name], array)


def _document(folder: Path, edit) -> None:
    document = json.loads((folder / "results.json").read_text())
    edit(document)
    (folder / "results.json").write_text(json.dumps(document))


def _npy_file(folder, draw):
    return folder / draw(st.sampled_from(["logits.npy", "score.npy", "ids.npy"]))


def _truncated(folder, draw):
    file = draw(st.sampled_from([*folder.glob("*.npy"), folder / "results.json"]))
    data = file.read_bytes()
    file.write_bytes(data[:draw(st.integers(0, len(data) - 1))])
    return file.name


def _bad_array(folder, draw):
    """A pickled object array, text, a datetime or void dtype, a scalar, a short or 2-D array."""
    how = draw(st.sampled_from(["object", "text", "datetime", "void", "scalar", "short"]))
    file = folder / "logits.npy" if how == "scalar" else _npy_file(folder, draw)
    n = len(np.load(folder / "ids.npy"))
    array = {"object": np.array([None] * n, object), "text": np.array(["a"] * n),
             "datetime": np.zeros(n, "M8[s]"), "void": np.zeros(n, "V4"),
             "scalar": np.float32(1), "short": np.arange(n - 1)}[how]
    np.save(file, array, allow_pickle=True)
    return file.name if how in ("object", "text", "datetime", "void") or file.name == "ids.npy" \
        else RESULTS


def _duplicate_ids(folder, draw):
    ids = np.load(folder / "ids.npy")
    ids[draw(st.integers(1, len(ids) - 1))] = ids[0]
    np.save(folder / "ids.npy", ids)
    return "ids.npy"


def _bad_document(folder, draw):
    """Bad UTF-8, not JSON, not an object; a missing key; a wrong format, version, n, digest or
    outputs entry; an output file outside the folder or missing."""
    how = draw(st.sampled_from(["utf8", "json", "list", "missing", "format", "version", "n",
                                "digest", "outputs", "outside", "absent"]))
    edits = {
        "missing": lambda d: d.pop(draw(st.sampled_from(["format", "version", "outputs"]))),
        "format": lambda d: d.update(format="quantguard-inputs"),
        "version": lambda d: d.update(version=draw(st.sampled_from([0, 2, "1", None]))),
        "n": lambda d: d.update(n=draw(st.sampled_from([-1, 2**70, 0, "many"]))),
        "digest": lambda d: d.update(data_digest=draw(st.sampled_from([5, ["x"], "0" * 64]))),
        "outputs": lambda d: d.update(outputs=draw(st.sampled_from([[], {}, "logits", [None]]))),
        "outside": lambda d: d.update(outputs=[{"name": "logits", "file": "../val/inputs.npy"}]),
        "absent": lambda d: d.update(outputs=["logits", "probabilities"]),
    }
    if how == "utf8":
        (folder / "results.json").write_bytes(b'{"format": "quantguard-r\xffsults"}')
    elif how == "json":
        (folder / "results.json").write_text('{"format": "quantguard-results",')
    elif how == "list":
        (folder / "results.json").write_text("[]")
    else:
        _document(folder, edits[how])
    if how == "digest" and "0" * 64 in (folder / "results.json").read_text():
        return "sha256 000000000000"  # another set's digest: both are named
    return "probabilities.npy" if how == "absent" else "results.json"


def _not_finite(folder, draw):
    logits = np.load(folder / "logits.npy")
    logits.flat[draw(st.integers(0, logits.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    np.save(folder / "logits.npy", logits)
    return "NaN or Inf in output 'logits'"


def _typed_wrong(folder, draw):
    """ids that are not 1-D integers, complex or timedelta outputs, an unknown key, 'version' true,
    'n' as text, 'model' or 'provenance' not objects, an outputs entry or file not a string, an
    output listed twice."""
    how = draw(st.sampled_from(["ids-scalar", "ids-float", "complex", "timedelta", "typo", "version",
                                "n-text", "model", "provenance", "data", "entry", "file", "twice"]))
    n = len(np.load(folder / "ids.npy"))
    arrays = {"ids-scalar": ("ids.npy", np.int64(3)), "ids-float": ("ids.npy", np.arange(n) + 0.5),
              "complex": ("logits.npy", np.zeros((n, 3), np.complex64)),
              "timedelta": ("logits.npy", np.zeros(n, "m8[s]"))}
    if how in arrays:
        np.save(folder / arrays[how][0], arrays[how][1])
        return arrays[how][0]
    edits = {"typo": lambda d: d.update({"data-digest": d.pop("data_digest")}),
             "version": lambda d: d.update(version=True), "n-text": lambda d: d.update(n=str(n)),
             "model": lambda d: d.update(model=["int8.onnx"]),
             "provenance": lambda d: d.update(provenance="device"),
             "data": lambda d: d.update(provenance={"data": 5}),
             "entry": lambda d: d.update(outputs=[5]),
             "file": lambda d: d.update(outputs=[{"name": "logits", "file": 5}]),
             "twice": lambda d: d.update(outputs=["logits", "logits"])}
    _document(folder, edits[how])
    return "results.json"


CORRUPTIONS = [_truncated, _bad_array, _duplicate_ids, _bad_document, _not_finite, _typed_wrong]


@given(data=st.data())
def test_a_corrupted_results_folder_is_refused_naming_the_file_or_key(data, capsys):
    corrupt = data.draw(st.sampled_from(CORRUPTIONS))
    with scratch() as folder:
        _results(folder, data.draw)
        reference = Path(shutil.copytree(folder / RESULTS, folder / "reference"))
        named = corrupt(folder / RESULTS, data.draw)
        with pytest.raises(QuantGuardError) as refused:
            compare(str(reference), str(folder / RESULTS), data=str(folder / "val"))
        capsys.readouterr()
        status = main(["compare", str(reference), str(folder / RESULTS), "--data",
                       str(folder / "val")])
        err = capsys.readouterr().err
    assert named in str(refused.value), (corrupt.__name__, str(refused.value))
    assert status == 3 and named in err and "Traceback" not in err, err


@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_export_inputs_writes_the_set_as_read_and_a_matching_dataset_json(fmt, data):
    original = data.draw(valid_sets(fmt))
    with scratch() as folder:
        write(folder / "val", fmt, original)
        with redirect_stdout(io.StringIO()):
            assert main(["export-inputs", "--data", str(folder / "val"), "-o", str(folder / "x")]) == 0
        document = json.loads((folder / "x" / "dataset.json").read_text(encoding="utf-8"))
        loaded, _ = read_back(folder / "val")
        digest = ValidationSet.from_folder(folder / "val").digest
        (item,) = document["inputs"]
        inputs = np.load(folder / "x" / item["file"], allow_pickle=False)
        ids = np.load(folder / "x" / document["ids"], allow_pickle=False)
    assert (document["format"], document["version"], document["data_digest"], document["n"]) == \
        ("quantguard-inputs", 1, digest, len(original.labels))
    assert [*inputs.shape[1:]] == item["shape"] and inputs.dtype.str == item["dtype"]
    np.testing.assert_array_equal(inputs, expected(fmt, loaded).inputs)
    np.testing.assert_array_equal(ids, np.arange(len(original.labels)))


ARGUMENTS = st.sampled_from(["--data", "-o", "--out", "--max-drop", "--metric", "--batch-size",
                             "--confidence", "--gate", "--seed", "--bootstrap", "--memory",
                             "--report", "--device", "--output", "-h"]) | st.sampled_from(
    ["VAL", "RESULTS", "MODEL", "MISSING", "OUT", "0.01", "nan", "-1", "1e999", "auto", "upper",
     "accuracy", "cpu", "9" * 30, "", "\udcff"]) | st.text(max_size=6)


@given(data=st.data(), command=st.sampled_from(["export-inputs", "validate", "compare"]),
       arguments=st.lists(ARGUMENTS, max_size=7))
def test_the_workflow_commands_answer_every_argument_list_with_a_status(data, command, arguments):
    with scratch() as folder:
        _results(folder, data.draw)
        model = Path(__file__).resolve().parents[2] / "example_project" / "models" / "fp32.onnx"
        paths = {"VAL": folder / "val", "RESULTS": folder / RESULTS, "MODEL": model,
                 "MISSING": folder / "missing", "OUT": folder / "out"}
        argv = [command, *(str(paths.get(each, each)) for each in arguments)]
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        try:
            os.chdir(folder)  # relative -o paths land in the scratch folder
            with redirect_stdout(out), redirect_stderr(err):
                status = main(argv)
        finally:
            os.chdir(cwd)
    assert status in (0, 1, 2, 3), (argv, status)
    if status in (2, 3):
        assert "error:" in err.getvalue() and "Traceback" not in err.getvalue(), (argv, err.getvalue())
