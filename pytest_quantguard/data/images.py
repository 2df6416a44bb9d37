"""Image folders ``CLASS/*.png|jpg|jpeg``: one sample per image, the class from its folder.

Class indices follow the sorted class-folder names (as torchvision's ``ImageFolder`` does), or
the manifest's ``class_names`` order. Images decode with Pillow, imported when a folder of images
is loaded, batch by batch, to float32 N×H×W×C (N×H×W for one-channel images); the manifest's
``[preprocess]`` then scales, normalizes and transposes them.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pytest_quantguard.data.source import (
    DEFAULT_INPUT_NAME,
    MANIFEST_NAME,
    FileDigest,
    Loaded,
    Part,
    natural_key,
    read_bytes,
    read_unchanged,
)
from pytest_quantguard.errors import MissingBackendError, QuantGuardError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Modes numpy cannot read as pixels directly, and what they decode as.
CONVERTED_MODES = {"1": "L", "P": "RGB", "PA": "RGBA"}
IMAGE_HOWTO = "one folder per class, e.g. val/cat/001.png, val/dog/002.png"


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def class_folders(folder: Path) -> list[Path]:
    """Sub-folders holding images, sorted by name (the class order when no class_names is given)."""
    return sorted(child for child in folder.iterdir()
                  if child.is_dir() and not child.name.startswith(".")
                  and any(is_image(path) for path in child.iterdir()))


def load_images(folder: Path, classes: list[Path], manifest: dict[str, Any],
                digest: FileDigest) -> Loaded:
    """Read every image once (digest, header, PNG checksums); decode pixels only per batch."""
    image_module = _pillow(folder)
    classes = _ordered(folder, classes, manifest.get("class_names"))
    class_names = manifest.get("class_names") or [path.name for path in classes]
    class_index = {name: index for index, name in enumerate(class_names)}
    files: list[Path] = []
    read: list[bytes] = []  # each file's fingerprint: a batch decodes only those bytes
    labels: list[int] = []
    first: tuple[Path, tuple[int, int], str] | None = None
    for path in classes:
        for file in sorted((p for p in path.iterdir() if is_image(p)), key=natural_key):
            data = read_bytes(file)
            read.append(digest.add_bytes(file, data))
            size, mode = _inspect(image_module, file, data)
            if first is None:
                first = (file, size, mode)
            elif (size, mode) != first[1:]:
                raise QuantGuardError(
                    f"{file}: {size[0]}×{size[1]} {mode} image, but {first[0]} is "
                    f"{first[1][0]}×{first[1][1]} {first[2]}; every image must have one size and mode "
                    "(resize/convert them, e.g. Image.open(f).convert('RGB').resize((224, 224)))")
            files.append(file)
            labels.append(class_index[path.name])
    assert first is not None  # class_folders only returns folders that hold images
    names = manifest.get("inputs", [DEFAULT_INPUT_NAME])
    if len(names) != 1:
        raise QuantGuardError(f"{folder / MANIFEST_NAME}: an image folder has one input; name it with "
                              f'one name, e.g. inputs = ["{names[0]}"]')
    name = names[0]
    label_array = np.array(labels, dtype=np.int64)
    shape = _sample_shape(image_module, first[1], first[2])

    def decode(start: int, stop: int) -> np.ndarray:
        return _decode(image_module, files[start:stop], read[start:stop], shape)

    def load(with_inputs: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        return ({name: decode(0, len(files))} if with_inputs else {}), label_array

    def stream(batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(files), batch_size):
            yield {name: decode(start, start + batch_size)}

    return Loaded(parts=[Part(len(files), str(folder), load, None, stream)], input_names=[name],
                  has_labels=True, sample_shapes={name: shape}, class_names=list(class_names))


def _pillow(folder: Path) -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingBackendError("Pillow", "images", f"{folder} (an image folder)") from None
    return Image


def _ordered(folder: Path, classes: list[Path], class_names: list[str] | None) -> list[Path]:
    if class_names is None:
        return classes
    unknown = [path.name for path in classes if path.name not in class_names]
    if unknown:
        raise QuantGuardError(f"{folder / unknown[0]}: class folder {unknown[0]!r} is not in "
                              f"class_names of {folder / MANIFEST_NAME} ({class_names}); add it there "
                              "or rename the folder")
    return sorted(classes, key=lambda path: class_names.index(path.name))


PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk (no data) and its CRC: every whole PNG ends so


def _inspect(image_module: Any, file: Path, data: bytes) -> tuple[tuple[int, int], str]:
    """Size and mode from the header; a PNG's chunks and checksums are verified (cheap, no decode)."""
    try:
        with image_module.open(io.BytesIO(data)) as image:
            size, mode = image.size, image.mode
            if image.format == "PNG":
                image.verify()
                if not data.endswith(PNG_END):  # pixels whole, but the file cut short (a copy)
                    raise SyntaxError(f"truncated: no IEND chunk at the end of its {len(data)} bytes")
    # Pillow reports corrupt data with many exception types (OSError, SyntaxError, struct.error…)
    except Exception as error:
        raise QuantGuardError(f"{file}: not a readable image ({type(error).__name__}: {error}); "
                              "re-save it as PNG or JPEG, or remove it") from None
    return size, mode


def _sample_shape(image_module: Any, size: tuple[int, int], mode: str) -> tuple[int, ...]:
    bands = image_module.getmodebands(CONVERTED_MODES.get(mode, mode))
    return (size[1], size[0]) if bands == 1 else (size[1], size[0], bands)


def _decode(image_module: Any, files: list[Path], read: list[bytes],
            shape: tuple[int, ...]) -> np.ndarray:
    batch = np.empty((len(files), *shape), dtype=np.float32)
    for i, (file, expected) in enumerate(zip(files, read, strict=True)):
        data = read_unchanged(file, expected)
        try:
            with image_module.open(io.BytesIO(data)) as image:
                if image.mode in CONVERTED_MODES:
                    image = image.convert(CONVERTED_MODES[image.mode])
                pixels = np.asarray(image)
        except Exception as error:  # see _inspect: Pillow's decoders raise many types
            raise QuantGuardError(f"{file}: not a readable image ({type(error).__name__}: {error}); "
                                  "re-save it as PNG or JPEG, or remove it") from None
        if pixels.shape != shape:
            raise QuantGuardError(f"{file}: decodes to shape {list(pixels.shape)}, but the other "
                                  f"images are {list(shape)}; give every image one size and mode")
        batch[i] = pixels
    return batch
