"""Detection inputs: separate boxes / scores / classes outputs (by name, by position, with a
count), .npz detection folders, and both runners (onnxruntime on real ONNX graphs, torch) feeding
the detection metrics (docs/data.md, "Detection ground truth", "Detection outputs")."""

from __future__ import annotations

import numpy as np
import pytest
from detection_models import onnx_detector, write_detection_shards

from pytest_quantguard import ValidationSet, compare
from pytest_quantguard.data.detection import DETECTION
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.metrics.detection_outputs import merged_detections
from pytest_quantguard.simulation.detection import MILD, detection_set

N = 80


@pytest.fixture(scope="module")
def drawn():
    return detection_set(np.random.default_rng(7), N, MILD)


def _data(drawn):
    return ValidationSet(np.arange(N, dtype=np.float32)[:, None], drawn.labels, task=DETECTION)


def _rows(table):
    return lambda batch: table[batch[:, 0].astype(int)]


def _separate(table, names=("boxes", "scores", "labels", "num_detections"), junk=False):
    """A callable returning the detections as named arrays; ``junk``: rows past the count get a
    high score (the count, not the score, marks them as padding)."""
    def predict(batch):
        rows = table[batch[:, 0].astype(int)].copy()
        count = (rows[..., 4] > 0).sum(axis=1)
        if junk:
            rows[..., 4] = np.where(rows[..., 4] > 0, rows[..., 4], 0.99)
        values = (rows[..., :4], rows[..., 4], rows[..., 5].astype(np.int64), count)
        return dict(zip(names, values, strict=False))
    return predict


def test_separate_outputs_give_the_combined_outputs_result(drawn):
    data = _data(drawn)
    combined = compare(_rows(drawn.reference), _rows(drawn.candidate), data=data, metric="map50",
                       resamples=200)
    named = compare(_separate(drawn.reference), _separate(drawn.candidate), data=data,
                    metric="map50", resamples=200)
    tensorflow = compare(_separate(drawn.reference, ("detection_boxes", "detection_scores",
                                                     "detection_classes", "num_detections")),
                         _rows(drawn.candidate), data=data, metric="map50", resamples=200)
    counted = compare(_separate(drawn.reference, junk=True), _separate(drawn.candidate, junk=True),
                      data=data, metric="map50", resamples=200)
    for other in (named, tensorflow, counted):
        assert (other.reference_score, other.candidate_score) == (combined.reference_score,
                                                                  combined.candidate_score)
        assert other.interval.low == combined.interval.low
    # without the count the junk rows are detections, and the scores change
    uncounted = compare(_separate(drawn.reference, ("boxes", "scores", "labels"), junk=True),
                        _rows(drawn.candidate), data=data, metric="map50", resamples=200)
    assert uncounted.reference_score < combined.reference_score


def test_unrecognised_or_misshaped_outputs_are_refused():
    boxes, scores = np.zeros((2, 5, 4)), np.zeros((2, 5))
    with pytest.raises(QuantGuardError, match=r"boxes, scores and classes .* Name them with 'box'"):
        merged_detections({"a": boxes, "b": scores}, "reference model")
    with pytest.raises(QuantGuardError, match=r"need boxes \[batch, max_det, 4\]"):
        merged_detections({"boxes": boxes, "scores": scores, "classes": np.zeros((2, 4))}, "m")
    with pytest.raises(QuantGuardError, match=r"count output 'num' needs one integer >= 0"):
        merged_detections({"boxes": boxes, "scores": scores, "classes": scores,
                           "num": np.array([1.5, 2])}, "m")


