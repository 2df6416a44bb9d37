"""The forest plot: the figure is inspected before it is saved (one row per comparison, its bands,
its interval), and the saved PNG is opened as an image. Real comparisons of the example's models."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from conftest import EXAMPLE, MODELS, PROD_VAL
from pytest_quantguard import compare
from pytest_quantguard.errors import QuantGuardError
from pytest_quantguard.reports.plot import forest_plot, save_plot

# top to bottom: the worst verdict first, then by id (the Markdown table's order)
LABELS = ["int2.accuracy", "int2.macro_f1", "int2_lenient · accuracy", "diabetes · rmse",
          "int8 · accuracy", "int8_unlabeled · agreement"]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    fp32, int8, int2 = MODELS / "fp32.onnx", MODELS / "int8.onnx", MODELS / "int2.onnx"
    found = [
        compare(fp32, int8, data=PROD_VAL, max_drop=0.01, name="int8", resamples=500),
        compare(fp32, int2, data=PROD_VAL, metrics={"accuracy": 0.01, "macro_f1": 0.02},
                name="int2", resamples=500),
        compare(fp32, int2, data=PROD_VAL, max_drop=0.01, qat_limit=0.2, name="int2_lenient",
                resamples=500),
        compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                data=EXAMPLE / "prod_val_diabetes", max_drop=0.01, name="diabetes", resamples=500),
        compare(fp32, int8, data=EXAMPLE / "prod_unlabeled", max_drop=0.01, name="int8_unlabeled",
                resamples=500),
    ]
    return [each.to_dict() for comparison in found for each in comparison.all()]


def rows(figure) -> list[tuple[float, str]]:
    """(y, label) of every y tick, top row first."""
    axes = figure.axes[0]
    labels = [(tick.get_position()[1], tick.get_text()) for tick in axes.get_yticklabels()]
    return sorted(labels, key=lambda pair: -pair[0])


def bands_by_row(figure) -> dict[float, dict[str, object]]:
    """{y: {verdict: patch}} from the band patches (their gid is ``band:<verdict>:<y>``)."""
    found: dict[float, dict[str, object]] = {}
    for patch in figure.axes[0].patches:
        gid = patch.get_gid() or ""
        if gid.startswith("band:"):
            _, verdict, y = gid.split(":")
            found.setdefault(float(y), {})[verdict] = patch
    return found


def test_one_y_tick_per_comparison_worst_first(records):
    figure = forest_plot(records)
    assert len(figure.axes[0].get_yticks()) == len(records)
    assert [label for _, label in rows(figure)] == LABELS


def test_every_row_has_its_bands_from_its_own_thresholds(records):
    figure = forest_plot(records)
    bands = bands_by_row(figure)
    by_label = {label: y for y, label in rows(figure)}
    assert sorted(bands) == sorted(by_label.values())
    ids = {"int2.accuracy": "int2.accuracy", "int2.macro_f1": "int2.macro_f1"}
    for label, y in by_label.items():
        identifier = ids.get(label, label.split(" · ")[0])
        thresholds = next(r for r in records if r["id"] == identifier)["thresholds"]
        row = bands[y]
        assert set(row) == {"ship", "try-qat", "stay-fp16"}, label
        ship, qat, red = row["ship"], row["try-qat"], row["stay-fp16"]
        assert ship.get_x() + ship.get_width() == pytest.approx(thresholds["max_drop"])
        assert qat.get_x() == pytest.approx(thresholds["max_drop"])
        assert qat.get_x() + qat.get_width() == pytest.approx(thresholds["qat_limit"])
        assert red.get_x() == pytest.approx(thresholds["qat_limit"])
        for patch in row.values():  # each band fills its own row only
            assert patch.get_y() == pytest.approx(y - 0.5) and patch.get_height() == 1.0
    sample = bands[rows(figure)[0][0]]
    green, amber, red = (to_rgb(sample[v].get_facecolor()) for v in ("ship", "try-qat", "stay-fp16"))
    assert green[1] > green[0] and green[1] > green[2]  # green
    assert amber[0] > amber[1] > amber[2]  # amber
    assert red[0] > red[1] and red[0] > red[2] and red[1] < amber[1]  # red
    legend = figure.legends[0]
    assert [text.get_text().split()[0] for text in legend.get_texts()][:3] == \
        ["ship", "try-qat", "stay-fp16"]


def test_no_try_qat_band_when_max_drop_reaches_qat_limit(records):
    record = copy.deepcopy(next(r for r in records if r["id"] == "int8"))
    record["thresholds"]["max_drop"] = record["thresholds"]["qat_limit"] = 0.02
    [row] = bands_by_row(forest_plot([record])).values()
    assert set(row) == {"ship", "stay-fp16"}
    assert row["stay-fp16"].get_x() == pytest.approx(0.02)


def test_the_drop_its_interval_and_zero_are_drawn(records):
    figure = forest_plot(records)
    lines = figure.axes[0].get_lines()
    zero = [line for line in lines if list(line.get_xdata()) == [0, 0]]
    assert len(zero) == 1
    segments = {(round(line.get_xdata()[0], 12), round(line.get_xdata()[1], 12))
                for line in lines if len(line.get_xdata()) == 2}
    for record in records:
        interval = record["interval"]
        assert (round(interval["low"], 12), round(interval["high"], 12)) in segments
    points = [line.get_xdata()[0] for line in lines if len(line.get_xdata()) == 1]
    assert sorted(points) == pytest.approx(sorted(r["drop"] for r in records))
    assert "own unit" in figure.axes[0].get_xlabel()


def test_the_png_is_written_atomically_and_is_an_image(records, tmp_path):
    path = tmp_path / "reports" / "forest.png"
    assert save_plot(records, path) == path
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 0 and image.height > 0
    save_plot(records[:1], path)  # replaces the previous plot
    assert [p.name for p in path.parent.iterdir()] == ["forest.png"]  # no temporary file left


def test_missing_matplotlib_names_the_extra(records, monkeypatch, tmp_path):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(QuantGuardError, match=r"pytest-quantguard\[plot\]"):
        forest_plot(records)
    with pytest.raises(QuantGuardError, match=r"pytest-quantguard\[plot\]"):
        save_plot(records, tmp_path / "forest.png")
    assert not list(tmp_path.iterdir())


def test_nothing_to_plot_is_an_error():
    with pytest.raises(QuantGuardError, match="no comparison ran"):
        forest_plot([])


def test_building_the_figure_needs_no_pyplot(records, tmp_path):
    """The figure is built without pyplot: no GUI backend is chosen, nothing global changes."""
    import json

    data = tmp_path / "records.json"
    data.write_text(json.dumps(records[:2]))
    code = ("import json, sys; from pytest_quantguard.reports.plot import save_plot; "
            f"save_plot(json.load(open({str(data)!r})), {str(tmp_path / 'p.png')!r}); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)
