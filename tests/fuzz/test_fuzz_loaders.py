"""Generated sets in every folder format: an uncorrupted one loads to the same arrays (float64,
an extra array, a symlink inside the folder included); one carrying a corruption that docs/data.md
("What is refused") names is a QuantGuardError naming the file or key — never another exception,
never a load (docs/development.md, "Fuzzing and faults")."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fuzz_sets import FORMATS, expected, read_back, scratch, valid_sets, write
from hypothesis import given
from hypothesis import strategies as st

from pytest_quantguard.errors import QuantGuardError

pytest.importorskip("PIL.Image")


@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_a_valid_set_loads_to_the_same_arrays(fmt, data):
    original = data.draw(valid_sets(fmt))
    with scratch() as folder:
        write(folder, fmt, original)
        loaded, caught = read_back(folder)
    want = expected(fmt, original)
    assert loaded.inputs.dtype == want.inputs.dtype  # float64 stays float64
    np.testing.assert_array_equal(loaded.inputs, want.inputs)
    np.testing.assert_array_equal(loaded.labels, want.labels)
    assert not caught


@given(data=st.data(), fmt=st.sampled_from(["npz", "npy"]))
def test_an_extra_array_loads_the_same_and_is_named(data, fmt):
    original = data.draw(valid_sets(fmt))
    with scratch() as folder:
        files = write(folder, fmt, original)
        extra = np.arange(len(original.labels))
        if fmt == "npz":
            half = len(original.labels) // 2
            for file, part in zip(files, (extra[:half], extra[half:]), strict=True):
                with np.load(file) as stored:
                    arrays = dict(stored)
                np.savez(file, **arrays, spare=part)
        else:
            np.save(folder / "spare.npy", extra)
        loaded, caught = read_back(folder)
    np.testing.assert_array_equal(loaded.inputs, original.inputs)
    assert any("spare" in str(warning.message) for warning in caught)


@given(data=st.data(), fmt=st.sampled_from(["npy", "csv"]))
def test_a_symlink_inside_the_folder_loads_the_same(data, fmt):
    original = data.draw(valid_sets(fmt))
    with scratch() as folder:
        files = write(folder / "val", fmt, original)
        store = folder / "val" / "store"
        store.mkdir()
        target = store / (files[0].name + ".bytes")
        files[0].rename(target)
        files[0].symlink_to(os.path.relpath(target, files[0].parent))
        loaded, _ = read_back(folder / "val")
        again, _ = read_back(folder / "val")
    np.testing.assert_array_equal(loaded.inputs, original.inputs)
    np.testing.assert_array_equal(again.labels, original.labels)


# --- corruptions: each returns what the error must name (a file name or a manifest key)


def _truncate(folder, files, draw):
    file = draw(st.sampled_from(files))
    data = file.read_bytes()
    file.write_bytes(data[:draw(st.integers(0, len(data) - 1))])
    return file.name


def _zero_bytes(folder, files, draw):
    file = draw(st.sampled_from(files))
    file.write_bytes(b"")
    return file.name


def _npz_rewrite(folder, files, draw):
    """One shard's labels made invalid: too few, NaN or Inf, or an object (pickled) array."""
    file = draw(st.sampled_from(files))
    with np.load(file) as stored:
        arrays = dict(stored)
    how = draw(st.sampled_from(["short", "nan", "inf", "object", "dtype", "ragged-inputs"]))
    labels = arrays["labels"].astype(np.float64)
    if how == "short":
        arrays["labels"] = arrays["labels"][:-1] if len(labels) else np.zeros(1, np.int64)
    elif how in ("nan", "inf"):
        labels[draw(st.integers(0, len(labels) - 1))] = np.nan if how == "nan" else -np.inf
        arrays["labels"] = labels
    elif how == "object":
        arrays["labels"] = np.array([None] * len(labels), dtype=object)
    elif how == "dtype":
        arrays["labels"] = np.zeros(len(labels), draw(st.sampled_from(REFUSED_DTYPES)))
    else:
        arrays["inputs"] = np.zeros((len(labels), arrays["inputs"].shape[1] + 1), np.float32)
    np.savez(file, **arrays)
    return file.name


