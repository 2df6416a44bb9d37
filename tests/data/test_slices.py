"""Slice labels (manifest ``slices``), ``pooling``, per-token language-model labels and the default
task, in every format that can hold them, on real files."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_quantguard import ValidationSet
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning

N = 12
X = np.arange(N * 3, dtype=np.float32).reshape(N, 3)
Y = np.arange(N, dtype=np.int64) % 3
CAMERA = np.array(["camera=day", "camera=night", "camera=dusk"])[np.arange(N) % 3]


def manifest(folder, text):
    (folder / "quantguard.toml").write_text(text)


def npz_shards(folder, shards=2, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"inputs": X, "labels": Y, **arrays}
    for i, rows in enumerate(np.array_split(np.arange(N), shards)):
        np.savez(folder / f"shard_{i}.npz", **{name: array[rows] for name, array in arrays.items()})
    return folder


def npy_folder(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in {"inputs": X, "labels": Y, **arrays}.items():
        np.save(folder / f"{name}.npy", array)
    return folder


def csv_table(folder, slices=CAMERA, column="camera"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"f0,f1,f2,label,{column}"]
    lines += [",".join([*map(repr, map(float, X[i])), str(Y[i]), str(slices[i])]) for i in range(N)]
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    return folder


# ---------------------------------------------------------------- slices in every format

def test_slices_from_npz_shards(tmp_path):
    folder = npz_shards(tmp_path / "npz", shards=3, camera=CAMERA)
    manifest(folder, 'slices = "camera"\n')
    dataset = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(dataset.slices, CAMERA)
    assert dataset.slices.dtype.kind == "U" and dataset.n_slices == 3
    assert dataset.input_names == ["inputs"] and dataset.groups is None


def test_slices_may_be_integers_and_the_groups_array(tmp_path):
    region = np.arange(N) % 4
    folder = npz_shards(tmp_path / "npz", region=region)
    manifest(folder, 'groups = "region"\nslices = "region"\n')
    dataset = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(dataset.slices, region)
    np.testing.assert_array_equal(dataset.groups, region)
    assert dataset.n_slices == dataset.n_groups == 4


def test_slices_from_an_npy_folder_and_bytes_become_str(tmp_path):
    folder = npy_folder(tmp_path / "npy", camera=np.char.encode(CAMERA, "utf-8"))
    manifest(folder, 'slices = "camera"\n')
    dataset = ValidationSet.from_folder(folder)
    assert dataset.slices.dtype.kind == "U"
    np.testing.assert_array_equal(dataset.slices, CAMERA)
    with_text = npy_folder(tmp_path / "text", camera=CAMERA)
    manifest(with_text, 'slices = "camera"\n')
    np.testing.assert_array_equal(ValidationSet.from_folder(with_text).slices, CAMERA)


def test_slices_from_a_csv_column_are_not_a_feature(tmp_path):
    folder = csv_table(tmp_path / "csv", slices=np.arange(N) % 2, column="region")
    manifest(folder, 'slices = "region"\n')
    dataset = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(dataset.slices, (np.arange(N) % 2).astype(str))
    batch = next(dataset.batches(N))
    assert batch.inputs["inputs"].shape == (N, 3)
    np.testing.assert_array_equal(batch.inputs["inputs"], X)
    np.testing.assert_array_equal(dataset.labels, Y)


def test_in_memory_slices_subset_and_digest():
    dataset = ValidationSet(X, Y, slices=list(CAMERA))
    np.testing.assert_array_equal(dataset.slices, CAMERA)
    assert ValidationSet(X, Y).slices is None and ValidationSet(X, Y).n_slices is None
    subset = dataset.subset([7, 1, 2])
    np.testing.assert_array_equal(subset.slices, CAMERA[[7, 1, 2]])
    np.testing.assert_array_equal(subset.labels, Y[[7, 1, 2]])
    digest = dataset.digest
    assert ValidationSet(X, Y, slices=CAMERA.copy()).digest == digest
    assert ValidationSet(X, Y).digest != digest
    assert ValidationSet(X, Y, slices=CAMERA[::-1]).digest != digest
    # bytes are decoded before the digest: the same labels, the same set
    assert ValidationSet(X, Y, slices=np.char.encode(CAMERA, "utf-8")).digest == digest
    # an input named like a role is still hashed (no name collision in the digest)
    assert (ValidationSet({"slices": X}, slices=CAMERA).digest
            != ValidationSet({"slices": X + 1}, slices=CAMERA).digest)


@pytest.mark.filterwarnings("ignore:.*nothing uses:pytest_quantguard.errors.QuantGuardWarning")
def test_folder_digest_changes_with_the_slices(tmp_path):
    folder = npz_shards(tmp_path / "npz", camera=CAMERA, other=CAMERA[::-1])
    with pytest.warns(QuantGuardWarning, match="'camera' .* is not used: .* add slices = \"camera\""):
        plain = ValidationSet.from_folder(folder).digest
    manifest(folder, 'slices = "camera"\n')
    camera = ValidationSet.from_folder(folder).digest
    manifest(folder, 'slices = "other"\n')
    other = ValidationSet.from_folder(folder).digest
    assert len({plain, camera, other}) == 3
    npz_shards(folder, camera=CAMERA[::-1], other=CAMERA[::-1])
    manifest(folder, 'slices = "camera"\n')
    assert ValidationSet.from_folder(folder).digest not in (camera, plain)


def test_subset_of_a_folder_keeps_slices_and_the_manifest(tmp_path):
    folder = npy_folder(tmp_path / "npy", camera=CAMERA)
    manifest(folder, 'slices = "camera"\npooling = "mean"\noutput = "logits"\n')
    subset = ValidationSet.from_folder(folder).subset(np.arange(0, N, 2))
    np.testing.assert_array_equal(subset.slices, CAMERA[::2])
    assert subset.manifest["pooling"] == "mean" and subset.manifest["output"] == "logits"


# ---------------------------------------------------------------- bad slices

BAD_FOLDERS = {
    "npz missing": (lambda d: (npz_shards(d), manifest(d, 'slices = "camera"\n')),
                    r"shard_0\.npz: no slice array 'camera' \(named by slices = 'camera' in "
                    r"quantguard\.toml\); it has 'inputs', 'labels'\. Save one slice label per sample"),
    "npz wrong length": (lambda d: (np.savez(d / "shard_0.npz", inputs=X, labels=Y, camera=CAMERA[:-1]),
                                    manifest(d, 'slices = "camera"\n')),
                         r"shard_0\.npz: slice array 'camera' has shape \[11\]; it needs one label per "
                         r"sample \(12\)"),
    "npz 2-D": (lambda d: (npz_shards(d, camera=CAMERA.reshape(N, 1).repeat(2, axis=1)),
                           manifest(d, 'slices = "camera"\n')),
                r"shard_0\.npz: slice array 'camera' has shape \[6, 2\]; it needs one label per "
                r"sample \(6\)"),
    "npz NaN": (lambda d: (npz_shards(d, camera=np.where(np.arange(N) == 9, np.nan, 1.0)),
                           manifest(d, 'slices = "camera"\n')),
                r"shard_1\.npz \[camera\]: NaN or Inf among the slice labels"),
    "npz text and numbers": (lambda d: (npz_shards(d, camera=CAMERA),
                                        np.savez(d / "shard_1.npz", inputs=X[6:], labels=Y[6:],
                                                 camera=np.arange(6)),
                                        manifest(d, 'slices = "camera"\n')),
                             r"shard_1\.npz: its slice labels are number but shard_0\.npz's are text"),
    "npz complex": (lambda d: (npz_shards(d, camera=np.ones(N, np.complex64)),
                               manifest(d, 'slices = "camera"\n')),
                    r"shard_0\.npz \[camera\]: slice labels of dtype complex64; give strings"),
    "npy missing": (lambda d: (npy_folder(d), manifest(d, 'slices = "camera"\n')),
                    r"camera\.npy: not found, but .*quantguard\.toml names 'camera' in slices"),
    "npy wrong length": (lambda d: (npy_folder(d, camera=CAMERA[:5]), manifest(d, 'slices = "camera"\n')),
                         r"camera\.npy: slice array has shape \[5\]; it needs one label per sample \(12\)"),
    "npy NaN": (lambda d: (npy_folder(d, camera=np.full(N, np.nan)), manifest(d, 'slices = "camera"\n')),
                r"camera\.npy \[camera\]: NaN or Inf among the slice labels"),
    "npy not UTF-8": (lambda d: (npy_folder(d, camera=np.array([b"\xff"] * N)),
                                 manifest(d, 'slices = "camera"\n')),
                      r"camera\.npy \[camera\]: slice labels are bytes that are not UTF-8"),
    "csv missing": (lambda d: (csv_table(d), manifest(d, 'slices = "site"\n')),
                    r"table\.csv: no column 'site' \(named by slices in quantguard\.toml\); the columns "
                    r"are 'f0', 'f1', 'f2', 'label', 'camera'"),
    "csv slices listed as input": (lambda d: (csv_table(d), manifest(
        d, 'slices = "camera"\ninputs = ["f0", "camera"]\n')),
        r"table\.csv: column 'camera' is listed in inputs but is the label, group or slice column"),
    "not a name": (lambda d: (npz_shards(d), manifest(d, "slices = 3\n")),
                   r"quantguard\.toml: slices must be a name \(string\) of the array or column"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS), ids=list(BAD_FOLDERS))
def test_bad_slices_name_the_file_and_the_fix(tmp_path, case):
    setup, match = BAD_FOLDERS[case]
    folder = tmp_path / "data"
    folder.mkdir()
    setup(folder)
    with pytest.raises(QuantGuardError, match=match):
        ValidationSet.from_folder(folder)


def test_slices_on_image_folders_are_refused(tmp_path):
    image = pytest.importorskip("PIL.Image")
    (tmp_path / "cat").mkdir()
    image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "cat" / "1.png")
    manifest(tmp_path, 'slices = "camera"\n')
    with pytest.raises(QuantGuardError, match=r"quantguard\.toml: image folders have no per-sample "
                                              r"arrays to hold slices; remove slices"):
        ValidationSet.from_folder(tmp_path)


@pytest.mark.parametrize(("slices", "match"), [
    (CAMERA[:-1], r"ValidationSet\(slices=\.\.\.\): slices must be 1-D with one label per sample "
                  r"\(12\), got shape \[11\]"),
    (CAMERA.reshape(6, 2), r"got shape \[6, 2\]"),
    (np.where(np.arange(N) == 3, np.nan, 0.0), r"NaN or Inf among the slice labels"),
    (np.array(list(CAMERA), dtype=object), r"an object array; give slice labels as strings or "
                                           r"integers \(e\.g\. np\.asarray\(slices, dtype=str\)\)"),
])
def test_bad_in_memory_slices(slices, match):
    with pytest.raises(QuantGuardError, match=match):
        ValidationSet(X, Y, slices=slices)


# ---------------------------------------------------------------- pooling and the manifest keys

@pytest.mark.parametrize("pooling", ["mean", "max", "first", "last"])
def test_pooling_is_read_from_the_manifest(tmp_path, pooling):
    folder = npz_shards(tmp_path / "npz")
    manifest(folder, f'task = "fidelity"\npooling = "{pooling}"\n')
    assert ValidationSet.from_folder(folder).manifest["pooling"] == pooling


@pytest.mark.parametrize("value", ['"avg"', '"Mean"', "1", '["mean"]'])
def test_bad_pooling_names_the_file_and_the_choices(tmp_path, value):
    folder = npz_shards(tmp_path / "npz")
    manifest(folder, f"pooling = {value}\n")
    with pytest.raises(QuantGuardError, match=r"quantguard\.toml: pooling = .* is unknown; use one of "
                                              r"'mean', 'max', 'first', 'last'"):
        ValidationSet.from_folder(folder)


def test_unknown_keys_list_slices_and_pooling(tmp_path):
    folder = npz_shards(tmp_path / "npz")
    manifest(folder, 'slice = "camera"\n')
    with pytest.raises(QuantGuardError, match=r"quantguard\.toml: unknown key\(s\) slice \(slice: did you "
                                              r"mean slices\?\); the manifest "
                                              r"keys are task, inputs, labels, groups, slices, .*pooling"):
        ValidationSet.from_folder(folder)


# ---------------------------------------------------------------- language-model labels

def tokens(n=10, seq_len=8, seed=3):
    """Token windows, an attention mask with padding, and shifted targets (-100 where ignored)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(0, 50_000, (n, seq_len), dtype=np.int64)
    attention_mask = np.ones_like(input_ids)
    attention_mask[::3, -3:] = 0
    targets = np.roll(input_ids, -1, axis=1)
    targets[:, -1] = -100
    targets[attention_mask == 0] = -100
    return input_ids, attention_mask, targets


