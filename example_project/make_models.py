"""Build the example's models and validation set from scikit-learn's real ``load_digits``.

Run from anywhere: ``python example_project/make_models.py``. It trains a small CNN on half of
the 1,797 digit images, exports it to ONNX (``models/fp32.onnx``), quantizes it twice and writes
the held-out half as ``prod_val/``:

- ``models/int8.onnx``: static QDQ INT8 (onnxruntime), calibrated on training images only;
- ``models/int2.onnx``: a deliberately degraded model, 2-bit MatMulNBits weights on the two
  fully connected layers (after the Gemm -> MatMul rewrite that MatMulNBits needs).

The outputs are committed, so the gate runs without torch. Needs the ``dev`` extra.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0
CALIBRATION_IMAGES = 512


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Half of load_digits for training, the other half (899 images) held out as prod_val."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    return train_test_split(images, labels, test_size=0.5, random_state=SEED, stratify=labels)


def train_cnn(images: np.ndarray, labels: np.ndarray, epochs: int = 40):
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def export_onnx(model, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(
            model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )


class _Calibration:
    """onnxruntime CalibrationDataReader over training images (never the held-out set)."""

    def __init__(self, images: np.ndarray, batch_size: int = 64):
        self._batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        self.rewind()

    def get_next(self):
        batch = next(self._iter, None)
        return None if batch is None else {"input": batch}

    def rewind(self):
        self._iter = iter(self._batches)


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray, workdir: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = workdir / "fp32_pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    reader = _Calibration(calibration)
    quantize_static(
        str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def quantize_weights_2bit(fp32: Path, out: Path, workdir: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat, quant_pre_process

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        # Importing this module calls logging.basicConfig(level=INFO) on the root logger.
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )
        from onnxruntime.quantization.onnx_model import ONNXModel
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]

    pre = workdir / "fp32_pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    model = ONNXModel(onnx.load(str(pre)))
    model.replace_gemm_with_matmul()  # MatMulNBits silently skips Gemm nodes
    quantizer = MatMulNBitsQuantizer(model.model, algo_config=DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, bits=2, quant_format=QuantFormat.QOperator))
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    if "MatMulNBits" not in ops:
        raise RuntimeError(f"{out}: nothing was quantized (ops: {sorted(ops)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write models/ and prod_val/ into")
    args = parser.parse_args(argv)
    import tempfile

    models = args.out / "models"
    prod_val = args.out / "prod_val"
    models.mkdir(parents=True, exist_ok=True)
    prod_val.mkdir(parents=True, exist_ok=True)

    train_x, val_x, train_y, val_y = load_split()
    model = train_cnn(train_x, train_y)
    export_onnx(model, models / "fp32.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        quantize_int8(models / "fp32.onnx", models / "int8.onnx", train_x[:CALIBRATION_IMAGES], Path(tmp))
        quantize_weights_2bit(models / "fp32.onnx", models / "int2.onnx", Path(tmp))
    np.savez(prod_val / "digits_heldout.npz", inputs=val_x, labels=val_y)
    print(f"wrote {models} and {prod_val} ({len(val_y)} held-out images)")


if __name__ == "__main__":
    main()
