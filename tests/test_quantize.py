"""``quantguard quantize``: candidates from onnxruntime's quantizers on the example's digits model,
calibrated on the training half of scikit-learn's digits (docs/ladder.md, "quantguard quantize")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_quantguard.cli import main
from pytest_quantguard.data import ValidationSet

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "example_project" / "models" / "fp32.onnx"
VAL = ROOT / "example_project" / "prod_val"


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    # the example's split (example_project/make_models.py): the held-out half is prod_val
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.5, random_state=0,
                            stratify=digits.target)


def _folder(path: Path, inputs: np.ndarray, labels: np.ndarray) -> Path:
    path.mkdir(parents=True)
    np.savez(path / "calibration.npz", inputs=inputs, labels=labels)
    return path


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    train, _, train_labels, _ = _digits()
    return _folder(tmp_path_factory.mktemp("cal") / "cal", train[:256], train_labels[:256])


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_every_scheme_is_written_loads_and_runs(tmp_path, capsys, calibration):
    import onnxruntime

    status, out, err = _run(capsys, "quantize", MODEL, "--calibration", calibration, "--data", VAL,
                            "--schemes", "fp16,int8-dynamic,int8-static,int8-static-per-channel,"
                            "int4-weight-only", "-o", tmp_path / "out")
    assert status == 0, err
    assert "calibration overlap: 0 of 899 validation rows" in out
    manifest = json.loads((tmp_path / "out" / "quantize.json").read_text())
    cal = ValidationSet.from_folder(calibration)
    assert manifest["calibration"] == {"digest": cal.digest, "n": 256, "path": cal.description}
    assert manifest["overlap"] == {"count": 0, "validation_n": 899}
    val = ValidationSet.from_folder(VAL)
    inputs, labels = val.batches(899).__next__().inputs["inputs"], val.labels
    reference = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = reference.run(None, {"input": inputs})[0].argmax(1)
    ops = {}
    for row in manifest["candidates"]:
        path = tmp_path / "out" / row["file"]
        assert row["size_bytes"] == path.stat().st_size
        assert row["compression"] == pytest.approx(MODEL.stat().st_size / row["size_bytes"])
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        predicted = session.run(None, {session.get_inputs()[0].name: inputs})[0].argmax(1)
        assert (predicted == expected).mean() > 0.95, row["scheme"]  # a working model, not noise
        assert (predicted == labels).mean() > 0.9
        import onnx
        ops[row["scheme"]] = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert row["scheme"] in out
    assert "MatMulNBits" in ops["int4-weight-only"]  # Gemm was rewritten so the INT4 applied
    assert "DynamicQuantizeLinear" in ops["int8-dynamic"]
    assert "QuantizeLinear" in ops["int8-static-per-channel"]
    assert manifest["candidates"][0]["compression"] > 1.8  # fp16 halves the weights


def test_calibrating_on_the_validation_set_is_refused(tmp_path, capsys):
    status, _, err = _run(capsys, "quantize", MODEL, "--calibration", VAL, "--data", VAL,
                          "--schemes", "int8-static", "-o", tmp_path / "out")
    assert status == 3
    assert "same data (equal digests)" in err and "--calibration" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shared, refused", [(18, True), (4, False)])  # 2.0 % and 0.44 % of 899
def test_overlapping_rows_are_counted_and_over_one_percent_refused(tmp_path, capsys, shared, refused):
    train, held, train_labels, held_labels = _digits()
    cal = _folder(tmp_path / "cal", np.concatenate([train[:200], held[:shared]]),
                  np.concatenate([train_labels[:200], held_labels[:shared]]))
    status, out, err = _run(capsys, "quantize", MODEL, "--calibration", cal, "--data", VAL,
                            "--schemes", "int8-dynamic", "-o", tmp_path / "out")
    share = f"{shared} of 899 validation rows ({100 * shared / 899:.2f}%)"
    if refused:
        assert status == 3
        assert share in err and "over the 1% allowed" in err
    else:
        assert status == 0, err
        assert f"calibration overlap: {share}" in out
        manifest = json.loads((tmp_path / "out" / "quantize.json").read_text())
        assert manifest["overlap"] == {"count": shared, "validation_n": 899}


@pytest.mark.parametrize("argv, message", [
    (["--schemes", "int3"], "unknown scheme(s) int3"),
    (["--schemes", "fp16,fp16"], "named twice"),
])
def test_bad_schemes_are_usage_errors(tmp_path, capsys, calibration, argv, message):
    status, _, err = _run(capsys, "quantize", MODEL, "--calibration", calibration, *argv,
                          "-o", tmp_path / "out")
    assert status == 2
    assert message in err and "--schemes" in err


def test_a_missing_model_is_a_data_error(tmp_path, capsys, calibration):
    status, _, err = _run(capsys, "quantize", tmp_path / "none.onnx", "--calibration", calibration,
                          "-o", tmp_path / "out")
    assert status == 3
    assert "no such model file" in err


def test_the_default_schemes_leave_int4_to_language_models():
    from pytest_quantguard.cli_quantize import default_schemes

    assert "int4-weight-only" not in default_schemes("classification")
    assert "int4-weight-only" in default_schemes("language-model")


_LOGGER = """
import logging, sys
root = logging.getLogger()
before = (root.level, list(root.handlers))
{action}
print((root.level, list(root.handlers)) == before)
"""


def test_the_root_logger_is_left_as_it_was(tmp_path, calibration):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    guarded = ("from pytest_quantguard.data import ValidationSet\n"
               "from pytest_quantguard.quantize import quantize_model\n"
               f"quantize_model({str(MODEL)!r}, ValidationSet.from_folder({str(calibration)!r}), "
               f"['int4-weight-only'], {str(tmp_path / 'out')!r})")
    plain = "import onnxruntime.quantization.matmul_nbits_quantizer"
    results = [subprocess.run([sys.executable, "-c", _LOGGER.format(action=action)], env=env,
                              capture_output=True, text=True, check=True).stdout.split()[-1]
               for action in (guarded, plain)]
    # the plain import configures the root logger; quantize_model leaves it as it was
    assert results == ["True", "False"]


# --- quantguard ladder ------------------------------------------------------------------------

def test_the_ladder_recommends_a_rung_on_the_digits_model_and_its_reports_agree(tmp_path, capsys,
                                                                               calibration):
    from xml.etree import ElementTree

    from pytest_quantguard.stats.ladder import confidence_for

    out = tmp_path / "ladder"
    status, stdout, err = _run(capsys, "ladder", MODEL, "--calibration", calibration, "--data", VAL,
                               "-o", out)
    assert status == 0, err
    summary = json.loads((out / "ladder.json").read_text())
    assert summary["unjudged"] == ["fp16"]  # FP16 on a CPU runs as FP32: not judged here
    assert "fp16: unjudged" in stdout
    # the diagnosis's remedies are INT8 rungs: per-channel, and the worst layers left in float
    assert summary["levels"] == [["int8-dynamic", "int8-static", "int8-static-per-channel",
                                  "int8-static-excluded"]]
    recommended = summary["recommendation"]
    assert recommended is not None and f"recommendation: {recommended} (" in stdout
    for rung in summary["rungs"]:
        assert rung["alpha"] == pytest.approx(0.025 / 4)
        record = json.loads((out / "reports" / f"{rung['scheme']}.json").read_text())["comparisons"][0]
        # the rung's own report is at its adjusted confidence, and says what the ladder says
        assert record["interval"]["confidence"] == pytest.approx(confidence_for(rung["alpha"]))
        assert record["verdict"] == rung["verdict"]
        assert rung["shipped"] == (record["verdict"] == "ship")
        assert f"{rung['scheme']}: {record['verdict']}  accuracy" in stdout
        suite = ElementTree.parse(out / "reports" / f"{rung['scheme']}.xml").getroot()
        assert suite.get("failures") == ("0" if rung["shipped"] else "1")
        markdown = (out / "reports" / f"{rung['scheme']}.md").read_text()
        assert record["verdict"] in markdown
        assert rung["ms_per_sample"] > 0 and rung["size_bytes"] > 0
    best = next(r for r in summary["rungs"] if r["scheme"] == recommended)
    assert best["shipped"]
    _combined_reports_agree(out, summary, stdout)


def _combined_reports_agree(out: Path, summary: dict, stdout: str) -> None:
    """OUT/report.json (schema-valid), report.md and junit.xml say what ladder.json and the
    terminal say: every rung's verdict and confidence, and the recommendation."""
    from xml.etree import ElementTree

    from jsonschema import Draft202012Validator

    from pytest_quantguard.reports.json_report import load_schema

    report = json.loads((out / "report.json").read_text())
    Draft202012Validator(load_schema()).validate(report)
    markdown = (out / "report.md").read_text()
    cases = {case.get("name"): case for case in ElementTree.parse(out / "junit.xml").iter("testcase")}
    records = {record["name"]: record for record in report["comparisons"]}
    recommended = summary["recommendation"]
    assert set(records) == {rung["scheme"] for rung in summary["rungs"] if rung["tested"]}
    for rung in summary["rungs"]:
        case = cases[rung["scheme"]]
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if not rung["tested"]:
            assert case.find("skipped").get("message") == "not tested: its level received no alpha"
            assert f"| `{rung['scheme']}` | 0 | - | not tested |" in markdown
            continue
        record = records[rung["scheme"]]
        assert record["details"]["ladder"] == {
            "level": rung["level"], "alpha": rung["alpha"], "confidence": rung["confidence"],
            "shipped": rung["shipped"], "recommended": rung["scheme"] == recommended,
            "ladder_passed": recommended is not None}
        assert (record["verdict"], record["interval"]["confidence"]) == (rung["verdict"],
                                                                         rung["confidence"])
        assert properties[f"quant.{rung['scheme']}.verdict"] == rung["verdict"]
        assert float(properties[f"quant.{rung['scheme']}.confidence"]) == rung["confidence"]
        assert f"| {rung['confidence']:.4g} | {rung['verdict']} |" in markdown
        assert f"L{rung['level']} {rung['scheme']}: {rung['verdict']} at {rung['confidence']:.4g}" \
            in stdout
        if rung["shipped"]:
            assert case.find("skipped") is None and case.find("failure") is None
        else:  # a rung that did not ship is no failure of the ladder
            assert case.find("skipped").get("message") == \
                f"does not ship at {rung['confidence']:.4g}: {rung['verdict']}"
    # a rung that did not ship fails the gate only when the ladder recommends nothing
    assert report["summary"]["passed"] is (recommended is not None)
    ladder = cases["ladder"]
    assert {p.get("name"): p.get("value") for p in ladder.iter("property")} == {
        "quant.recommendation": recommended or ""}
    assert (ladder.find("failure") is None) == (recommended is not None)
    if recommended is not None:
        assert f"**Recommendation: `{recommended}`**" in markdown
        assert f"recommendation: {recommended} (" in stdout
    else:
        assert "**Recommendation: none ships**" in markdown
        assert "recommendation: none ships" in stdout