LM_MANIFEST = 'task = "language-model"\ninputs = ["input_ids", "attention_mask"]\n'


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_language_model_labels_are_per_token(tmp_path, fmt):
    input_ids, attention_mask, targets = tokens()
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": targets}
    folder = tmp_path / fmt
    folder.mkdir()
    if fmt == "npz":
        for name, rows in (("a.npz", slice(None, 4)), ("b.npz", slice(4, None))):
            np.savez(folder / name, **{key: array[rows] for key, array in arrays.items()})
    else:
        for key, array in arrays.items():
            np.save(folder / f"{key}.npy", array)
    manifest(folder, LM_MANIFEST)
    dataset = ValidationSet.from_folder(folder)
    assert dataset.task == "language-model" and dataset.has_labels
    assert dataset.input_names == ["input_ids", "attention_mask"]
    np.testing.assert_array_equal(dataset.labels, targets)
    batches = list(dataset.batches(3))
    assert all(b.labels.shape == (len(b), 8) for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), targets)
    assert dataset.duplicate_count() == 0
    subset = dataset.subset([9, 0])
    assert subset.task == "language-model"
    np.testing.assert_array_equal(subset.labels, targets[[9, 0]])


def test_in_memory_language_model_set():
    input_ids, attention_mask, targets = tokens()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    dataset = ValidationSet(inputs, targets, task="language-model")
    assert dataset.labels.shape == (10, 8) and dataset.task == "language-model"
    assert ValidationSet(inputs, task="language-model").has_labels is False
    with pytest.raises(QuantGuardError, match=r"labels must be 1-D \(one per sample\), got shape "
                                              r"\[10, 8\] \(per-token targets of a language model\? "
                                              r'set task = "language-model";'):
        ValidationSet(inputs, targets)


