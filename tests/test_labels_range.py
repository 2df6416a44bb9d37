"""Labels the models cannot produce are an error naming how many, which and the likely cause; an
explicit ignore label leaves open-set samples out (docs/data.md, "Labels the models cannot
produce", "Ignored labels"). Real scikit-learn models on scikit-learn datasets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression

from pytest_quantguard import QuantGuardWarning, ValidationSet, compare
from pytest_quantguard.cache import ReferenceCache
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.inference import infer
from pytest_quantguard.metrics import get_metric
from pytest_quantguard.runners import make_runner


@pytest.fixture(scope="module")
def cancer():
    """Breast cancer (2 classes): a logistic regression and a coarser copy of it."""
    inputs, labels = load_breast_cancer(return_X_y=True)
    inputs = (inputs - inputs.mean(axis=0)) / inputs.std(axis=0)
    model = LogisticRegression(max_iter=5000).fit(inputs[:300], labels[:300])
    coarse = np.round(model.coef_ * 4) / 4
    return {"x": inputs[300:], "y": labels[300:], "proba": model.predict_proba,
            "coarse": lambda batch: batch @ coarse.T + model.intercept_,
            "positive": lambda batch: model.predict_proba(batch)[:, 1:],
            "ids": lambda batch: model.predict(batch).astype(np.int64)}


@pytest.fixture(scope="module")
def digits():
    inputs, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(inputs[:900] / 16, labels[:900])
    return {"x": inputs[900:] / 16, "y": labels[900:], "proba": model.predict_proba,
            "ids": lambda batch: model.predict(batch).astype(np.int64)}


def test_one_based_labels_on_a_two_class_model_are_an_error(cancer):
    """The issue's row: labels stored 1-based for a 2-class model shipped with a warning."""
    labels = cancer["y"] + 1
    count = int(np.sum(labels == 2))
    with pytest.raises(QuantGuardError, match=rf"{count} of {len(labels)} labels are classes the models "
                                              r"cannot produce \(2\): the models give 2 class scores "
                                              r"\(classes 0..1\)\. The labels run 1..2: they look "
                                              r"1-based; store them 0-based \(labels - 1\)"):
        compare(cancer["proba"], cancer["coarse"], data=(cancer["x"], labels))


def test_every_label_outside_ten_classes_is_an_error_pointing_at_the_output(digits):
    labels = digits["y"] + 10  # another encoding: no label is one of the 10 classes
    with pytest.raises(QuantGuardError, match=rf"{len(labels)} of {len(labels)} labels .*\(10, 11, 12, "
                                              r"13, 14, … \(5 more values\)\): .* No label is a class "
                                              r"of these models: the wrong output may be chosen"):
        compare(digits["proba"], digits["proba"], data=(digits["x"], labels))


def test_a_one_column_binary_output_with_labels_one_and_two_is_an_error(cancer):
    """One probability column counts as the two classes 0 and 1 (docs/data.md)."""
    with pytest.raises(QuantGuardError, match=r"the models give one score per sample, thresholded into "
                                              r"classes 0 and 1\. The labels run 1..2: they look 1-based"):
        compare(cancer["positive"], cancer["positive"], data=(cancer["x"], cancer["y"] + 1))


def test_class_id_outputs_refuse_shifted_labels_but_not_a_rare_class(digits):
    with pytest.raises(QuantGuardError, match=r"predict class ids up to 9\. The labels run 1..10: they "
                                              r"look 1-based"):
        compare(digits["ids"], digits["ids"], data=(digits["x"], digits["y"] + 1))
    # a genuine class 10 that neither model predicts (a rare class): warned, not refused
    labels = digits["y"].copy()
    labels[:3] = 10
    with pytest.warns(QuantGuardWarning, match=r"3 of \d+ labels are classes the models cannot "
                                               r"produce \(10\).*this is a rare class"):
        result = compare(digits["ids"], digits["ids"], data=(digits["x"], labels))
    assert result.n == len(labels)


def test_in_range_labels_raise_nothing(cancer):
    result = compare(cancer["proba"], cancer["coarse"], data=(cancer["x"], cancer["y"]))
    assert result.n == len(cancer["y"])


def test_ignore_label_in_memory_leaves_samples_out_and_counts_them(digits):
    labels = digits["y"].copy()
    labels[::10] = -1  # open-set samples: no class of the model
    ignored = int(np.sum(labels == -1))
    data = ValidationSet(digits["x"], labels, ignore_label=-1)
    assert data.n == len(labels) - ignored and data.ignored_labels == ignored
    assert not np.any(data.labels == -1)
    inferred = infer(data, [get_metric("accuracy", "classification")],
                     make_runner(digits["proba"], role="reference"),
                     make_runner(digits["proba"], role="candidate"), None, 64, ReferenceCache(None))
    assert inferred.ignored_labels == ignored and len(inferred.labels) == data.n
    assert compare(digits["proba"], digits["proba"], data=data).n == data.n
    with pytest.raises(QuantGuardError, match=r"2 of 20 labels .*\(-1\).* The one value -1 "
                                              r"often marks samples of no class: if so, set "
                                              r"ignore_label = -1"):  # without it: refused
        compare(digits["proba"], digits["proba"], data=(digits["x"][:20], labels[:20]))


def test_ignore_label_in_the_manifest(tmp_path, cancer):
    labels = cancer["y"].copy()
    labels[:25] = 7  # samples of no class
    np.savez(tmp_path / "shard_0.npz", inputs=cancer["x"], labels=labels)
    (tmp_path / "quantguard.toml").write_text("ignore_label = 7\n")
    data = ValidationSet.from_folder(tmp_path)
    assert data.n == len(labels) - 25 and data.ignored_labels == 25
    assert data.path == tmp_path and len(data.digest) == 64
    result = compare(cancer["proba"], cancer["coarse"], data=tmp_path)
    assert result.n == len(labels) - 25
    assert data.subset(np.arange(10)).ignored_labels == 25  # a --quant-max-samples subset keeps it


@pytest.mark.parametrize(("manifest", "error"), [
    ('ignore_label = "none"\n', r"ignore_label must be one integer class label"),
    ('task = "regression"\nignore_label = -1\n', r"ignore_label leaves out samples by their class "
                                                  r"label, but this is a regression set; remove it"),
    ("ignore_label = 0\nignor = 1\n", r"unknown key\(s\) ignor \(ignor: did you mean ignore_label\?\)"),
])
def test_bad_ignore_labels_name_the_file(tmp_path, cancer, manifest, error):
    np.savez(tmp_path / "shard_0.npz", inputs=cancer["x"], labels=cancer["y"])
    (tmp_path / "quantguard.toml").write_text(manifest)
    with pytest.raises(QuantGuardError, match=r"quantguard\.toml.*" + error):
        ValidationSet.from_folder(tmp_path)


def test_every_label_ignored_is_an_error(cancer):
    with pytest.raises(QuantGuardError, match=r"every one of the 5 labels is the ignore label 3"):
        ValidationSet(cancer["x"][:5], np.full(5, 3), ignore_label=3)
