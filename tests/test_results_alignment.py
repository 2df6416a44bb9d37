"""Results matched to the set beyond their ids (docs/results.md): a candidate whose agreement
with the reference is no better than chance is flagged as likely misaligned, and per-sample input
hashes stand in for ids (matched, refused, identical inputs paired in order)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE, MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.cli import main
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.results import HASHES_FILE, input_hashes, sample_hashes

DIABETES = EXAMPLE / "prod_val_diabetes"


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`quantguard validate` of the digits and diabetes pairs, and `export-inputs` of digits."""
    out = tmp_path_factory.mktemp("results")
    for stem, data in (("fp32", PROD_VAL), ("int8", PROD_VAL), ("diabetes_fp32", DIABETES),
                       ("diabetes_int8", DIABETES)):
        assert main(["validate", str(MODELS / f"{stem}.onnx"), "--data", str(data),
                     "-o", str(out / stem)]) == 0
    assert main(["export-inputs", "--data", str(PROD_VAL), "-o", str(out / "inputs")]) == 0
    return out


def _shuffled_rows(source: Path, target: Path, output: str, seed: int = 3) -> Path:
    """The results with their rows permuted and the ids left in order: a misaligned writer."""
    shutil.copytree(source, target)
    rows = np.load(target / f"{output}.npy")
    np.save(target / f"{output}.npy", rows[np.random.default_rng(seed).permutation(len(rows))])
    return target


def _check(comparison, name: str = "misaligned") -> dict:
    return next(check for check in comparison.details["reference_checks"] if check["check"] == name)


def _figures(comparison) -> tuple:
    record = comparison.to_dict()
    return record["drop"], record["interval"], record["verdict"], record["candidate"]["score"]


def test_rows_shuffled_behind_ordered_ids_are_flagged_as_misaligned(validated, tmp_path, capsys):
    real = compare(str(validated / "fp32"), str(validated / "int8"), data=str(PROD_VAL))
    assert real.passed and _check(real)["passed"] and _check(real)["value"] > 0.9
    shuffled = _shuffled_rows(validated / "int8", tmp_path / "shuffled", "logits")
    with pytest.warns(Warning, match="misaligned"):
        found = compare(str(validated / "fp32"), str(shuffled), data=str(PROD_VAL))
    check = _check(found)
    assert not check["passed"] and check["statistic"] == "kappa" and check["lower"] <= 0
    assert str(shuffled) in check["rule"] and "likely misaligned" in check["rule"]
    assert "ids.npy" in check["rule"] and not found.passed
    assert "FAILED check: misaligned" in found.message
    capsys.readouterr()
    assert main(["compare", str(validated / "fp32"), str(shuffled)]) == 1
    assert "stay-fp16" in capsys.readouterr().out


def test_a_model_candidate_is_not_checked_for_alignment(validated):
    found = compare(str(MODELS / "fp32.onnx"), str(MODELS / "int2.onnx"), data=str(PROD_VAL))
    assert [check["check"] for check in found.details["reference_checks"]] == ["chance"]


def test_regression_results_shuffled_are_flagged_by_their_correlation(validated, tmp_path):
    real = compare(str(validated / "diabetes_fp32"), str(validated / "diabetes_int8"),
                   data=str(DIABETES))
    assert _check(real)["passed"] and _check(real)["statistic"] == "correlation"
    output = json.loads((validated / "diabetes_int8" / "results.json").read_text())["outputs"][0]
    shuffled = _shuffled_rows(validated / "diabetes_int8", tmp_path / "shuffled", output["name"])
    with pytest.warns(Warning, match="misaligned"):
        found = compare(str(validated / "diabetes_fp32"), str(shuffled), data=str(DIABETES))
    assert not _check(found)["passed"] and abs(_check(found)["value"]) < 0.2


def _hashed(validated: Path, target: Path, order: np.ndarray) -> Path:
    """int8's results keyed by input hashes (no ids.npy), rows in ``order``."""
    shutil.copytree(validated / "int8", target)
    (target / "ids.npy").unlink()
    np.save(target / "logits.npy", np.load(target / "logits.npy")[order])
    np.save(target / HASHES_FILE, np.load(validated / "inputs" / "hashes.npy")[order])
    document = json.loads((target / "results.json").read_text())
    (target / "results.json").write_text(json.dumps({**document, "n": len(order)}))
    return target


