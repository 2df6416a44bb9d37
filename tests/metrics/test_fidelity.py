"""Label-free fidelity on folders without labels (task = "fidelity").

Class-score outputs: the example's digits CNNs (fp32, int8, int2 ONNX) on the held-out digit
images saved without their labels; ``agreement`` is top-1 agreement, its interval Wilson's on the
disagreement count. Embedding outputs: a tiny torch token encoder (per-token hidden states,
padded batches with an ``attention_mask``) against a copy with its weights rounded to the int8
grid; ``cosine`` and ``rel_error`` must equal a direct numpy computation over the unmasked tokens
only, per token or after a pooling.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import MODELS, PROD_VAL
from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.stats.paired_binary import wilson_interval

FP32, INT8, INT2 = (str(MODELS / f"{name}.onnx") for name in ("fp32", "int8", "int2"))
FAST = dict(resamples=2000)
VOCAB, DIM, TOKENS, SAMPLES = 40, 16, 12, 160


def write_folder(folder, manifest: str, **arrays) -> str:
    folder.mkdir()
    np.savez(folder / "shard_0.npz", **arrays)
    (folder / "quantguard.toml").write_text(manifest, encoding="utf-8")
    return str(folder)


# --- class-score outputs: agreement ------------------------------------------------------------

@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.load(PROD_VAL / "digits_heldout.npz")["inputs"]


@pytest.fixture
def unlabeled_digits(tmp_path, images) -> str:
    return write_folder(tmp_path / "unlabeled", 'task = "fidelity"\n', inputs=images)


def onnx_classes(path: str, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0].argmax(1)


def test_agreement_is_the_fidelity_default_and_uses_wilson_on_the_disagreements(
        unlabeled_digits, images):
    result = compare(FP32, INT2, data=unlabeled_digits, **FAST)
    reference, candidate = onnx_classes(FP32, images), onnx_classes(INT2, images)
    disagreements = int(np.sum(reference != candidate))
    assert disagreements > 0  # int2 really differs: the interval has something to measure
    assert result.metric == "agreement" and result.method == "wilson"
    assert result.n == len(images)
    assert result.reference_score == 1.0
    assert result.candidate_score == pytest.approx(np.mean(reference == candidate), abs=1e-12)
    assert result.drop == pytest.approx(disagreements / len(images), abs=1e-12)
    low, high = wilson_interval(disagreements, len(images), 0.95)
    assert tuple(result.interval) == pytest.approx((low, high), abs=1e-12)
    assert result.details["disagreements"] == disagreements
    assert f"differ on {disagreements} of {len(images)} samples" in result.message
    assert result.verdict != "ship"


def test_agreement_interval_follows_the_confidence(unlabeled_digits, images):
    result = compare(FP32, INT8, data=unlabeled_digits, metric="agreement", confidence=0.9, **FAST)
    disagreements = int(np.sum(onnx_classes(FP32, images) != onnx_classes(INT8, images)))
    assert tuple(result.interval) == pytest.approx(
        wilson_interval(disagreements, len(images), 0.9), abs=1e-12)


def test_identical_models_agree_fully_with_a_finite_nonzero_interval_and_ship(unlabeled_digits):
    result = compare(FP32, FP32, data=unlabeled_digits, metric="agreement", **FAST)
    assert result.candidate_score == 1.0 and result.drop == 0.0
    low, high = result.interval
    assert np.isfinite(low) and np.isfinite(high)
    assert low == 0.0 < high < 0.01  # Wilson's bound for 0 of 899, never zero width
    assert result.verdict == "ship"


def test_agreement_from_inputs_alone(images):
    """``data=inputs`` (no labels) is a fidelity set too."""
    subset = images[:300]
    result = compare(FP32, INT2, data=subset, **FAST)
    expected = np.mean(onnx_classes(FP32, subset) == onnx_classes(INT2, subset))
    assert result.metric == "agreement"
    assert result.candidate_score == pytest.approx(expected, abs=1e-12)


def test_accuracy_on_an_unlabeled_folder_says_it_needs_labels(unlabeled_digits):
    with pytest.raises(QuantGuardError, match=r"'accuracy' needs labels.*agreement"):
        compare(FP32, INT8, data=unlabeled_digits, metric="accuracy", **FAST)


# --- embedding outputs: cosine and rel_error ----------------------------------------------------

class TokenEncoder(torch.nn.Module):
    """Per-token hidden states (batch, tokens, dim): an embedding, a projection, and each sample's
    mean over its real tokens mixed in. Padded positions get hidden states too (garbage that the
    metric must ignore), but never influence the real tokens'."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.project = torch.nn.Linear(DIM, DIM)
        self.mix = torch.nn.Linear(DIM, DIM)

    def forward(self, input_ids, attention_mask):
        hidden = torch.tanh(self.project(self.embed(input_ids)))
        weights = attention_mask.to(hidden.dtype)[..., None]
        context = (hidden * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1)
        return hidden + torch.tanh(self.mix(context))


