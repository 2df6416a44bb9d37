"""Loading validation folders: formats, order, digests, and every bad input's message."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from conftest import MODELS, PROD_VAL
from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.errors import QuantGuardError


@pytest.fixture(scope="module")
def cancer():
    bunch = load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def write_shards(folder: pathlib.Path, inputs, labels, names) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, chunk in zip(names, np.array_split(np.arange(len(inputs)), len(names)), strict=True):
        np.savez(folder / name, inputs=inputs[chunk], labels=labels[chunk])
    return folder


def test_shards_load_in_natural_order(tmp_path, cancer):
    inputs, labels = cancer
    folder = write_shards(tmp_path / "val", inputs, labels,
                          ["shard_1.npz", "shard_2.npz", "shard_10.npz"])
    # natural order is shard_1, shard_2, shard_10 (lexical order would put shard_10 second)
    dataset = ValidationSet.from_folder(folder)
    assert dataset.n == len(labels) and dataset.task == "classification"
    np.testing.assert_array_equal(dataset.labels, labels)
    batches = list(dataset.batches(100))
    np.testing.assert_array_equal(np.concatenate([b.inputs["inputs"] for b in batches]), inputs)
    assert [b.origin.rsplit("/", 1)[1] for b in batches][-1] == "shard_10.npz"
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), np.arange(len(labels)))


def test_digest_is_stable_and_sensitive_to_content_and_names(tmp_path, cancer):
    inputs, labels = cancer
    first = write_shards(tmp_path / "a", inputs, labels, ["s1.npz", "s2.npz"])
    same = write_shards(tmp_path / "b", inputs, labels, ["s1.npz", "s2.npz"])
    renamed = write_shards(tmp_path / "c", inputs, labels, ["t1.npz", "t2.npz"])
    changed_labels = labels.copy()
    changed_labels[0] = 1 - changed_labels[0]
    changed = write_shards(tmp_path / "d", inputs, changed_labels, ["s1.npz", "s2.npz"])
    digest = ValidationSet.from_folder(first).digest
    assert ValidationSet.from_folder(same).digest == digest
    assert ValidationSet.from_folder(renamed).digest != digest
    assert ValidationSet.from_folder(changed).digest != digest


def test_in_memory_digest_covers_names_dtypes_shapes_and_bytes(cancer):
    inputs, labels = cancer
    digest = ValidationSet(inputs, labels).digest
    assert ValidationSet(inputs.copy(), labels.copy()).digest == digest
    assert ValidationSet(inputs.astype(np.float64), labels).digest != digest
    assert ValidationSet({"features": inputs}, labels).digest != digest
    assert ValidationSet(inputs.reshape(len(inputs), 3, 10), labels).digest != digest


def test_example_prod_val_is_held_out_digits():
    dataset = ValidationSet.from_folder(PROD_VAL)
    assert dataset.n == 899 and dataset.input_names == ["inputs"]
    assert np.bincount(dataset.labels).min() >= 85  # stratified: every digit well represented


def test_manifest_names_the_arrays(tmp_path, cancer):
    inputs, labels = cancer
    np.savez(tmp_path / "data.npz", features=inputs, target=labels)
    (tmp_path / "quantguard.toml").write_text('task = "classification"\ninputs = ["features"]\n'
                                              'labels = "target"\n')
    dataset = ValidationSet.from_folder(tmp_path)
    assert dataset.input_names == ["features"] and dataset.n == len(labels)
    digest_with_manifest = dataset.digest
    (tmp_path / "quantguard.toml").write_text('inputs = ["features"]\nlabels = "target"\n')
    assert ValidationSet.from_folder(tmp_path).digest != digest_with_manifest


class Tripwire:
    """Unpickling this would create a file: proof that nothing was unpickled if it is absent."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_pickled_object_array_is_refused_and_never_unpickled(tmp_path):
    tripwire = tmp_path / "unpickled"
    folder = tmp_path / "val"
    folder.mkdir()
    objects = np.empty(3, dtype=object)
    objects[:] = [Tripwire(tripwire) for _ in range(3)]
    np.savez(folder / "evil.npz", inputs=objects, labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(QuantGuardError, match=r"evil\.npz: array 'inputs' holds Python objects .* "
                                              r"never unpickles"):
        ValidationSet.from_folder(folder)
    assert not tripwire.exists()


@pytest.mark.parametrize(("setup", "match"), [
    (lambda d: None, r"validation data folder not found: .*missing"),
    (lambda d: d.mkdir(), r"no validation data found \(the folder has no \.npz files\)"),
    (lambda d: (d.mkdir(), (d / "bad.npz").write_bytes(b"not a zip file")),
     r"bad\.npz: not a readable \.npz file"),
    (lambda d: (d.mkdir(), np.savez(d / "x.npz", inputs=np.zeros((5, 2)), labels=np.zeros(4))),
     r"x\.npz: 4 labels for 5 input samples"),
    (lambda d: (d.mkdir(), np.savez(d / "x.npz", images=np.zeros((5, 2)), labels=np.zeros(5))),
     r"x\.npz: no array named 'inputs' \(it has 'images', 'labels'\)"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                np.savez(d / "b.npz", inputs=np.zeros((5, 3)), labels=np.zeros(5))),
     r"b\.npz: array 'inputs' has samples of shape \(3,\) .* but a\.npz has \(2,\)"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                np.save(d / "inputs.npy", np.zeros((5, 2)))),
     r"mixed data formats"),
    (lambda d: (d.mkdir(), (d / "table.csv").write_text("a,b\n1,0\n")),
     r"table\.csv: no label column 'label' \(the default\); the columns are 'a', 'b'"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                (d / "quantguard.toml").write_text('taks = "classification"\n')),
     r"quantguard\.toml: unknown key\(s\) taks \(taks: did you mean task\?\); the manifest keys "
     r"are task, inputs"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                (d / "quantguard.toml").write_text('label_column = "y"\n')),
     r"quantguard\.toml: label_column names a CSV column, but the data are \.npz shards; remove it"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                (d / "quantguard.toml").write_text('groups = "patient"\n')),
     r"a\.npz: no group array 'patient' \(named by groups = 'patient' in quantguard\.toml\)"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5),
                                    patient=np.zeros(4)),
                (d / "quantguard.toml").write_text('groups = "patient"\n')),
     r"a\.npz: group array 'patient' has shape \[4\]; it needs one id per sample \(5\)"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((5, 2)), labels=np.zeros(5)),
                (d / "quantguard.toml").write_text('task = "clasification"\n')),
     r"task = 'clasification' is unknown"),
    (lambda d: (d.mkdir(), np.savez(d / "a.npz", inputs=np.zeros((0, 2)), labels=np.zeros(0))),
     r"the validation set is empty"),
])
def test_bad_folders_name_the_file_and_the_fix(tmp_path, setup, match):
    folder = tmp_path / "missing"
    setup(folder)
    with pytest.raises(QuantGuardError, match=match):
        ValidationSet.from_folder(folder)


