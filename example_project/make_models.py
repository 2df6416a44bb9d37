"""Build the example's models and validation sets from scikit-learn's real data sets.

``load_digits`` and ``load_diabetes`` ship with scikit-learn: nothing is downloaded. Run from
anywhere: ``python example_project/make_models.py``. Digits: it trains a small CNN on half of the
1,797 digit images, exports it to ONNX (``models/fp32.onnx``), quantizes it twice and writes the
held-out half as ``prod_val/``:

- ``models/int8.onnx``: static QDQ INT8 (onnxruntime), calibrated on training images only,
  with 7-bit weights (``reduce_range``) so that it computes the same on CPUs with and without VNNI;
- ``models/int2.onnx``: a deliberately degraded model, 2-bit MatMulNBits weights on the two
  fully connected layers (after the Gemm -> MatMul rewrite that MatMulNBits needs);
- ``models/embed_fp32.onnx`` / ``models/embed_int8.onnx``: the same CNN cut before its last layer
  (the 64-d embedding), fp32 and INT8 the same way as ``int8.onnx``, for a ``cosine`` gate;
- ``models/int8_dynamic.onnx``: dynamic INT8 (onnxruntime ``quantize_dynamic``, no calibration):
  weights INT8, activation ranges computed on each batch at run time, so its outputs depend on the
  batch (the gate pins the deployment's batch 1 for it);
- ``prod_unlabeled/``: the ``prod_val`` images without labels (``task = "fidelity"``), for
  label-free gates (top-1 agreement of fp32 vs int8, cosine of the embeddings).
- ``models/outlier_fp32.onnx`` / ``models/outlier_int8_per_tensor.onnx``: an MLP with BatchNorm
  on the 64 pixels whose first layer has one channel drifted 40x (the same float function: the
  BatchNorm folds it back), and its dynamic INT8 with one weight scale per tensor, as
  ``quantize_dynamic`` makes it by default: the outlier channel takes the scale and the other
  channels lose ~2 points; ``models/outlier_int8_per_channel.onnx``, the per-channel remedy the
  diagnosis proposes, applied, ships (docs/diagnosis.md).

Diabetes: a small MLP regressor (standardisation of features and target built into the graph)
trained on 60% of the 442 patients, ``models/diabetes_fp32.onnx``, its static QDQ INT8 version
``models/diabetes_int8.onnx`` (the Gemms only, calibrated on training rows), and the other 177
patients as ``prod_val_diabetes/`` (``task = "regression"``).

Finally it runs every model with onnxruntime and prints the figures the gates judge. The outputs
are committed, so the gates run without torch; rerunning with the same library versions on the
same kind of CPU rewrites them byte for byte (training runs on one thread, so the number of cores
does not matter, but the CPU's vector instructions change the float rounding of training
and may change calibration). Needs the ``dev`` extra.
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
DIABETES_HELD_OUT = 0.4  # 177 of the 442 patients
OUTLIER_CHANNEL, OUTLIER_SCALE = 0, 40.0  # the drifted channel of outlier_fp32.onnx, and by how much


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

    torch.set_num_threads(1)  # the sums' order, hence the trained weights, depends on the threads
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )
    return _fit(model, images, labels, epochs, lr=1e-3)


def train_bn_mlp(images: np.ndarray, labels: np.ndarray, epochs: int = 30):
    """An MLP on the 64 pixels with BatchNorm after its first layer (Flatten, Linear, BatchNorm1d,
    ReLU, Linear), trained as ``train_cnn``; then one channel drifted (below)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Linear(64, 10))
    return drift_channel(_fit(model, images, labels, epochs, lr=1e-2), OUTLIER_CHANNEL,
                         OUTLIER_SCALE)


def _fit(model, images: np.ndarray, labels: np.ndarray, epochs: int, lr: float):
    """Adam on cross-entropy, batches of 64 in a seeded order; the model in eval mode after."""
    import torch
    from torch import nn

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def drift_channel(model, channel: int, scale: float):
    """BatchNorm makes the rows of the Linear before it scale-free: a row times s, with its
    running mean times s and its running variance times s^2, computes exactly the same function,
    so nothing in training holds the rows' sizes together (without weight decay they drift
    apart). Here one row has drifted by ``scale``: the float model is unchanged, but the weight
    tensor now holds an outlier channel, and per-tensor INT8 (one scale for the tensor) spends its
    levels on it and crushes the other 63 channels."""
    import torch

    linear, norm = model[1], model[2]
    with torch.no_grad():
        linear.weight[channel] *= scale
        linear.bias[channel] *= scale
        norm.running_mean[channel] *= scale
        norm.running_var[channel] *= scale * scale
    return model