def int8_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The same module with every weight rounded to a symmetric per-tensor int8 grid."""
    quantized = copy.deepcopy(module)
    with torch.no_grad():
        for parameter in quantized.parameters():
            scale = parameter.abs().max() / 127
            parameter.copy_(torch.round(parameter / scale) * scale)
    return quantized


class Tokens:
    """Padded token batches (left- or right-padded at random) and both encoders."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        torch.manual_seed(0)
        self.reference = TokenEncoder().eval()
        self.candidate = int8_copy(self.reference).eval()
        lengths = rng.integers(3, TOKENS + 1, size=SAMPLES)
        lengths[:4] = TOKENS  # some unpadded samples
        self.mask = np.zeros((SAMPLES, TOKENS), dtype=np.int64)
        for i, length in enumerate(lengths):
            if i % 2:
                self.mask[i, TOKENS - length:] = 1
            else:
                self.mask[i, :length] = 1
        real = rng.integers(1, VOCAB, size=(SAMPLES, TOKENS))
        self.ids = np.where(self.mask == 1, real, 0)  # pad id 0
        # the same samples with other values at the padded positions
        self.noisy_ids = np.where(self.mask == 1, real, rng.integers(1, VOCAB, size=real.shape))
        self.lengths = lengths

    def hidden(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            arguments = (torch.tensor(ids), torch.tensor(self.mask))
            return (self.reference(*arguments).numpy().astype(np.float64),
                    self.candidate(*arguments).numpy().astype(np.float64))


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens()


def token_folder(tmp_path, tokens: Tokens, name: str, *, pooling: str | None = None,
                 noisy: bool = False, slices: bool = False) -> str:
    manifest = 'task = "fidelity"\ninputs = ["input_ids", "attention_mask"]\n'
    arrays = dict(input_ids=tokens.noisy_ids if noisy else tokens.ids, attention_mask=tokens.mask)
    if pooling is not None:
        manifest += f'pooling = "{pooling}"\n'
    if slices:
        manifest += 'slices = "length"\n'
        arrays["length"] = np.where(tokens.lengths < 8, "short", "long")
    return write_folder(tmp_path / name, manifest, **arrays)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    return np.linalg.norm(candidate - reference, axis=-1) / np.linalg.norm(reference, axis=-1)


def per_token_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each sample's mean over its unmasked tokens, looped: the plainest possible reading."""
    return np.array([values[i][mask[i] == 1].mean() for i in range(len(values))])


def pooled(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    rows = []
    for i in range(len(hidden)):
        real = hidden[i][mask[i] == 1]
        rows.append({"mean": real.mean(0), "max": real.max(0), "first": real[0],
                     "last": real[-1]}[pooling])
    return np.stack(rows)


def test_cosine_is_the_mean_over_unmasked_tokens(tmp_path, tokens):
    reference, candidate = tokens.hidden(tokens.ids)
    expected = per_token_mean(cosine(reference, candidate), tokens.mask)
    result = compare(tokens.reference, tokens.candidate, data=token_folder(tmp_path, tokens, "t"),
                     metric="cosine", max_drop=0.001, **FAST)
    assert result.metric == "cosine" and result.n == SAMPLES
    assert result.reference_score == 1.0
    assert result.candidate_score == pytest.approx(expected.mean(), abs=1e-9)
    assert result.drop == pytest.approx(1.0 - expected.mean(), abs=1e-9)
    assert 0.0 < result.drop < 0.001  # int8 rounding bends the vectors a little
    low, high = result.interval
    assert low < result.drop < high and result.method == "bca"
    assert result.verdict == "ship"
    # counting the padded positions too would give another figure
    everything = cosine(reference, candidate).mean(1).mean()
    assert abs(everything - expected.mean()) > 1e-7


def test_values_at_padded_positions_do_not_change_cosine_or_rel_error(tmp_path, tokens):
    clean_outputs, noisy_outputs = tokens.hidden(tokens.ids), tokens.hidden(tokens.noisy_ids)
    padded = tokens.mask == 0
    for clean_hidden, noisy_hidden in zip(clean_outputs, noisy_outputs, strict=True):
        assert not np.allclose(clean_hidden[padded], noisy_hidden[padded])  # the garbage changed
        assert np.array_equal(clean_hidden[~padded], noisy_hidden[~padded])
    for metric in ("cosine", "rel_error"):
        clean = compare(tokens.reference, tokens.candidate, metric=metric,
                        data=token_folder(tmp_path, tokens, f"clean_{metric}"), **FAST)
        noisy = compare(tokens.reference, tokens.candidate, metric=metric,
                        data=token_folder(tmp_path, tokens, f"noisy_{metric}", noisy=True), **FAST)
        assert noisy.candidate_score == pytest.approx(clean.candidate_score, abs=1e-12)
        assert noisy.drop == pytest.approx(clean.drop, abs=1e-12)


def test_slices_break_cosine_down_by_the_per_sample_values(tmp_path, tokens):
    """The per-slice rows are means of the per-sample cosines: a finer check of each sample's
    value than the overall mean."""
    reference, candidate = tokens.hidden(tokens.ids)
    per_sample = per_token_mean(cosine(reference, candidate), tokens.mask)
    result = compare(tokens.reference, tokens.candidate, metric="cosine",
                     data=token_folder(tmp_path, tokens, "sliced", slices=True), **FAST)
    rows = {row["slice"]: row for row in result.details["slices"]}
    assert set(rows) == {"short", "long"}
    for name, chosen in (("short", tokens.lengths < 8), ("long", tokens.lengths >= 8)):
        assert rows[name]["n"] == int(chosen.sum())
        assert rows[name]["candidate"] == pytest.approx(per_sample[chosen].mean(), abs=1e-9)
        assert rows[name]["drop"] == pytest.approx(1.0 - per_sample[chosen].mean(), abs=1e-9)


def test_rel_error_is_the_mean_relative_norm_over_unmasked_tokens(tmp_path, tokens):
    reference, candidate = tokens.hidden(tokens.ids)
    expected = per_token_mean(relative_error(reference, candidate), tokens.mask).mean()
    result = compare(tokens.reference, tokens.candidate, metric="rel_error", max_drop=0.05, qat_limit=0.15,
                     data=token_folder(tmp_path, tokens, "r"), **FAST)
    assert result.reference_score == 0.0
    assert result.candidate_score == pytest.approx(expected, abs=1e-9)
    assert result.drop == pytest.approx(expected, abs=1e-9) and result.drop > 0
    assert not result.relative
    assert result.interval.low < result.drop < result.interval.high
    with pytest.raises(QuantGuardError, match=r"rel_error.*relative"):
        compare(tokens.reference, tokens.candidate, metric="rel_error", relative=True,
                data=token_folder(tmp_path, tokens, "r2"), **FAST)


@pytest.mark.parametrize("pooling", ["mean", "max", "first", "last"])
def test_pooling_by_keyword_pools_over_unmasked_tokens(tmp_path, tokens, pooling):
    reference, candidate = tokens.hidden(tokens.ids)
    expected = cosine(pooled(reference, tokens.mask, pooling),
                      pooled(candidate, tokens.mask, pooling)).mean()
    result = compare(tokens.reference, tokens.candidate, metric="cosine", pooling=pooling,
                     data=token_folder(tmp_path, tokens, "p"), **FAST)
    assert result.candidate_score == pytest.approx(expected, abs=1e-9)
    assert result.metric == f"cosine(pooling={pooling!r})"
    per_token = per_token_mean(cosine(reference, candidate), tokens.mask).mean()
    assert abs(per_token - expected) > 1e-9  # pooling is not the per-token figure


def test_pooling_from_the_manifest_equals_the_keyword(tmp_path, tokens):
    reference, candidate = tokens.hidden(tokens.ids)
    from_manifest = compare(tokens.reference, tokens.candidate, metric="cosine",
                            data=token_folder(tmp_path, tokens, "m", pooling="mean"), **FAST)
    by_keyword = compare(tokens.reference, tokens.candidate, metric="cosine", pooling="mean",
                         data=token_folder(tmp_path, tokens, "k"), **FAST)
    expected = cosine(pooled(reference, tokens.mask, "mean"),
                      pooled(candidate, tokens.mask, "mean")).mean()
    assert from_manifest.candidate_score == pytest.approx(expected, abs=1e-9)
    assert by_keyword.candidate_score == pytest.approx(expected, abs=1e-9)
    assert from_manifest.metric == by_keyword.metric
    rel = compare(tokens.reference, tokens.candidate, metric="rel_error",
                  data=token_folder(tmp_path, tokens, "mr", pooling="mean"), **FAST)
    expected_rel = relative_error(pooled(reference, tokens.mask, "mean"),
                                  pooled(candidate, tokens.mask, "mean")).mean()
    assert rel.candidate_score == pytest.approx(expected_rel, abs=1e-9)


def test_pooling_keyword_overrides_the_manifest(tmp_path, tokens):
    reference, candidate = tokens.hidden(tokens.ids)
    result = compare(tokens.reference, tokens.candidate, metric="cosine", pooling="last",
                     data=token_folder(tmp_path, tokens, "o", pooling="mean"), **FAST)
    expected = cosine(pooled(reference, tokens.mask, "last"),
                      pooled(candidate, tokens.mask, "last")).mean()
    assert result.candidate_score == pytest.approx(expected, abs=1e-9)


def test_an_unknown_pooling_keyword_names_the_choices(tmp_path, tokens):
    with pytest.raises(QuantGuardError, match=r"pooling.*mean.*max.*first.*last"):
        compare(tokens.reference, tokens.candidate, metric="cosine", pooling="median",
                data=token_folder(tmp_path, tokens, "u"), **FAST)


def test_cosine_on_pooled_embeddings_without_a_mask(tokens):
    """A 2-D embedding output (one vector per sample) needs no mask: one cosine per sample."""
    inputs = np.random.default_rng(3).normal(size=(200, DIM)).astype(np.float32)
    weights = np.random.default_rng(4).normal(size=(DIM, 8))
    quantized = np.round(weights / (np.abs(weights).max() / 127)) * (np.abs(weights).max() / 127)

    def reference(batch):
        return np.tanh(batch @ weights)

    def candidate(batch):
        return np.tanh(batch @ quantized)

    result = compare(reference, candidate, data=inputs, metric="cosine", **FAST)
    expected = cosine(reference(inputs.astype(np.float64)), candidate(inputs.astype(np.float64)))
    assert result.candidate_score == pytest.approx(expected.mean(), abs=1e-9)


def test_outputs_of_different_shapes_are_a_clear_error(tmp_path, tokens):
    def narrower(batch):  # a callable gets the dict of named inputs
        with torch.no_grad():
            hidden = tokens.candidate(torch.tensor(batch["input_ids"]),
                                      torch.tensor(batch["attention_mask"]))
        return hidden[..., :8].numpy()

    with pytest.raises(QuantGuardError, match=r"cosine.*shape \[\d+, 12, 16\].*\[\d+, 12, 8\]"):
        compare(tokens.reference, narrower, metric="cosine",
                data=token_folder(tmp_path, tokens, "w"), **FAST)


def test_agreement_on_per_token_outputs_is_a_clear_error(tmp_path, tokens):
    folder = token_folder(tmp_path, tokens, "a")
    for metric in ("agreement", None):  # None: the fidelity task's default, agreement
        with pytest.raises(QuantGuardError, match=r"agreement.*shape \[\d+, 12, 16\].*cosine"):
            compare(tokens.reference, tokens.candidate, data=folder, metric=metric, **FAST)


def test_an_all_padding_sample_is_named(tmp_path, tokens):
    mask = tokens.mask.copy()
    mask[5] = 0
    data = ValidationSet({"input_ids": tokens.ids, "attention_mask": mask}, task="fidelity")
    with pytest.raises(QuantGuardError, match="sample 5 has no unmasked token"):
        compare(tokens.reference, tokens.candidate, data=data, metric="cosine", **FAST)