def test_npz_detection_folder_equals_the_in_memory_set(drawn, tmp_path):
    folder = write_detection_shards(tmp_path / "val", drawn.labels, [0, 30, N])
    loaded = ValidationSet.from_folder(folder)
    assert loaded.task == DETECTION and loaded.n == N
    width = loaded.labels.shape[1]
    assert width == int((drawn.labels[..., 4] >= 0).sum(axis=1).max())
    np.testing.assert_array_equal(loaded.labels, drawn.labels[:, :width])
    from_folder = compare(_rows(drawn.reference), _rows(drawn.candidate), data=loaded,
                          metric="map50_95", resamples=200)
    in_memory = compare(_rows(drawn.reference), _rows(drawn.candidate), data=_data(drawn),
                        metric="map50_95", resamples=200)
    assert from_folder.drop == in_memory.drop  # (the streams differ: they derive from the digest)
    assert from_folder.interval.low < from_folder.drop < from_folder.interval.high


def test_a_detection_folder_missing_an_array_names_it(drawn, tmp_path):
    folder = write_detection_shards(tmp_path / "val", drawn.labels, [0, N])
    arrays = dict(np.load(folder / "shard_0.npz"))
    del arrays["box_classes"]
    np.savez(folder / "shard_0.npz", **arrays)
    with pytest.raises(QuantGuardError, match="box_classes missing"):
        ValidationSet.from_folder(folder)


def test_onnx_detectors_through_onnxruntime(drawn, tmp_path):
    """Real ONNX graphs: one emits [batch, max_det, 6], the other boxes / scores / labels /
    num_detections; the result equals the callables'."""
    reference = onnx_detector(tmp_path / "reference.onnx", drawn.reference, separate=True)
    candidate = onnx_detector(tmp_path / "candidate.onnx", drawn.candidate)
    result = compare(str(reference), str(candidate), data=_data(drawn), metric="map50",
                     resamples=200, batch_size=16)
    expected = compare(_rows(drawn.reference.astype(np.float32)),
                       _rows(drawn.candidate.astype(np.float32)), data=_data(drawn),
                       metric="map50", resamples=200)
    assert result.reference_score == pytest.approx(expected.reference_score, abs=1e-12)
    assert result.drop == pytest.approx(expected.drop, abs=1e-12)
    assert result.details["per_size"] and result.details["per_class"]


def test_a_torch_module_returning_a_tuple(drawn):
    """A torch module returning (boxes, scores, classes) in that order (no names)."""
    torch = pytest.importorskip("torch")

    class Detector(torch.nn.Module):
        def __init__(self, table):
            super().__init__()
            self.register_buffer("table", torch.tensor(table, dtype=torch.float32))

        def forward(self, index):
            rows = self.table[index[:, 0].long()]
            return rows[..., :4], rows[..., 4], rows[..., 5]

    result = compare(Detector(drawn.reference), Detector(drawn.candidate), data=_data(drawn),
                     metric="map50", resamples=200)
    expected = compare(_rows(drawn.reference.astype(np.float32)),
                       _rows(drawn.candidate.astype(np.float32)), data=_data(drawn),
                       metric="map50", resamples=200)
    assert result.reference_score == pytest.approx(expected.reference_score, abs=1e-12)
    assert result.drop == pytest.approx(expected.drop, abs=1e-12)


def test_detection_draws_its_own_default_resamples_unless_the_user_sets_them(drawn):
    """2,000 resamples by default (not the suite-wide 10,000); a value the user gives, in either
    direction, is used as given, and the record says the number drawn."""
    data = _data(drawn)
    from pytest_quantguard.metrics.detection import DETECTION_RESAMPLES

    default = compare(_rows(drawn.reference), _rows(drawn.candidate), data=data, metric="map50")
    assert default.resamples == DETECTION_RESAMPLES == 2000
    more = compare(_rows(drawn.reference), _rows(drawn.candidate), data=data, metric="map50",
                   resamples=3000)
    fewer = compare(_rows(drawn.reference), _rows(drawn.candidate), data=data, metric="map50",
                    resamples=300)
    assert (more.resamples, fewer.resamples) == (3000, 300)
    assert more.to_dict()["interval"]["resamples"] == 3000
