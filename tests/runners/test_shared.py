"""What every runner shares: the fixed-batch loop, output selection, and ``notes``."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.runners import make_runner, run_in_fixed_batches
from pytest_quantguard.runners.selection import choose_output, select_output


class RecordingModel:
    """Two outputs of two inputs, recording the batch sizes it is called with."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(inputs["a"]))
        return {"sum": inputs["a"] + inputs["b"], "first": inputs["a"][:, :1] * 10}


def two_inputs(n: int) -> dict[str, np.ndarray]:
    a = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return {"a": a, "b": -2 * a}


@pytest.mark.parametrize("n", [1, 6, 7, 8, 20])
def test_fixed_batches_are_padded_and_trimmed(n):
    model, inputs = RecordingModel(), two_inputs(n)
    outputs = run_in_fixed_batches(model, inputs, 3)
    assert model.calls == [3] * -(-n // 3)  # every call gets exactly the fixed batch
    expected = RecordingModel()(inputs)
    assert list(outputs) == ["sum", "first"]
    for name in expected:
        np.testing.assert_array_equal(outputs[name], expected[name])


def test_padding_repeats_the_last_row():
    seen = []
    run_in_fixed_batches(lambda chunk: seen.append(chunk["a"].copy()) or {"y": chunk["a"]},
                         two_inputs(4), 3)
    np.testing.assert_array_equal(seen[1], np.repeat(two_inputs(4)["a"][3:], 3, axis=0))


@pytest.mark.parametrize(("n", "size"), [(5, None), (3, 3)])
def test_a_batch_that_fits_is_run_once_as_is(n, size):
    inputs = two_inputs(n)
    result = {"y": np.zeros(n)}
    received = []
    assert run_in_fixed_batches(lambda chunk: received.append(chunk) or result, inputs, size) is result
    assert received == [inputs]


def test_choose_output_by_name_index_or_first():
    outputs = {"logits": 1, "probs": 2}
    assert choose_output(outputs, None, "m") == "logits"
    assert choose_output(outputs, 1, "m") == "probs"
    assert choose_output(outputs, "probs", "m") == "probs"
    with pytest.raises(QuantGuardError) as error:
        choose_output(outputs, 2, "reference m.onnx")
    assert str(error.value) == ("reference m.onnx: output=2 is out of range; the model has 2 "
                                "output(s): ['logits', 'probs'] (index 0..1)")
    with pytest.raises(QuantGuardError, match=r"output=-1 is out of range"):  # not the last one
        choose_output(outputs, -1, "reference m.onnx")
    with pytest.raises(QuantGuardError) as error:
        choose_output(outputs, "y", "reference m.onnx", " (choose with output=)")
    assert str(error.value) == ("reference m.onnx: no output named 'y'; its outputs are "
                                "['logits', 'probs'] (choose with output=)")


def test_selected_output_keeps_one_output_and_the_runner_notes():
    runner = make_runner(lambda batch: {"y": batch, "z": -batch})
    assert runner.notes == ()
    selected = select_output(runner, "z")
    np.testing.assert_array_equal(selected({"x": np.ones((2, 1))})["z"], -np.ones((2, 1)))
    assert list(select_output(runner, 0)({"x": np.ones((2, 1))})) == ["y"]
    with pytest.raises(QuantGuardError, match=r": no output named 'w'; its outputs are \['y', 'z'\]$"):
        select_output(runner, "w")({"x": np.ones((2, 1))})
    runner.notes = ("a caveat",)
    assert selected.notes == ("a caveat",)


def test_a_user_runner_without_notes_is_still_a_runner():
    class UserRunner:
        description, path, sha256, nbytes = "mine", None, None, None

        def __call__(self, inputs):
            return {"y": inputs["x"]}

    runner = UserRunner()
    assert make_runner(runner) is runner
    assert select_output(runner, "y").notes == ()
