"""Bad validation data in the new formats: each gets a QuantGuardError naming the file and the fix."""

from __future__ import annotations

import pathlib
import pickle
import sys

import numpy as np
import pytest

from pytest_quantguard import ValidationSet
from pytest_quantguard.errors import MissingBackendError, QuantGuardError

Image = pytest.importorskip("PIL.Image")


class Tripwire:
    """Unpickling this would create a file: proof that nothing was unpickled if it is absent."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def tripwires(path, n=3):
    objects = np.empty(n, dtype=object)
    objects[:] = [Tripwire(path) for _ in range(n)]
    return objects


@pytest.mark.parametrize("role", ["inputs", "labels"])
def test_pickled_npy_is_refused_and_never_unpickled(tmp_path, role):
    tripwire = tmp_path / "unpickled"
    arrays = {"inputs": np.zeros((3, 2), np.float32), "labels": np.zeros(3, np.int64)}
    arrays[role] = tripwires(tripwire)
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=True)
    with pytest.raises(QuantGuardError, match=rf"{role}\.npy: the .*array holds Python objects "
                                              r"\(a pickled object array\); quantguard never unpickles"):
        list(ValidationSet.from_folder(tmp_path).batches(2))
    assert not tripwire.exists()


def test_a_pickle_saved_as_npy_is_not_read(tmp_path):
    tripwire = tmp_path / "unpickled"
    (tmp_path / "inputs.npy").write_bytes(pickle.dumps(Tripwire(tripwire)))
    with pytest.raises(QuantGuardError, match=r"inputs\.npy: not a readable \.npy file .*re-save the "
                                              r"input 'inputs' with np\.save"):
        ValidationSet.from_folder(tmp_path)
    assert not tripwire.exists()


def png(folder, name, shape=(8, 8), value=0):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(folder / name)


def truncate(file, keep=0.5):
    data = file.read_bytes()
    file.write_bytes(data[:int(len(data) * keep)])


def csv_table(folder, text, name="t.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def manifest(folder, text):
    (folder / "quantguard.toml").write_text(text)


def npy(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)


X, Y = np.zeros((5, 2), np.float32), np.arange(5) % 2

CASES = {
    # an empty folder, or one without data
    "empty folder": (lambda d: d.mkdir(), r"missing: no validation data found"),
    "only notes": (lambda d: csv_table(d, "hello", name="notes.txt"), r"no validation data found"),
    # shards / samples of different shapes
    "csv headers differ": (lambda d: (csv_table(d, "a,b,label\n1,2,0\n", "s1.csv"),
                                      csv_table(d, "a,c,label\n1,2,0\n", "s2.csv")),
                           r"s2\.csv: its columns \('a', 'c', 'label'\) differ from s1\.csv's "
                           r"\('a', 'b', 'label'\); give every CSV shard the same header"),
    "images of two sizes": (lambda d: (png(d / "a", "1.png"), png(d / "b", "2.png", (8, 9))),
                            r"b/2\.png: 9×8 L image, but .*a/1\.png is 8×8 L; every image must have "
                            r"one size and mode"),
    "images of two modes": (lambda d: (png(d / "a", "1.png"), png(d / "b", "2.png", (8, 8, 3))),
                            r"b/2\.png: 8×8 RGB image, but .*8×8 L"),
    "npy inputs of two lengths": (
        lambda d: (npy(d, input_ids=np.zeros((5, 4)), attention_mask=np.zeros((4, 4))),
                   manifest(d, 'inputs = ["input_ids", "attention_mask"]\n')),
        r"the input arrays have different numbers of samples \{'input_ids\.npy': 5, "
        r"'attention_mask\.npy': 4\}"),
    "npy labels too few": (lambda d: npy(d, inputs=X, labels=Y[:4]),
                           r"labels\.npy: 4 labels for 5 input samples"),
    "npy 2-D labels": (lambda d: npy(d, inputs=X, labels=np.zeros((5, 2))),
                       r"labels\.npy: labels must be 1-D"),
    "truncated npy": (lambda d: (npy(d, inputs=np.zeros((64, 64))), truncate(d / "inputs.npy")),
                      r"inputs\.npy: truncated \(.* bytes, the header promises .*\); copy or re-save"),
    # unknown keys
    "unknown preprocess key": (lambda d: (npy(d, inputs=X), manifest(d, "[preprocess]\nscael = 2\n")),
                               r"quantguard\.toml: unknown \[preprocess\] key\(s\) scael; the "
                               r"\[preprocess\] keys are scale, mean, std, layout, inputs"),
    "preprocess not a table": (lambda d: (npy(d, inputs=X), manifest(d, "preprocess = 2\n")),
                               r"quantguard\.toml: preprocess must be a table"),
    "bad layout": (lambda d: (npy(d, inputs=X), manifest(d, '[preprocess]\nlayout = "CHW"\n')),
                   r"quantguard\.toml: \[preprocess\] layout = 'CHW' is unknown; use \"NCHW\""),
    "bad scale": (lambda d: (npy(d, inputs=X), manifest(d, '[preprocess]\nscale = "1/0"\n')),
                  r"\[preprocess\] scale must be a number or a fraction such as \"1/255\""),
    "zero std": (lambda d: (npy(d, inputs=X), manifest(d, "[preprocess]\nstd = [1, 0]\n")),
                 r"\[preprocess\] std has a 0"),
    "mean per channel mismatch": (
        lambda d: (npy(d, inputs=np.zeros((2, 4, 4, 3))), manifest(d, "[preprocess]\nmean = [1, 2]\n")),
        r"\[preprocess\] mean has 2 values but input 'inputs' has 3 channel\(s\) on its last axis"),
    "NCHW on a table": (lambda d: (npy(d, inputs=X), manifest(d, '[preprocess]\nlayout = "NCHW"\n')),
                        r'layout = "NCHW" needs image samples .* input \'inputs\' has samples of shape '
                        r"\[2\]"),
    "preprocess with several inputs": (
        lambda d: (npy(d, a=X, b=X), manifest(d, 'inputs = ["a", "b"]\n[preprocess]\nscale = 2\n')),
        r"the data has several inputs \['a', 'b'\]; name the ones to preprocess: \[preprocess\] "
        r'inputs = \["a"\]'),
    # manifest names that do not exist in the data
    "npy input missing": (
        lambda d: (npy(d, input_ids=np.zeros((5, 4))),
                   manifest(d, 'inputs = ["input_ids", "attention_mask"]\n')),
        r"attention_mask\.npy: not found, but .*quantguard\.toml names 'attention_mask' in inputs; "
        r"the folder's \.npy files are input_ids\.npy"),
    "npy labels missing": (lambda d: (npy(d, inputs=X), manifest(d, 'labels = "target"\n')),
                           r"target\.npy: not found, but .*quantguard\.toml names 'target' in labels"),
    "npy groups missing": (lambda d: (npy(d, inputs=X), manifest(d, 'groups = "doc_id"\n')),
                           r"doc_id\.npy: not found, but .*quantguard\.toml names 'doc_id' in groups"),
    "no inputs.npy": (lambda d: npy(d, features=X),
                      r"no inputs\.npy \(the folder's \.npy files are features\.npy\); name the input "
                      r"array inputs\.npy, or list the arrays in quantguard\.toml"),
    "csv input column missing": (lambda d: (csv_table(d, "a,b,label\n1,2,0\n"),
                                            manifest(d, 'inputs = ["a", "z"]\n')),
                                 r"t\.csv: no column\(s\) 'z' \(named by inputs in quantguard\.toml\); "
                                 r"the columns are 'a', 'b', 'label'"),
    "csv group column missing": (lambda d: (csv_table(d, "a,b,label\n1,2,0\n"),
                                            manifest(d, 'groups = "patient"\n')),
                                 r"t\.csv: no column 'patient' \(named by groups in quantguard\.toml\)"),
    "preprocess input missing": (
        lambda d: (npy(d, inputs=X), manifest(d, '[preprocess]\ninputs = ["pixels"]\nscale = 2\n')),
        r"\[preprocess\] inputs names \['pixels'\], which the data does not have; its inputs are "
        r"\['inputs'\]"),
    "class folder not in class_names": (
        lambda d: (png(d / "cat", "1.png"), png(d / "dgo", "2.png"),
                   manifest(d, 'class_names = ["cat", "dog"]\n')),
        r"dgo: class folder 'dgo' is not in class_names of .*quantguard\.toml \(\['cat', 'dog'\]\)"),
    "labels outside class_names": (
        lambda d: (npy(d, inputs=X, labels=np.array([0, 1, 2, 0, 1])),
                   manifest(d, 'class_names = ["a", "b"]\n')),
        r"labels\.npy: label 2 is not a class index for the 2 class_names of .*; labels must be 0\.\.1"),
    # CSV without its label column, and bad cells
    "csv without label column": (lambda d: csv_table(d, "a,b,target\n1,2,0\n"),
                                 r"t\.csv: no label column 'label' \(the default\); the columns are "
                                 r"'a', 'b', 'target'\. Name the label column in quantguard\.toml: "
                                 r'label_column = "\.\.\."'),
    "csv named label column missing": (lambda d: (csv_table(d, "a,b,label\n1,2,0\n"),
                                                  manifest(d, 'label_column = "y"\n')),
                                       r"t\.csv: no label column 'y' \(named by label_column in "
                                       r"quantguard\.toml\)"),
    "csv text cell": (lambda d: csv_table(d, "a,b,label\n1,2,0\n3,oops,1\n"),
                      r"t\.csv, line 3, column 'b': 'oops' is not a number"),
    "csv empty cell": (lambda d: csv_table(d, "a,b,label\n1,2,0\n\n3,,1\n"),
                       r"t\.csv, line 4, column 'b': empty cell; fill in the value"),
    "csv ragged row": (lambda d: csv_table(d, "a,b,label\n1,2,0\n3,1\n"),
                       r"t\.csv, line 3: 2 cells but the header has 3 columns"),
    "csv text label": (lambda d: csv_table(d, "a,b,label\n1,2,cat\n"),
                       r"t\.csv, line 2, column 'label': label 'cat' is not a number; write class "
                       r"indices .* or list the class names in quantguard\.toml"),
    "csv unnamed index column": (lambda d: csv_table(d, ",a,label\n0,1,0\n"),
                                 r"t\.csv: column 1 has no name \(a saved DataFrame index\?\)"),
    "csv not utf-8": (lambda d: (d.mkdir(), (d / "t.csv").write_bytes(b"a,label\n\xff\xfe,0\n")),
                      r"t\.csv: not UTF-8 text"),
    "csv empty": (lambda d: csv_table(d, "\n"), r"t\.csv: empty \(no header row\)"),
    "csv no rows": (lambda d: csv_table(d, "a,label\n"), r"the validation set is empty"),
    # unreadable images
    "truncated png": (lambda d: (png(d / "a", "1.png", (64, 64, 3), 7), png(d / "a", "2.png", (64, 64, 3)),
                                 truncate(d / "a" / "2.png")),
                      r"a/2\.png: not a readable image \(.*\); re-save it as PNG or JPEG, or remove it"),
    "not an image": (lambda d: (png(d / "a", "1.png"), (d / "a" / "2.jpg").write_bytes(b"GIF89a...")),
                     r"a/2\.jpg: not a readable image"),
    "loose images": (lambda d: png(d, "1.png"),
                     r"images \(1\.png\) must sit in one folder per class"),
    # mixed formats without a manifest, and manifest keys that do not fit the format
    "npz and csv": (lambda d: (csv_table(d, "a,label\n1,0\n"), np.savez(d / "a.npz", inputs=X, labels=Y)),
                    r"mixed data formats \(a\.npz, t\.csv\); keep one format per folder"),
    "npy and image folder": (lambda d: (npy(d, inputs=X), png(d / "cat", "1.png")),
                             r"mixed data formats \(inputs\.npy, cat\)"),
    "csv and a loose image": (lambda d: (csv_table(d, "a,label\n1,0\n"), png(d, "x.png")),
                              r"mixed data formats \(t\.csv, x\.png\)"),
    "label_column on npy": (lambda d: (npy(d, inputs=X), manifest(d, 'label_column = "y"\n')),
                            r"quantguard\.toml: label_column names a CSV column, but the data are \.npy "
                            r'arrays; remove it \(name the labels array with labels = "\.\.\."\)'),
    "labels on csv": (lambda d: (csv_table(d, "a,y\n1,0\n"), manifest(d, 'labels = "y"\n')),
                      r"for CSV tables name the label column with label_column = 'y' instead"),
    "groups on images": (lambda d: (png(d / "a", "1.png"), manifest(d, 'groups = "g"\n')),
                         r"image folders take their labels from the class folders and have no groups; "
                         r"remove groups"),
    "two names for an image input": (lambda d: (png(d / "a", "1.png"), manifest(d, 'inputs = ["a", "b"]\n')),
                                     r"an image folder has one input"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_data_names_the_file_and_the_fix(tmp_path, case):
    setup, match = CASES[case]
    folder = tmp_path / "missing"
    setup(folder)
    with pytest.raises(QuantGuardError, match=match):
        dataset = ValidationSet.from_folder(folder)
        list(dataset.batches(4))  # errors found only when reading count too
        dataset.labels  # noqa: B018


def test_a_truncated_jpeg_is_named_when_decoded(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "1.jpg", quality=95)
    truncate(tmp_path / "a" / "1.jpg", keep=0.7)
    with pytest.raises(QuantGuardError, match=r"a/1\.jpg: not a readable image"):
        list(ValidationSet.from_folder(tmp_path).batches(4))


def test_single_npy_file_asks_for_its_folder_and_single_csv_loads(tmp_path):
    npy(tmp_path, inputs=X, labels=Y)
    with pytest.raises(QuantGuardError, match=r"inputs\.npy: pass the folder that holds it"):
        ValidationSet.from_folder(tmp_path / "inputs.npy")
    csv_table(tmp_path / "t", "a,b,label\n1,2,0\n3,4,1\n")
    assert ValidationSet.from_folder(tmp_path / "t" / "t.csv").n == 2


def test_the_manifest_picks_one_format_in_a_mixed_folder(tmp_path):
    npy(tmp_path, features=X, labels=Y)
    csv_table(tmp_path, "a,y\n1,0\n2,1\n")
    manifest(tmp_path, 'inputs = ["features"]\n')
    assert ValidationSet.from_folder(tmp_path).input_names == ["features"]
    manifest(tmp_path, 'label_column = "y"\n')
    assert ValidationSet.from_folder(tmp_path).n == 2


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    png(tmp_path / "a", "1.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingBackendError, match=r"an image folder\) needs Pillow, which is not "
                                                  r"installed\. Install it with: pip install "
                                                  r"'pytest-quantguard\[images\]'"):
        ValidationSet.from_folder(tmp_path)
