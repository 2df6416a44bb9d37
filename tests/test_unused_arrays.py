"""Data the user meant: arrays nothing uses warn with the manifest line that would use them; a set
left label-free beside an integer array of one value per sample says it looks like labels; text
labels name the file; a data= folder that is missing does not advise --quant-data
(docs/data.md, "Arrays nothing uses")."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from pytest_quantguard import QuantGuardWarning, ValidationSet, compare
from pytest_quantguard.errors import QuantGuardError


@pytest.fixture(scope="module")
def cancer():
    inputs, labels = load_breast_cancer(return_X_y=True)
    return inputs[:120].astype(np.float32), labels[:120]


def test_inputs_named_without_labels_say_y_looks_like_labels(tmp_path, cancer):
    """The issue's row: following the advice inputs = ["X"] without labels = "y" silently made
    the set label-free."""
    x, y = cancer
    np.savez(tmp_path / "data.npz", X=x, y=y)
    (tmp_path / "quantguard.toml").write_text('inputs = ["X"]\n')
    with pytest.warns(QuantGuardWarning, match=r"data\.npz: 1 array\(s\) nothing uses .*'y' looks like "
                                               r"labels \(one integer per sample\) but the set has "
                                               r"none.*add labels = \"y\" to .*quantguard\.toml"):
        data = ValidationSet.from_folder(tmp_path)
    assert not data.has_labels and data.task == "fidelity"


def test_npy_arrays_named_without_labels_say_so_too(tmp_path, cancer):
    x, y = cancer
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "y.npy", y.astype(np.int32))
    (tmp_path / "quantguard.toml").write_text('inputs = ["X"]\n')
    with pytest.warns(QuantGuardWarning, match=r"'y' looks like labels .*add labels = \"y\""):
        ValidationSet.from_folder(tmp_path)
    (tmp_path / "quantguard.toml").write_text('inputs = ["X"]\nlabels = "y"\n')
    assert ValidationSet.from_folder(tmp_path).has_labels  # used: no warning (warnings are errors)


def test_an_unused_feature_array_names_the_inputs_line(tmp_path, cancer):
    x, y = cancer
    np.savez(tmp_path / "shard_0.npz", inputs=x[:, :20], extra=x[:, 20:], labels=y)
    with pytest.warns(QuantGuardWarning, match=r"'extra' \(shape \[120, 10\], float32\) is not used: "
                                               r"to feed it to the model add it to .*quantguard\.toml: "
                                               r"inputs = \[\"inputs\", \"extra\"\]"):
        data = ValidationSet.from_folder(tmp_path)
    assert data.has_labels and data.input_names == ["inputs"]


def test_text_labels_name_the_file(tmp_path, cancer):
    x, y = cancer
    np.savez(tmp_path / "shard_0.npz", inputs=x, labels=np.where(y == 1, "benign", "malignant"))
    with pytest.raises(QuantGuardError, match=r"shard_0\.npz: the labels are text \(<U9\); save class "
                                              r"indices 0..K-1 instead .* class_names = \[\.\.\.\]"):
        ValidationSet.from_folder(tmp_path)
    with pytest.raises(QuantGuardError, match=r"ValidationSet\(labels=\.\.\.\): the labels are text"):
        ValidationSet(x, np.where(y == 1, "benign", "malignant"))


def test_a_missing_data_folder_given_as_data_does_not_advise_the_option(tmp_path, cancer):
    with pytest.raises(QuantGuardError, match=r"validation data folder not found: .*nowhere") as error:
        compare(lambda batch: batch, lambda batch: batch, data=tmp_path / "nowhere")
    assert "--quant-data" not in str(error.value) and "with data=" in str(error.value)
    with pytest.raises(QuantGuardError, match=r"with --quant-data DIR, or quant_data in the ini file"):
        ValidationSet.from_folder(tmp_path / "nowhere")  # the plugin's path keeps its advice


def test_a_missing_folder_given_to_quant_compare_names_its_keyword(pytester):
    pytester.makepyfile('''
        def test_gate(quant_compare):
            quant_compare(lambda x: x, lambda x: x, data="no_such_folder")
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*validation data folder not found*no_such_folder*with data= of "
                                 "quant_compare (relative to the rootdir)*"])
    assert "--quant-data" not in result.stdout.str()