def load_diabetes_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """load_diabetes in its original units (age, sex, BMI, blood pressure, six blood serum
    measurements; target: disease progression after a year): 60% trains, 40% is held out."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    features, targets = load_diabetes(return_X_y=True, scaled=False)
    return train_test_split(features.astype(np.float32), targets.astype(np.float32),
                            test_size=DIABETES_HELD_OUT, random_state=SEED)


def train_regressor(features: np.ndarray, targets: np.ndarray, hidden: int = 8, epochs: int = 100):
    """A one-hidden-layer MLP on standardised features and target. The scaling is part of the
    model (fp32 Sub/Div before it, Mul/Add after it): it takes raw features and predicts in the
    target's units. Size, epochs and weight decay were chosen on a split of the training rows;
    265 patients overfit a wider or longer-trained net."""
    import torch
    from torch import nn

    class Standardized(nn.Module):
        def __init__(self, net: nn.Module, scaling: dict[str, np.ndarray]):
            super().__init__()
            self.net = net
            for name, value in scaling.items():
                self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

        def forward(self, x):
            return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean

    scaling = {"x_mean": features.mean(0), "x_std": features.std(0),
               "y_mean": targets.mean(), "y_std": targets.std()}
    torch.set_num_threads(1)  # as in train_cnn: weights independent of the number of cores
    torch.manual_seed(SEED)
    net = nn.Sequential(nn.Linear(features.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1.0)
    x = torch.from_numpy((features - scaling["x_mean"]) / scaling["x_std"])
    y = torch.from_numpy((targets - scaling["y_mean"]) / scaling["y_std"])[:, None]
    net.train()
    for _ in range(epochs):  # full batch
        optimizer.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()
    return Standardized(net, scaling).eval()


def export_onnx(model, path: Path, *, sample_shape: tuple[int, ...] = (1, 8, 8),
                output_name: str = "logits") -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(
            model, (torch.zeros(1, *sample_shape),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=[output_name],
            dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
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


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray, workdir: Path,
                  op_types: list[str] | None = None) -> None:
    """Static QDQ INT8 (per-channel 7-bit weights, MinMax-calibrated 8-bit activations);
    ``op_types`` limits it to those operators (None: every operator onnxruntime can quantize).

    ``reduce_range``: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) onnxruntime's
    u8s8 kernels add pairs of u8 x s8 products in 16 bits, which saturate with full-range
    weights (2 x 255 x 127 > 32767): the same model would score differently there. With
    weights in [-64, 64] a pair fits (2 x 255 x 64 = 32640), so the sums are exact with or
    without VNNI."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    pre = workdir / f"{fp32.stem}_pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    reader = _Calibration(calibration)
    quantize_static(
        str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types,
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


def quantize_dynamic_int8(fp32: Path, out: Path, workdir: Path) -> None:
    """Dynamic INT8 of the fully connected layers (MatMul after the Gemm -> MatMul rewrite, which
    quantize_dynamic needs for DynamicQuantizeLinear + MatMulInteger): 7-bit weights
    (``reduce_range``) as in ``quantize_int8``; activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = workdir / f"{fp32.stem}_dynamic_pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, reduce_range=True,
                     op_types_to_quantize=["MatMul", "Gemm"])
    import onnx

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    if "DynamicQuantizeLinear" not in ops:
        raise RuntimeError(f"{out}: nothing was quantized dynamically (ops: {sorted(ops)})")


def write_folder(folder: Path, shard: str, manifest: str | None = None, **arrays: np.ndarray) -> None:
    """One validation folder: an npz shard, plus a ``quantguard.toml`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / shard, **arrays)
    if manifest is not None:
        (folder / "quantguard.toml").write_text(manifest)


def build_digits(out: Path, workdir: Path) -> None:
    """The CNN, its INT8/2-bit versions, its 64-d embedding (fp32 and INT8), prod_val/ and the
    same held-out images without labels as prod_unlabeled/."""
    models = out / "models"
    train_x, val_x, train_y, val_y = load_split()
    model = train_cnn(train_x, train_y)
    calibration = train_x[:CALIBRATION_IMAGES]
    export_onnx(model, models / "fp32.onnx")
    quantize_int8(models / "fp32.onnx", models / "int8.onnx", calibration, workdir)
    quantize_weights_2bit(models / "fp32.onnx", models / "int2.onnx", workdir)
    quantize_dynamic_int8(models / "fp32.onnx", models / "int8_dynamic.onnx", workdir)
    embed = model[:-1]  # everything up to the last layer's input: the 64-unit ReLU
    export_onnx(embed, models / "embed_fp32.onnx", output_name="embedding")
    quantize_int8(models / "embed_fp32.onnx", models / "embed_int8.onnx", calibration, workdir)
    write_folder(out / "prod_val", "digits_heldout.npz", inputs=val_x, labels=val_y)
    write_folder(out / "prod_unlabeled", "digits_heldout_inputs.npz",
                 '# The prod_val images without their labels: the gate compares the models\' '
                 'outputs.\ntask = "fidelity"\n', inputs=val_x)
    print(f"digits: wrote {models}, prod_val/ and prod_unlabeled/ ({len(val_y)} held-out images)")


def build_outlier(out: Path, workdir: Path) -> None:
    """The BatchNorm MLP with a drifted channel (``outlier_fp32.onnx``), its dynamic INT8 as
    ``quantize_dynamic`` makes it by default, one weight scale per tensor
    (``outlier_int8_per_tensor.onnx``; as ``quantize_dynamic_int8``), and the per-channel remedy
    the diagnosis proposes, applied (``outlier_int8_per_channel.onnx``: the same call with
    ``per_channel=True``)."""
    models = out / "models"
    train_x, _, train_y, _ = load_split()
    model = train_bn_mlp(train_x, train_y)
    export_onnx(model, models / "outlier_fp32.onnx")
    quantize_dynamic_int8(models / "outlier_fp32.onnx", models / "outlier_int8_per_tensor.onnx",
                          workdir)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the remedy the diagnosis prints for the per-tensor model, as printed
    quantize_dynamic(str(models / "outlier_fp32.onnx"), str(models / "outlier_int8_per_channel.onnx"),
                     weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    print(f"outlier: wrote {models}/outlier_fp32.onnx, outlier_int8_per_tensor.onnx and "
          "outlier_int8_per_channel.onnx")


def build_diabetes(out: Path, workdir: Path) -> None:
    """The diabetes regressor (fp32 and static QDQ INT8 of its two Gemms) and prod_val_diabetes/."""
    models = out / "models"
    train_x, val_x, train_y, val_y = load_diabetes_split()
    model = train_regressor(train_x, train_y)
    export_onnx(model, models / "diabetes_fp32.onnx", sample_shape=train_x.shape[1:],
                output_name="progression")
    # Static, not dynamic: a dynamic INT8 model's outputs depend on which rows share its batch.
    # Only the Gemms: the raw features (cholesterol in the hundreds, sex 1 or 2) stay fp32.
    quantize_int8(models / "diabetes_fp32.onnx", models / "diabetes_int8.onnx", train_x, workdir,
                  op_types=["Gemm"])
    write_folder(out / "prod_val_diabetes", "diabetes_heldout.npz",
                 '# Held-out load_diabetes patients; labels: disease progression after a year.\n'
                 'task = "regression"\n', inputs=val_x, labels=val_y)
    print(f"diabetes: wrote {models} and prod_val_diabetes/ ({len(val_y)} held-out patients)")


def _predict(model: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def summarize(out: Path) -> None:
    """The written models run by onnxruntime on the written folders: the figures the gates see."""
    models = out / "models"
    with np.load(out / "prod_val_diabetes" / "diabetes_heldout.npz") as shard:
        features, targets = shard["inputs"], shard["labels"]
    errors = {}
    for name in ("diabetes_fp32", "diabetes_int8"):
        prediction = _predict(models / f"{name}.onnx", features)
        assert prediction.shape == (len(targets), 1), prediction.shape
        error = prediction[:, 0] - targets
        errors[name] = (np.abs(error).mean(), np.sqrt(np.square(error).mean()))
        print(f"{name}: MAE {errors[name][0]:.3f}  RMSE {errors[name][1]:.3f}")
    (mae_fp32, rmse_fp32), (mae_int8, rmse_int8) = errors.values()
    print(f"diabetes relative drop (int8/fp32 - 1): MAE {mae_int8 / mae_fp32 - 1:+.5f}  "
          f"RMSE {rmse_int8 / rmse_fp32 - 1:+.5f}")

    with np.load(out / "prod_unlabeled" / "digits_heldout_inputs.npz") as shard:
        images = shard["inputs"]
    logits = [_predict(models / f"{name}.onnx", images) for name in ("fp32", "int8")]
    assert logits[0].shape == logits[1].shape == (len(images), 10)
    agree = logits[0].argmax(1) == logits[1].argmax(1)
    print(f"top-1 agreement fp32 vs int8: {agree.mean():.5f} ({(~agree).sum()} of {len(images)} differ)")
    reference, candidate = (_predict(models / f"{name}.onnx", images)
                            for name in ("embed_fp32", "embed_int8"))
    assert reference.shape == candidate.shape == (len(images), 64)
    cosine = (reference * candidate).sum(1) / (np.linalg.norm(reference, axis=1)
                                                * np.linalg.norm(candidate, axis=1))
    print(f"embedding cosine fp32 vs int8: mean {cosine.mean():.5f}, min {cosine.min():.5f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder to write models/ and the validation folders into")
    args = parser.parse_args(argv)
    import tempfile

    (args.out / "models").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build_digits(args.out, Path(tmp))
        build_diabetes(args.out, Path(tmp))
        build_outlier(args.out, Path(tmp))
    summarize(args.out)


if __name__ == "__main__":
    main()