def test_export_writes_the_hashes_a_plain_numpy_loop_computes(validated):
    dataset = json.loads((validated / "inputs" / "dataset.json").read_text())
    exported = np.load(validated / "inputs" / dataset["hashes"])
    inputs = {item["name"]: np.load(validated / "inputs" / item["file"])
              for item in dataset["inputs"]}
    import hashlib

    first = hashlib.sha256(b"".join(np.ascontiguousarray(array[5]).tobytes()
                                    for array in inputs.values())).digest()
    assert bytes(exported[5]) == first
    assert np.array_equal(exported, sample_hashes(inputs))
    from pytest_quantguard.data import ValidationSet

    assert np.array_equal(exported, input_hashes(ValidationSet.from_folder(PROD_VAL)))


def test_results_keyed_by_input_hashes_gate_like_ids(validated, tmp_path):
    order = np.random.default_rng(11).permutation(899)
    hashed = _hashed(validated, tmp_path / "hashed", order)
    direct = compare(str(validated / "fp32"), str(validated / "int8"), data=str(PROD_VAL))
    found = compare(str(validated / "fp32"), str(hashed), data=str(PROD_VAL))
    assert _figures(found) == _figures(direct)
    assert _check(found)["matched_by"] == "input hashes" and _check(found)["passed"]


def test_a_hash_not_in_the_set_is_refused_naming_both(validated, tmp_path, capsys):
    hashed = _hashed(validated, tmp_path / "foreign", np.arange(899))
    hashes = np.load(hashed / HASHES_FILE)
    hashes[4] = 0
    np.save(hashed / HASHES_FILE, hashes)
    capsys.readouterr()
    assert main(["compare", str(validated / "fp32"), str(hashed)]) == 3
    err = capsys.readouterr().err
    assert "input_hashes.npy does not hold the input hashes of the validation set" in err
    assert "1 rows hash inputs not in the set (first rows [4])" in err
    assert "1 samples have no row (first ids [4])" in err and "prod_val" in err
    short = _hashed(validated, tmp_path / "short", np.arange(898))
    with pytest.raises(QuantGuardError, match=r"hold 898 samples.*has 899"):
        compare(str(validated / "fp32"), str(short), data=str(PROD_VAL))


def test_ids_and_hashes_together_are_cross_checked(validated, tmp_path):
    both = _hashed(validated, tmp_path / "both", np.arange(899))
    np.save(both / "ids.npy", np.arange(899))
    assert _check(compare(str(validated / "fp32"), str(both), data=str(PROD_VAL)))["matched_by"] \
        == "ids, hashes verified"
    hashes = np.load(both / HASHES_FILE)
    np.save(both / HASHES_FILE, hashes[np.r_[1, 0, 2:899]])
    with pytest.raises(QuantGuardError, match=r"2 rows of input_hashes.npy are not the input hash"):
        compare(str(validated / "fp32"), str(both), data=str(PROD_VAL))


def test_identical_inputs_are_paired_in_order_of_appearance(tmp_path):
    with np.load(PROD_VAL / "digits_heldout.npz") as data:
        inputs, labels = data["inputs"], data["labels"]
    copies = np.arange(10)  # ten samples repeated at the end: twenty rows, ten hashes
    folder = tmp_path / "with_copies"
    folder.mkdir()
    np.savez(folder / "digits.npz", inputs=np.concatenate([inputs, inputs[copies]]),
             labels=np.concatenate([labels, labels[copies]]))
    assert main(["validate", str(MODELS / "int8.onnx"), "--data", str(folder), "-o",
                 str(tmp_path / "int8")]) == 0
    assert main(["export-inputs", "--data", str(folder), "-o", str(tmp_path / "inputs")]) == 0
    results = tmp_path / "int8"
    order = np.random.default_rng(5).permutation(909)
    (results / "ids.npy").unlink()
    np.save(results / "logits.npy", np.load(results / "logits.npy")[order])
    np.save(results / HASHES_FILE, np.load(tmp_path / "inputs" / "hashes.npy")[order])
    with pytest.warns(QuantGuardWarning, match="repeat an earlier sample"):
        found = compare(str(MODELS / "fp32.onnx"), str(results), data=str(folder))
        direct = compare(str(MODELS / "fp32.onnx"), str(MODELS / "int8.onnx"), data=str(folder))
    assert _figures(found) == _figures(direct)
    assert "20 samples with identical inputs paired in order" in _check(found)["rule"]