def test_a_ladder_where_nothing_ships_exits_1_and_leaves_later_levels_untested(tmp_path, capsys,
                                                                               calibration):
    out = tmp_path / "ladder"
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "int4-weight-only.json").write_text("{}")  # an earlier run's
    status, stdout, err = _run(capsys, "ladder", MODEL, "--calibration", calibration, "--data", VAL,
                               "--schemes", "int8-static,int4-weight-only", "--max-drop", "0.0001",
                               "-o", out)
    assert status == 1, err
    summary = json.loads((out / "ladder.json").read_text())
    int8, int4 = summary["rungs"]
    assert (int8["tested"], int8["shipped"], int8["alpha"]) == (True, False, 0.025)
    assert (int4["tested"], int4["verdict"]) == (False, "untested")
    assert not (out / "reports" / "int4-weight-only.json").exists()
    _combined_reports_agree(out, summary, stdout)


def test_a_ladder_of_fp16_alone_on_a_cpu_is_a_usage_error(tmp_path, capsys, calibration):
    status, _, err = _run(capsys, "ladder", MODEL, "--calibration", calibration, "--data", VAL,
                          "--schemes", "fp16", "-o", tmp_path / "out")
    assert status == 2
    assert "no rung can be judged here" in err


def test_the_ladder_refuses_the_gates_data_as_calibration(tmp_path, capsys):
    status, _, err = _run(capsys, "ladder", MODEL, "--calibration", VAL, "--data", VAL,
                          "-o", tmp_path / "out")
    assert status == 3
    assert "equal digests" in err