@pytest.mark.parametrize(("labels", "match"), [
    (lambda t: t[:, 0], r"language-model labels are per-token targets of shape \(samples, seq_len\), "
                        r"got shape \[10\]"),
    (lambda t: t.astype(np.float32), r"language-model labels must be integer token ids, got float32"),
    (lambda t: np.where(t == -100, -1, t), r"label -1 is not a token id; .* or -100 where a position "
                                           r"is ignored"),
    (lambda t: t[:, :6], r"labels have shape \[10, 6\] but input_ids has \[10, 8\]"),
    (lambda t: t[:9], r"9 labels for 10 input samples"),
])
def test_bad_language_model_labels(labels, match):
    input_ids, attention_mask, targets = tokens()
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    with pytest.raises(QuantGuardError, match=match):
        ValidationSet(inputs, labels(targets), task="language-model")


def test_language_model_inputs_must_line_up(tmp_path):
    input_ids, attention_mask, targets = tokens()
    with pytest.raises(QuantGuardError, match=r"attention_mask has shape \[10, 7\] but input_ids has "
                                              r"\[10, 8\]; give one mask value per token"):
        ValidationSet({"input_ids": input_ids, "attention_mask": attention_mask[:, :7]},
                      task="language-model")
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "input_ids.npy", input_ids)
    np.save(folder / "attention_mask.npy", attention_mask)
    np.save(folder / "labels.npy", targets[:, 1:])
    manifest(folder, LM_MANIFEST)
    with pytest.raises(QuantGuardError, match=r"input_ids\.npy: labels have shape \[10, 7\] but "
                                              r"input_ids has \[10, 8\]"):
        ValidationSet.from_folder(folder)