def _npy_header(folder, files, draw):
    """A hand-written header: a negative or huge row count, or a garbled one."""
    shape = draw(st.sampled_from(["(-3, 2)", f"({2**62}, 2)", "(3, 2", "(3,, 2)", "'x'"]))
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }"
    header = header.ljust(118) + "\n"
    (folder / "inputs.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                        + header.encode("latin-1") + bytes(24))
    return "inputs.npy"


def _npy_labels(folder, files, draw):
    labels = np.load(folder / "labels.npy").astype(np.float64)
    how = draw(st.sampled_from(["short", "nan", "inf", "text"]))
    if how == "short":
        labels = labels[:-1]
    elif how == "text":
        labels = labels.astype(str)
    else:
        labels[draw(st.integers(0, len(labels) - 1))] = np.nan if how == "nan" else np.inf
    np.save(folder / "labels.npy", labels)
    return "labels.npy"


# complex, datetime, timedelta, void and structured: no model input or label (docs/data.md)
REFUSED_DTYPES = ["c8", "c16", "M8[s]", "m8[ms]", "V8", [("a", "<f4"), ("b", "<i4")]]


def _npy_dtype(folder, files, draw):
    """The inputs or the labels saved with a dtype no model takes."""
    file = draw(st.sampled_from(files))
    array = np.load(file)
    np.save(file, np.zeros(array.shape, draw(st.sampled_from(REFUSED_DTYPES))))
    return file.name


def _csv_edit(folder, files, draw):
    """Bad UTF-8, a ragged row, a text or empty feature cell, a repeated column, a NaN label, or
    the header alone."""
    file = files[0]
    lines = file.read_bytes().split(b"\n")[:-1]
    how = draw(st.sampled_from(["utf8", "short-row", "long-row", "text", "empty", "repeat", "nan",
                                "header-only"]))
    row = draw(st.integers(1, len(lines) - 1))
    cells = lines[row].split(b",")
    if how == "utf8":
        at = draw(st.integers(0, len(lines[row])))
        lines[row] = lines[row][:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) \
            + lines[row][at:]
    elif how == "short-row":
        lines[row] = b",".join(cells[:-1])
    elif how == "long-row":
        lines[row] = lines[row] + b",1"
    elif how in ("text", "empty"):
        cells[draw(st.integers(0, len(cells) - 2))] = b"abc" if how == "text" else b""
        lines[row] = b",".join(cells)
    elif how == "repeat":
        lines[0] = b"label," + lines[0]
        lines[1:] = [b"0," + line for line in lines[1:]]
    elif how == "nan":
        lines[row] = b",".join([*cells[:-1], draw(st.sampled_from([b"nan", b"inf", b"-inf"]))])
    else:
        lines = lines[:1]
    file.write_bytes(b"\n".join(lines) + b"\n")
    return file.name if how != "header-only" else folder.name


def _image_edit(folder, files, draw):
    from PIL import Image

    file = draw(st.sampled_from(files))
    how = draw(st.sampled_from(["size", "mode", "garbage", "outside"]))
    if how == "size":
        Image.new("RGB", (7, 5)).save(file)
    elif how == "mode":
        with Image.open(files[0]) as first:
            size = first.size
        Image.new("L", size).save(file)
    elif how == "garbage":
        file.write_bytes(draw(st.binary(max_size=64)))
    else:
        file.rename(folder / file.name)
    return file.name


def _manifest(folder, files, draw):
    """An unknown or repeated key, bad UTF-8, invalid TOML or a value of the wrong kind."""
    key = draw(st.sampled_from(["tsk", "label", "class_name", "preprocess.scal", "inputs", "task",
                                "output", "class_names", "ignore_label", "pooling", "groups",
                                "utf8"]))
    text = {"inputs": 'inputs = "inputs"', "task": 'task = "classificatoin"',
            "output": "output = -1", "class_names": 'class_names = ["a", "a", "b"]',
            "ignore_label": "ignore_label = 1.5", "pooling": 'pooling = "median"',
            "groups": "groups = 3", "preprocess.scal": "[preprocess]\nscal = 2"}.get(
        key, f"{key} = 1")
    data = text.encode() + b"\n"
    if key == "utf8":
        data = b'task = "classification\xff"\n'
    if draw(st.booleans()) and key != "utf8":
        data = b'task = "classification"\n' + data + data  # repeated: invalid TOML
    (folder / "quantguard.toml").write_bytes(data)
    return "quantguard.toml"


CORRUPTIONS = {
    "npz": [_truncate, _zero_bytes, _npz_rewrite, _manifest],
    "npy": [_truncate, _zero_bytes, _npy_header, _npy_labels, _npy_dtype, _manifest],
    "csv": [_zero_bytes, _csv_edit, _manifest],
    "images": [_truncate, _zero_bytes, _image_edit, _manifest],
}


@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_a_corrupted_set_is_refused_naming_the_file_or_key(fmt, data):
    original = data.draw(valid_sets(fmt))
    corrupt = data.draw(st.sampled_from(CORRUPTIONS[fmt]))
    with scratch() as folder:
        files = write(folder / "val", fmt, original)
        named = corrupt(folder / "val", files, data.draw)
        with pytest.raises(QuantGuardError) as refused:
            read_back(folder / "val")
    assert named in str(refused.value), (corrupt.__name__, str(refused.value))


@pytest.mark.parametrize("dtype", REFUSED_DTYPES, ids=str)
def test_an_input_of_a_refused_dtype_names_the_file_array_and_fix(tmp_path, dtype):
    np.save(tmp_path / "inputs.npy", np.zeros((4, 2), dtype))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 0, 1]))
    with pytest.raises(QuantGuardError, match=r"inputs\.npy: the input 'inputs' array is .*; "
                                              r"quantguard reads boolean, integer and "
                                              r"floating-point arrays .*, so give "):
        read_back(tmp_path)


@pytest.mark.parametrize("dtype", REFUSED_DTYPES, ids=str)
def test_an_npz_or_in_memory_input_of_a_refused_dtype_names_the_array_and_fix(tmp_path, dtype):
    from pytest_quantguard import ValidationSet

    inputs = np.zeros((4, 2), dtype)
    np.savez(tmp_path / "val.npz", inputs=inputs, labels=np.array([0, 1, 0, 1]))
    with pytest.raises(QuantGuardError, match=r"val\.npz: the input 'inputs' array is .*; quantguard "
                                              r"reads boolean, integer and floating-point arrays"):
        ValidationSet.from_folder(tmp_path)
    with pytest.raises(QuantGuardError, match=r"ValidationSet\(inputs=\.\.\.\): the input array is"):
        ValidationSet(inputs, np.array([0, 1, 0, 1]))