def test_npz_without_labels_fails_the_accuracy_comparison_clearly(tmp_path):
    shutil.copy(MODELS / "fp32.onnx", tmp_path)
    data = np.load(PROD_VAL / "digits_heldout.npz")
    np.savez(tmp_path / "nolabels.npz", inputs=data["inputs"])
    with pytest.raises(QuantGuardError, match=r"metric 'accuracy' needs labels, and the validation "
                                              r"set has none; save them beside the inputs"):
        compare(tmp_path / "fp32.onnx", tmp_path / "fp32.onnx", data=tmp_path / "nolabels.npz",
                metric="accuracy")
    # without a metric, a set without labels is a label-free fidelity gate (top-1 agreement)
    fidelity = compare(tmp_path / "fp32.onnx", tmp_path / "fp32.onnx", data=tmp_path / "nolabels.npz")
    assert (fidelity.metric, fidelity.method, fidelity.reference_score) == ("agreement", "wilson", 1.0)
    assert fidelity.candidate_score == 1.0 and fidelity.interval.low == 0.0 < fidelity.interval.high


@pytest.mark.parametrize(("args", "match"), [
    ((np.zeros((4, 2)), np.zeros(3)), r"3 labels for 4 input samples"),
    ((np.zeros((4, 2)), np.zeros((4, 2))), r"labels must be 1-D"),
    (({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))},), r"different numbers of samples"),
    ((np.array([object()] * 4),), r"object array"),
])
def test_bad_in_memory_sets(args, match):
    with pytest.raises(QuantGuardError, match=match):
        ValidationSet(*args)


def test_subset_keeps_order_and_labels(cancer):
    inputs, labels = cancer
    subset = ValidationSet(inputs, labels).subset([5, 2, 9])
    np.testing.assert_array_equal(subset.labels, labels[[5, 2, 9]])