def test_bad_language_model_folders_name_the_file(tmp_path):
    input_ids, attention_mask, targets = tokens()
    npz = tmp_path / "npz"
    npz.mkdir()
    np.savez(npz / "a.npz", input_ids=input_ids, attention_mask=attention_mask,
             labels=targets.astype(np.float64))
    manifest(npz, LM_MANIFEST)
    with pytest.raises(QuantGuardError, match=r"a\.npz: language-model labels must be integer token "
                                              r"ids, got float64"):
        ValidationSet.from_folder(npz)
    longer = tokens(seq_len=9)
    np.savez(npz / "a.npz", input_ids=input_ids, attention_mask=attention_mask, labels=targets)
    np.savez(npz / "b.npz", input_ids=longer[0], attention_mask=longer[1], labels=longer[2])
    with pytest.raises(QuantGuardError, match=r"b\.npz: array 'input_ids' has samples of shape \(9,\)"):
        ValidationSet.from_folder(npz)
    (npz / "b.npz").unlink()
    manifest(npz, 'inputs = ["input_ids", "attention_mask"]\n')
    with pytest.raises(QuantGuardError, match=r"a\.npz: labels must be 1-D .* set task = "
                                              r'"language-model"'):
        ValidationSet.from_folder(npz)
    table = csv_table(tmp_path / "csv")
    manifest(table, 'task = "language-model"\n')
    with pytest.raises(QuantGuardError, match=r'quantguard\.toml: task = "language-model" needs token '
                                              r"arrays .* which CSV tables cannot hold"):
        ValidationSet.from_folder(table)


def test_npz_shards_need_one_label_shape(tmp_path):
    """Shards with the same input shape but targets of another length cannot be concatenated."""
    input_ids, _, targets = tokens()
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "a.npz", inputs=input_ids[:5], labels=targets[:5])
    np.savez(folder / "b.npz", inputs=input_ids[5:], labels=targets[5:, :6])
    manifest(folder, 'task = "language-model"\n')
    with pytest.raises(QuantGuardError, match=r"b\.npz: labels of shape \(6,\) per sample but a\.npz "
                                              r"has \(8,\); every shard needs the same label shape"):
        ValidationSet.from_folder(folder)


# ---------------------------------------------------------------- the default task

def test_without_labels_or_task_the_set_is_fidelity(tmp_path):
    assert ValidationSet(X).task == "fidelity"
    assert ValidationSet(X, Y).task == "classification"
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "a.npz", inputs=X)
    assert ValidationSet.from_folder(folder).task == "fidelity"
    np.savez(folder / "a.npz", inputs=X, labels=Y)
    assert ValidationSet.from_folder(folder).task == "classification"