def _outlier_model(folder: Path) -> tuple[Path, Path, Path]:
    """A digits MLP (scikit-learn) as ONNX Gemm -> Relu -> Gemm, plus one dead hidden unit whose
    only weight -- on pixel (0, 0), which is 0 in every digit -- is 50x the largest weight: it never
    changes an output, but it sets a per-tensor weight scale that rounds every other weight of the
    layer to zero. Per-channel scales confine it to its own unit."""
    import warnings

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    assert not x[:, 0].any()
    train, held, train_y, held_y = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning
        mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=150, random_state=0).fit(train, train_y)
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    dead = np.zeros((64, 1))
    dead[0, 0] = 50 * np.abs(w1).max()
    weights = {"w1": np.concatenate([w1, dead], 1), "b1": np.append(b1, 0.0),
               "w2": np.concatenate([w2, np.zeros((1, 10))], 0), "b2": b2}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"])], "outlier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    return (folder / "model.onnx", _folder(folder / "cal", train[:300], train_y[:300]),
            _folder(folder / "val", held, held_y))


def test_an_outlier_weight_fails_per_tensor_int8_and_the_ladder_recommends_per_channel(
        tmp_path, capsys, monkeypatch):
    model, cal, val = _outlier_model(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step_summary.md"))
    status, stdout, err = _run(capsys, "ladder", model, "--calibration", cal, "--data", val,
                               "--schemes", "int8-dynamic,int8-static,int8-static-per-channel",
                               "--bootstrap", "2000", "-o", tmp_path / "out")
    assert status == 0, err
    summary = json.loads((tmp_path / "out" / "ladder.json").read_text())
    verdicts = {rung["scheme"]: rung["verdict"] for rung in summary["rungs"]}
    assert verdicts == {"int8-dynamic": "stay-fp16", "int8-static": "stay-fp16",
                        "int8-static-per-channel": "ship"}
    assert summary["recommendation"] == "int8-static-per-channel"
    assert "recommendation: int8-static-per-channel (" in stdout
    _combined_reports_agree(tmp_path / "out", summary, stdout)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "**ok** stay-fp16 (ladder rung; the ladder passed)" in markdown
    # the job summary gets the ladder's one report, not one more per rung
    assert (tmp_path / "step_summary.md").read_text() == markdown


def test_a_rung_whose_check_of_the_reference_fails_does_not_ship(tmp_path, capsys, calibration):
    """Labels shuffled by mistake: the reference is at chance, so every rung's check of the
    reference fails (docs/verdict.md, "Checks of the reference"). The candidates agree with the
    reference, so each verdict alone reads ship; the ladder recommends nothing and exits 1."""
    _, held, _, held_labels = _digits()
    val = _folder(tmp_path / "val", held, np.random.default_rng(0).permutation(held_labels))
    out = tmp_path / "out"
    status, stdout, err = _run(capsys, "ladder", MODEL, "--calibration", calibration,
                               "--data", val, "--schemes", "int8-dynamic", "-o", out)
    assert status == 1, err
    summary = json.loads((out / "ladder.json").read_text())
    (rung,) = summary["rungs"]
    assert (rung["verdict"], rung["shipped"], summary["recommendation"]) == ("ship", False, None)
    report = json.loads((out / "report.json").read_text())
    (check,) = [c for c in report["comparisons"][0]["details"]["reference_checks"]
                if not c["passed"]]
    assert "not demonstrably better than chance" in check["rule"]
    assert report["summary"]["passed"] is False
    assert "recommendation: none ships" in stdout


def test_run_ladder_is_the_command_from_a_test(tmp_path, calibration):
    from pytest_quantguard.cli_quantize import run_ladder
    from pytest_quantguard.errors import QuantGuardError

    summary = run_ladder(MODEL, calibration=calibration, data=VAL, out=tmp_path / "out",
                         schemes="int8-static", bootstrap=2000)
    assert summary["recommendation"] == "int8-static"
    assert summary["rungs"][0]["confidence"] == pytest.approx(0.95)
    with pytest.raises(QuantGuardError, match="exit 3"):
        run_ladder(MODEL, calibration=VAL, data=VAL, out=tmp_path / "again")


def test_the_excluded_node_rung_is_chosen_on_the_calibration_data_and_ships(tmp_path, capsys):
    model, cal, val = _outlier_model(tmp_path)
    status, stdout, err = _run(capsys, "ladder", model, "--calibration", cal, "--data", val,
                               "--schemes", "int8-static,int8-static-excluded", "--bootstrap", "2000",
                               "-o", tmp_path / "out")
    assert status == 0, err
    assert "recommendation: int8-static-excluded (" in stdout
    manifest = json.loads((tmp_path / "out" / "candidates" / "quantize.json").read_text())
    excluded = {row["scheme"]: row.get("excluded") for row in manifest["candidates"]}
    # the diagnosis (on the calibration set) names the layer the outlier weight crushes
    assert excluded == {"int8-static": None, "int8-static-excluded": ["Gemm_0"]}
    summary = json.loads((tmp_path / "out" / "ladder.json").read_text())
    assert summary["recommendation"] == "int8-static-excluded"
    assert [rung["verdict"] for rung in summary["rungs"]] == ["stay-fp16", "ship"]


def _exact_model(folder: Path) -> tuple[Path, Path, Path]:
    """A two-class scorer on two 8-bit counts (integers 0..255): logits = the counts (a Gemm with
    the identity weight). Static INT8 is exact on it: the calibrated input scale is 1 (MinMax over
    0..255), the weights 0 and 1 sit on the 7-bit grid, and the outputs are the inputs' grid. The
    calibration and validation rows are distinct."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["logits"])], "exact",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w"),
         numpy_helper.from_array(np.zeros(2, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    grid = np.stack(np.meshgrid(np.arange(256), np.arange(256)), -1).reshape(-1, 2)
    rows = grid[np.random.default_rng(0).permutation(len(grid))].astype(np.float32)
    rows = rows[(rows != [0, 255]).any(1) & (rows != [255, 0]).any(1)]
    cal = np.concatenate([[[0, 255], [255, 0]], rows[:254]]).astype(np.float32)
    val = rows[254:1254]
    return (folder / "model.onnx", _folder(folder / "cal", cal, cal.argmax(1)),
            _folder(folder / "val", val, val.argmax(1)))


def test_with_no_layer_to_leave_in_float_the_excluded_scheme_is_no_rung(tmp_path, capsys):
    model, cal, val = _exact_model(tmp_path)
    out = tmp_path / "out"
    status, stdout, err = _run(capsys, "ladder", model, "--calibration", cal, "--data", val,
                               "--schemes", "int8-static,int8-static-excluded", "--bootstrap",
                               "2000", "-o", out)
    assert status == 0, err
    reason = ("the diagnosis on the calibration set found no layer to leave in float (no layer "
              "adds error)")
    manifest = json.loads((out / "candidates" / "quantize.json").read_text())
    assert manifest["skipped"] == [{"scheme": "int8-static-excluded", "reason": reason}]
    assert [row["scheme"] for row in manifest["candidates"]] == ["int8-static"]
    summary = json.loads((out / "ladder.json").read_text())
    assert summary["skipped"] == manifest["skipped"]
    assert summary["levels"] == [["int8-static"]]
    # dropped before any rung is judged: the level's one scheme gets the whole alpha
    (rung,) = summary["rungs"]
    assert (rung["scheme"], rung["alpha"], rung["verdict"]) == ("int8-static", 0.025, "ship")
    assert summary["recommendation"] == "int8-static"
    assert f"int8-static-excluded: not a rung ({reason})" in stdout
    assert f"| `int8-static-excluded` | - | - | not a rung ({reason}) |" in \
        (out / "report.md").read_text()
    _combined_reports_agree(out, summary, stdout)
    # with nothing else asked for, no rung is left: a usage error naming the reason
    status, _, err = _run(capsys, "ladder", model, "--calibration", cal, "--data", val,
                          "--schemes", "int8-static-excluded", "-o", tmp_path / "alone")
    assert status == 2
    assert f"no rung is left to judge: int8-static-excluded: {reason}; add another scheme to " \
           "--schemes" in err
