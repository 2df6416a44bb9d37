"""Every folder format on real data (digits, breast cancer): the same arrays, labels, batches and
digest behaviour as the .npz version; [preprocess]; language-model data; duplicate samples."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from pytest_quantguard import ValidationSet

Image = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------- writers (the user's side)

def write_npz(folder, inputs, labels, shards=1, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(labels)), shards)):
        np.savez(folder / f"shard_{i}.npz", inputs=inputs[rows], labels=labels[rows],
                 **{name: array[rows] for name, array in extra.items()})
    return folder


def write_npy(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    return folder


def write_csv(folder, inputs, labels, shards=1, columns=None, label_column="label"):
    """The table as pandas' ``to_csv(index=False)`` would write it: repr floats, a header row."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = columns or [f"f{j}" for j in range(inputs.shape[1])]
    for i, rows in enumerate(np.array_split(np.arange(len(labels)), shards)):
        lines = [",".join([*columns, label_column])]
        lines += [",".join([*map(repr, map(float, inputs[r])), str(labels[r])]) for r in rows]
        (folder / f"part_{i + 1}.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_images(folder, images, labels, class_names=None):
    """One PNG per sample in CLASS/ folders, named by sample index (natural order = index order)."""
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        name = class_names[label] if class_names else str(label)
        (folder / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def by_class(*arrays, labels):
    """Samples in image-folder order: by class, then by index (a stable sort)."""
    order = np.argsort(labels, kind="stable")
    return [array[order] for array in arrays]


def collect(dataset, batch_size):
    batches = list(dataset.batches(batch_size))
    return batches, {name: np.concatenate([b.inputs[name] for b in batches])
                     for name in batches[0].inputs}


def assert_same_batches(dataset, expected, batch_size=128):
    """Same names, dtypes, shapes, values, labels, ids and batch boundaries."""
    got, want = list(dataset.batches(batch_size)), list(expected.batches(batch_size))
    assert [len(b) for b in got] == [len(b) for b in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine.inputs.keys() == theirs.inputs.keys()
        for name in mine.inputs:
            assert mine.inputs[name].dtype == theirs.inputs[name].dtype
            np.testing.assert_array_equal(mine.inputs[name], theirs.inputs[name])
        np.testing.assert_array_equal(mine.labels, theirs.labels)
        np.testing.assert_array_equal(mine.ids, theirs.ids)
    assert dataset.labels.dtype == expected.labels.dtype
    np.testing.assert_array_equal(dataset.labels, expected.labels)
    assert (dataset.n, dataset.task, dataset.input_names) == (expected.n, expected.task,
                                                              expected.input_names)


# ---------------------------------------------------------------- the real data sets

@pytest.fixture(scope="module")
def cancer():
    bunch = load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


@pytest.fixture(scope="module")
def digits_png(tmp_path_factory, digits):
    """Digits as 8×8 grayscale PNGs (their pixel values 0..16 stored exactly as uint8)."""
    images, labels = digits
    return write_images(tmp_path_factory.mktemp("digits") / "png", images.astype(np.uint8), labels)


# ---------------------------------------------------------------- same data, every format

def test_npy_matches_npz_and_is_memory_mapped(tmp_path, cancer):
    inputs, labels = cancer
    npy = ValidationSet.from_folder(write_npy(tmp_path / "npy", inputs=inputs, labels=labels))
    npz = ValidationSet.from_folder(write_npz(tmp_path / "npz", inputs, labels))
    assert_same_batches(npy, npz)
    assert_same_batches(npy, npz, batch_size=1000)  # one batch larger than the set
    stored, _ = npy._parts[0].load(True)
    assert isinstance(stored["inputs"], np.memmap) and stored["inputs"].mode == "r"
    # a batch is a copy: holding it does not hold the map (and its pages) open
    first = next(iter(npy.batches(10)))
    assert not isinstance(first.inputs["inputs"], np.memmap) and first.inputs["inputs"].base is None


def test_npy_windows_cover_every_row_exactly_once(tmp_path, monkeypatch, digits):
    from pytest_quantguard.data import npy

    images, labels = digits
    monkeypatch.setattr(npy, "WINDOW_BYTES", 7 * images[0].nbytes)  # a window every 7 rows
    dataset = ValidationSet.from_folder(write_npy(tmp_path, inputs=images, labels=labels))
    for batch_size in (1, 5, 7, 64):
        _, got = collect(dataset, batch_size)
        np.testing.assert_array_equal(got["inputs"], images)


def test_csv_shards_match_npz_shards(tmp_path, cancer):
    inputs, labels = cancer
    csv = ValidationSet.from_folder(write_csv(tmp_path / "csv", inputs, labels, shards=3))
    npz = ValidationSet.from_folder(write_npz(tmp_path / "npz", inputs, labels, shards=3))
    assert_same_batches(csv, npz, batch_size=100)
    assert [b.origin.rsplit("/", 1)[1] for b in csv.batches(1000)] == [
        "part_1.csv", "part_2.csv", "part_3.csv"]


def test_csv_of_digits_with_named_columns_and_a_label_column(tmp_path, digits):
    images, labels = digits
    flat = images.reshape(len(images), -1)
    folder = write_csv(tmp_path / "csv", flat, labels, columns=[f"pixel_{j}" for j in range(64)],
                       label_column="digit")
    # an id column (text) is left out of the default inputs; the named label column is the label
    lines = (folder / "part_1.csv").read_text().splitlines()
    (folder / "part_1.csv").write_text("\n".join(
        [f"{line},{'id' if i == 0 else f'img-{i:04d}'}" for i, line in enumerate(lines)]) + "\n")
    (folder / "quantguard.toml").write_text('label_column = "digit"\n')
    csv = ValidationSet.from_folder(folder)
    assert_same_batches(csv, ValidationSet(flat, labels))
    # inputs = [...] picks and orders the feature columns
    (folder / "quantguard.toml").write_text('label_column = "digit"\ninputs = ["pixel_9", "pixel_3"]\n')
    _, got = collect(ValidationSet.from_folder(folder), 500)
    np.testing.assert_array_equal(got["inputs"], flat[:, [9, 3]])


def test_csv_labels_by_class_name(tmp_path, cancer):
    inputs, labels = cancer
    names = np.array(["malignant", "benign"])[labels]
    folder = write_csv(tmp_path, inputs, names, columns=None)
    (folder / "quantguard.toml").write_text('class_names = ["malignant", "benign"]\n')
    dataset = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.class_names == ["malignant", "benign"]


def test_png_folder_matches_npz(tmp_path, digits, digits_png):
    images, labels = by_class(*digits, labels=digits[1])
    png = ValidationSet.from_folder(digits_png)
    assert png.class_names == [str(d) for d in range(10)]
    assert_same_batches(png, ValidationSet.from_folder(write_npz(tmp_path, images, labels)))


def test_class_names_order_the_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    folder = write_images(tmp_path, images, labels, class_names=["zebra", "ant", "moth"])
    by_name = ValidationSet.from_folder(folder)  # sorted folder names: ant=0, moth=1, zebra=2
    assert by_name.class_names == ["ant", "moth", "zebra"]
    np.testing.assert_array_equal(by_name.labels, [0, 0, 1, 1, 2, 2])
    (folder / "quantguard.toml").write_text('class_names = ["zebra", "ant", "moth"]\n')
    ordered = ValidationSet.from_folder(folder)
    np.testing.assert_array_equal(ordered.labels, [0, 0, 1, 1, 2, 2])
    _, got = collect(ordered, 4)
    assert got["inputs"].shape == (6, 4, 5, 3) and got["inputs"].dtype == np.float32  # N×H×W×C
    np.testing.assert_array_equal(got["inputs"], images[[0, 3, 1, 4, 2, 5]])


# ---------------------------------------------------------------- digests

def flip_a_data_byte(file):
    data = bytearray(file.read_bytes())
    data[-5] ^= 0x01
    file.write_bytes(bytes(data))


def change_first_cell(file):
    header, first, *rest = file.read_text().splitlines()
    file.write_text("\n".join([header, "99.0" + first[first.index(","):], *rest]) + "\n")


def change_one_pixel(file):
    pixels = np.array(Image.open(file))
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(file)


@pytest.mark.parametrize(("fmt", "change"), [
    ("npy", lambda folder: flip_a_data_byte(folder / "inputs.npy")),
    ("npy", lambda folder: flip_a_data_byte(folder / "labels.npy")),
    ("csv", lambda folder: change_first_cell(folder / "part_2.csv")),
    ("csv", lambda folder: (folder / "part_2.csv").rename(folder / "part_2b.csv")),
    ("png", lambda folder: change_one_pixel(next((folder / "7").glob("*.png")))),
    ("png", lambda folder: (folder / "quantguard.toml").write_text("[preprocess]\nscale = 1.0\n")),
])
def test_digest_is_stable_and_changes_when_a_byte_changes(tmp_path, digits, fmt, change):
    images, labels = digits
    if fmt == "npy":
        folder = write_npy(tmp_path / "data", inputs=images, labels=labels)
    elif fmt == "csv":
        folder = write_csv(tmp_path / "data", images.reshape(len(images), -1), labels, shards=2)
    else:
        folder = write_images(tmp_path / "data", images[:200].astype(np.uint8), labels[:200])
    digest = ValidationSet.from_folder(folder).digest
    assert ValidationSet.from_folder(folder).digest == digest
    change(folder)
    assert ValidationSet.from_folder(folder).digest != digest


# ---------------------------------------------------------------- [preprocess]

def test_preprocess_scales_normalizes_and_transposes_grayscale(tmp_path, digits):
    images, labels = digits[0][:300], digits[1][:300]
    folder = write_images(tmp_path, images.astype(np.uint8), labels)
    (folder / "quantguard.toml").write_text(
        '[preprocess]\nscale = "1/16"\nmean = 0.5\nstd = [0.25]\nlayout = "NCHW"\n')
    dataset = ValidationSet.from_folder(folder)
    images, _ = by_class(images, labels, labels=labels)
    batches, got = collect(dataset, 128)
    assert got["inputs"].shape == (len(images), 1, 8, 8) and got["inputs"].dtype == np.float32
    np.testing.assert_allclose(got["inputs"], ((images / 16 - 0.5) / 0.25)[:, None], rtol=1e-6)
    assert batches[0].inputs["inputs"].flags.c_contiguous


def test_preprocess_per_channel_on_rgb_images(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 6, 5, 3), dtype=np.uint8)
    labels = np.arange(8) % 2
    folder = write_images(tmp_path, images, labels)
    (folder / "quantguard.toml").write_text(
        '[preprocess]\nscale = 0.00392156862745098\nmean = [0.485, 0.456, 0.406]\n'
        'std = [0.229, 0.224, 0.225]\nlayout = "NCHW"\n')
    _, got = collect(ValidationSet.from_folder(folder), 3)
    x = by_class(images, labels=labels)[0].astype(np.float32) / 255
    want = ((x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(0, 3, 1, 2)
    assert got["inputs"].shape == (8, 3, 6, 5)
    np.testing.assert_allclose(got["inputs"], want, rtol=1e-5, atol=1e-6)


def test_preprocess_applies_to_the_named_inputs_only(tmp_path, cancer):
    inputs, labels = cancer
    mean, std = inputs.mean(axis=0), inputs.std(axis=0)
    ids = np.arange(len(labels), dtype=np.int64)[:, None]
    folder = write_npy(tmp_path, features=inputs, ids=ids, labels=labels)
    (folder / "quantguard.toml").write_text(
        'inputs = ["features", "ids"]\n[preprocess]\ninputs = ["features"]\n'
        f"mean = {[float(v) for v in mean]}\nstd = {[float(v) for v in std]}\n")
    dataset = ValidationSet.from_folder(folder)
    _, got = collect(dataset, 100)
    np.testing.assert_allclose(got["features"], (inputs - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got["ids"], ids)
    assert got["ids"].dtype == np.int64
    # the stored arrays are never changed; a subset carries the preprocessed inputs
    np.testing.assert_array_equal(dataset._parts[0].load(True)[0]["features"], inputs)
    np.testing.assert_allclose(dataset.subset([3])._parts[0].load(True)[0]["features"],
                               got["features"][[3]])


# ---------------------------------------------------------------- language-model data

@pytest.fixture(scope="module")
def tokens():
    """Token windows of 40 documents (3 to 7 windows each), ids and an attention mask."""
    rng = np.random.default_rng(7)
    doc_id = np.repeat(np.arange(40), rng.integers(3, 8, 40))
    input_ids = rng.integers(0, 32_000, (len(doc_id), 16), dtype=np.int64)
    attention_mask = np.ones_like(input_ids)
    attention_mask[::5, 12:] = 0
    return input_ids, attention_mask, doc_id


LM_MANIFEST = 'task = "language-model"\ninputs = ["input_ids", "attention_mask"]\ngroups = "doc_id"\n'


def test_language_model_data_as_npy_and_npz(tmp_path, tokens):
    input_ids, attention_mask, doc_id = tokens
    npy = write_npy(tmp_path / "npy", input_ids=input_ids, attention_mask=attention_mask, doc_id=doc_id)
    npz = tmp_path / "npz"
    npz.mkdir()
    half = len(doc_id) // 2
    for name, rows in (("a.npz", slice(None, half)), ("b.npz", slice(half, None))):
        np.savez(npz / name, input_ids=input_ids[rows], attention_mask=attention_mask[rows],
                 doc_id=doc_id[rows])
    for folder in (npy, npz):
        (folder / "quantguard.toml").write_text(LM_MANIFEST)
        dataset = ValidationSet.from_folder(folder)
        assert dataset.task == "language-model" and not dataset.has_labels
        assert dataset.input_names == ["input_ids", "attention_mask"]
        assert dataset.n_groups == 40
        np.testing.assert_array_equal(dataset.groups, doc_id)
        _, got = collect(dataset, 32)
        np.testing.assert_array_equal(got["input_ids"], input_ids)
        np.testing.assert_array_equal(got["attention_mask"], attention_mask)
        assert got["input_ids"].dtype == np.int64


def test_csv_group_column(tmp_path, cancer):
    inputs, labels = cancer
    folder = write_csv(tmp_path, inputs, labels)
    lines = (folder / "part_1.csv").read_text().splitlines()
    (folder / "part_1.csv").write_text("\n".join(
        [f"patient,{line}" if i == 0 else f"p{(i - 1) // 4},{line}" for i, line in enumerate(lines)]))
    (folder / "quantguard.toml").write_text('groups = "patient"\n')
    dataset = ValidationSet.from_folder(folder)
    assert dataset.n_groups == -(-len(labels) // 4) and dataset.input_names == ["inputs"]
    _, got = collect(dataset, 1000)
    np.testing.assert_array_equal(got["inputs"], inputs)  # the group column is not a feature


# ---------------------------------------------------------------- duplicate samples

def test_duplicate_count_is_the_same_in_every_format(tmp_path, digits, digits_png):
    images, labels = digits
    expected = len(images) - len(np.unique(images.reshape(len(images), -1), axis=0))
    flat = images.reshape(len(images), -1)
    sets = [ValidationSet(images, labels),
            ValidationSet.from_folder(write_npz(tmp_path / "npz", images, labels, shards=3)),
            ValidationSet.from_folder(write_npy(tmp_path / "npy", inputs=images, labels=labels)),
            ValidationSet.from_folder(write_csv(tmp_path / "csv", flat, labels, shards=2)),
            ValidationSet.from_folder(digits_png)]
    assert [dataset.duplicate_count() for dataset in sets] == [expected] * len(sets)


def test_duplicate_count_after_a_pass_is_free_and_spans_all_inputs(cancer):
    inputs, labels = cancer
    copies = np.concatenate([inputs, inputs[[4, 4, 9]]])
    dataset = ValidationSet(copies, np.concatenate([labels, labels[[4, 4, 9]]]))
    list(dataset.batches(50))
    dataset._parts = []  # nothing left to read: the count must come from the pass
    assert dataset.duplicate_count() == 3
    # several inputs: a sample repeats only when all of them repeat
    other = np.arange(len(copies))
    other[-1] = 9
    assert ValidationSet({"a": copies, "b": other}).duplicate_count() == 1


# ---------------------------------------------------------------- memory

RSS_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    from pathlib import Path
    import numpy as np
    from pytest_quantguard import ValidationSet

    def hwm():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("VmHWM"))
        return int(line.split()[1]) / 1024

    dataset = ValidationSet.from_folder(sys.argv[1])
    if sys.argv[2] == "long-lived":
        dataset._parts = [dataclasses.replace(part, stream=None) for part in dataset._parts]
    before = hwm()
    total = sum(float(batch.inputs["inputs"].sum()) for batch in dataset.batches(1024))
    print(hwm() - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_streaming_npy_keeps_resident_memory_bounded(tmp_path):
    """Streaming 96 MiB adds about one window (16 MiB) to the peak RSS; one long-lived map adds
    all of it (the measure against a ~1 GB file: 70 MB against 1088 MB peak; docs/caching.md,
    "Data and cache benchmarks")."""
    inputs = np.lib.format.open_memmap(tmp_path / "inputs.npy", mode="w+", dtype=np.float32,
                                       shape=(24_576, 1024))
    inputs[:] = 1.0
    inputs.flush()
    del inputs
    grown = {mode: float(subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(tmp_path), mode],
                                        check=True, capture_output=True, text=True).stdout)
             for mode in ("windowed", "long-lived")}
    assert grown["windowed"] < 40, grown
    assert grown["long-lived"] > 80, grown  # the measure is sensitive: without windows, it grows
