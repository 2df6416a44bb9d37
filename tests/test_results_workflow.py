"""Results kept in files gate like the models themselves (docs/results.md): `quantguard validate`
and `compare` equal `compare()` on the example project; outputs a plain onnxruntime script wrote
from `export-inputs` gate identically; shuffled, short, foreign and bare results behave as the
page says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE, MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.cli import main
from pytest_quantguard.data import ValidationSet
from pytest_quantguard.errors import QuantGuardError, QuantGuardWarning
from pytest_quantguard.results import Outputs

CANDIDATES = ("int8", "int2", "int8_dynamic")


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`quantguard validate` of the reference and every candidate, into one folder each."""
    out = tmp_path_factory.mktemp("results")
    for stem in ("fp32", *CANDIDATES):
        assert main(["validate", str(MODELS / f"{stem}.onnx"), "--data", str(PROD_VAL),
                     "-o", str(out / stem)]) == 0
    return out


def _gate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["compare", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _figures(record: dict) -> dict:
    """What must be identical: the drop, the interval (its level, method, resamples and seed),
    the verdict, both scores and the data (n, digest)."""
    return {"drop": record["drop"], "interval": record["interval"], "verdict": record["verdict"],
            "scores": (record["reference"]["score"], record["candidate"]["score"]),
            "data": (record["data"]["n"], record["data"]["sha256"])}


def test_validate_then_compare_equals_compare_on_the_models(validated, tmp_path, capsys):
    expected = compare(str(MODELS / "fp32.onnx"), [str(MODELS / f"{stem}.onnx") for stem in CANDIDATES],
                       data=str(PROD_VAL), max_drop=0.01)
    report = tmp_path / "report.json"
    status, out, _ = _gate([str(validated / "fp32"), *(str(validated / stem) for stem in CANDIDATES),
                            "--max-drop", "0.01", "--report", str(report)], capsys)
    records = {record["name"]: record for record in json.loads(report.read_text())["comparisons"]}
    for stem, comparison in zip(CANDIDATES, expected, strict=True):
        assert _figures(records[stem]) == _figures(comparison.to_dict())
    assert [line.split(":")[0] for line in out.splitlines()] == list(CANDIDATES)
    assert status == 1  # int2 stays fp16
    assert json.loads((validated / "int8" / "results.json").read_text())["data_digest"] == \
        ValidationSet.from_folder(PROD_VAL).digest


def test_the_shipping_candidate_exits_0_and_writes_junit_and_markdown(validated, tmp_path, capsys):
    junit, markdown, plot = tmp_path / "junit.xml", tmp_path / "gate.md", tmp_path / "gate.png"
    status, out, _ = _gate([str(validated / "fp32"), str(validated / "int8"), "--junitxml",
                            str(junit), "--markdown", str(markdown), "--plot", str(plot)], capsys)
    assert status == 0, out
    assert 'name="quant.int8.verdict" value="ship"' in junit.read_text()
    assert "failures=\"0\"" in junit.read_text()
    assert "**the gate passes**" in markdown.read_text()
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_plain_onnxruntime_loop_on_exported_inputs_gates_identically(validated, tmp_path, capsys):
    inputs, results = tmp_path / "inputs", tmp_path / "device-int8"
    assert main(["export-inputs", "--data", str(PROD_VAL), "-o", str(inputs)]) == 0
    script = textwrap.dedent(f"""
        import json, shutil, sys
        from pathlib import Path
        import numpy as np, onnxruntime as ort
        inputs, out = Path({str(inputs)!r}), Path({str(results)!r})
        dataset = json.loads((inputs / "dataset.json").read_text())
        session = ort.InferenceSession({str(MODELS / "int8.onnx")!r})
        arrays = [np.load(inputs / item["file"]) for item in dataset["inputs"]]
        feed = {{graph.name: array for graph, array in zip(session.get_inputs(), arrays)}}
        logits = session.run(["logits"], feed)[0]
        out.mkdir()
        np.save(out / "logits.npy", logits)
        shutil.copy(inputs / dataset["ids"], out / "ids.npy")
        (out / "results.json").write_text(json.dumps({{
            "format": "quantguard-results", "version": 1, "data_digest": dataset["data_digest"],
            "n": dataset["n"], "model": {{"path": "int8.onnx"}}, "outputs": ["logits"],
            "provenance": {{"runner": "onnxruntime script", "data": dataset["data"]}}}}))
    """)
    assert "pytest_quantguard" not in script
    subprocess.run([sys.executable, "-c", script], check=True)
    device = compare(str(MODELS / "fp32.onnx"), str(results), data=str(PROD_VAL), max_drop=0.01)
    direct = compare(str(MODELS / "fp32.onnx"), str(MODELS / "int8.onnx"), data=str(PROD_VAL),
                     max_drop=0.01)
    assert _figures(device.to_dict()) == _figures(direct.to_dict())
    # --data defaults to the folder the results name
    status, out, _ = _gate([str(validated / "fp32"), str(results)], capsys)
    assert status == 0 and f"seed {direct.seed}" in out and "ship" in out


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _rewrite(folder: Path, keep: np.ndarray | slice, ids: np.ndarray | None = None) -> None:
    logits = np.load(folder / "logits.npy")[keep]
    np.save(folder / "logits.npy", logits)
    np.save(folder / "ids.npy", np.load(folder / "ids.npy")[keep] if ids is None else ids)
    document = json.loads((folder / "results.json").read_text())
    document["n"] = len(logits)
    (folder / "results.json").write_text(json.dumps(document))


def test_rows_in_another_order_are_put_back_by_their_ids(validated, tmp_path):
    shuffled = _copy(validated / "int8", tmp_path / "shuffled")
    _rewrite(shuffled, np.random.default_rng(7).permutation(899))
    assert not np.array_equal(np.load(shuffled / "ids.npy"), np.arange(899))
    direct = compare(str(validated / "fp32"), Outputs(validated / "int8"), data=str(PROD_VAL))
    again = compare(str(validated / "fp32"), Outputs(shuffled), data=str(PROD_VAL))
    assert _figures(again.to_dict()) == _figures(direct.to_dict())


def test_ids_that_are_not_the_sets_are_refused_naming_both(validated, tmp_path, capsys):
    wrong = _copy(validated / "int8", tmp_path / "wrong-ids")
    _rewrite(wrong, slice(None), ids=np.arange(1, 900))
    status, _, err = _gate([str(validated / "fp32"), str(wrong)], capsys)
    assert status == 3
    assert "ids.npy does not hold the sample ids" in err and "prod_val" in err
    assert "1 missing (first [0])" in err and "1 unknown (first [899])" in err


def test_the_wrong_count_is_refused_naming_both(validated, tmp_path, capsys):
    short = _copy(validated / "int8", tmp_path / "short")
    _rewrite(short, slice(0, 898))
    status, _, err = _gate([str(validated / "fp32"), str(short)], capsys)
    assert status == 3
    assert "hold 898 samples" in err and "has 899" in err and "prod_val" in err


def test_results_of_another_data_set_are_refused(validated, tmp_path, capsys):
    other = ValidationSet.from_folder(EXAMPLE / "prod_val_diabetes").digest
    foreign = _copy(validated / "int8", tmp_path / "foreign")
    document = json.loads((foreign / "results.json").read_text())
    document["data_digest"] = other
    (foreign / "results.json").write_text(json.dumps(document))
    status, _, err = _gate([str(validated / "fp32"), str(foreign), "--data", str(PROD_VAL)], capsys)
    assert status == 3
    assert f"sha256 {other[:12]}" in err
    assert ValidationSet.from_folder(PROD_VAL).digest[:12] in err


def test_a_bare_array_is_counted_and_warned_about(validated, tmp_path):
    bare = validated / "int8" / "logits.npy"
    with pytest.warns(QuantGuardWarning, match="row order is unverified"):
        found = compare(str(validated / "fp32"), str(bare), data=str(PROD_VAL))
    assert found.verdict == "ship"
    short = tmp_path / "short.npy"
    np.save(short, np.load(bare)[:-1])
    with pytest.raises(QuantGuardError, match=r"hold 898 samples.*has 899"):
        compare(str(validated / "fp32"), str(short), data=str(PROD_VAL))


def test_usage_and_data_errors_have_their_exit_statuses(validated, tmp_path, capsys):
    assert _gate([str(validated / "fp32"), str(validated / "int8"), "--max-drop", "-1"],
                 capsys)[0] == 2
    assert _gate([str(MODELS / "fp32.onnx"), str(MODELS / "int8.onnx")], capsys)[0] == 2  # no --data
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text('{"format": "quantguard-results", "version": 9}')
    status, _, err = _gate([str(validated / "fp32"), str(tmp_path / "bad")], capsys)
    assert status == 3 and "version 9" in err
    assert main(["validate", str(tmp_path / "missing.onnx"), "--data", str(PROD_VAL), "-o",
                 str(tmp_path / "out")]) == 3
    assert "model file not found" in capsys.readouterr().err
    assert main(["export-inputs", "--data", str(tmp_path / "nowhere"), "-o", str(tmp_path)]) == 3
    assert "--data" in capsys.readouterr().err
    assert main(["plan", "--discordance", "0.02", "--margin", "0.01"]) == 0


def test_quant_compare_takes_a_results_folder(validated, example, pytester):
    shutil.copytree(validated / "int8", example / "results" / "int8")
    pytester.makepyfile(test_device_results_gate="""
        from pytest_quantguard import quant_tolerance

        @quant_tolerance(max_drop=0.01)
        def test_device_int8_ships(quant_compare):
            found = quant_compare("models/fp32.onnx", "results/int8")
            assert found.verdict == "ship" and found.candidate["path"].endswith("int8")
    """)
    result = pytester.runpytest("--quant-data", "prod_val", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_an_unwritable_output_path_is_a_data_error(validated, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = _gate([str(validated / "fp32"), str(validated / "int8"), "--markdown",
                            str(blocker / "gate.md")], capsys)
    assert status == 3 and "choose another path" in err
