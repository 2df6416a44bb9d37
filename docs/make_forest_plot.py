"""Rebuild docs/forest_plot.png, the README's forest plot, from the example project's models.

    python docs/make_forest_plot.py

Five real comparisons: INT8 ships on accuracy; 2-bit weights are stopped on accuracy and macro-F1;
the INT8 regressor ships on RMSE (a relative limit); and INT8 agrees with fp32 on unlabeled data.
"""

from __future__ import annotations

from pathlib import Path

from pytest_quantguard import compare
from pytest_quantguard.reports.plot import save_plot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
MODELS = EXAMPLE / "models"
OUTPUT = ROOT / "docs" / "forest_plot.png"


def comparisons() -> list[dict]:
    """The example's comparisons as report records (``Comparison.to_dict()``)."""
    found = [
        compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=EXAMPLE / "prod_val",
                max_drop=0.01, name="int8"),
        compare(MODELS / "fp32.onnx", MODELS / "int2.onnx", data=EXAMPLE / "prod_val",
                metrics={"accuracy": 0.01, "macro_f1": 0.01}, name="int2"),
        compare(MODELS / "diabetes_fp32.onnx", MODELS / "diabetes_int8.onnx",
                data=EXAMPLE / "prod_val_diabetes", max_drop=0.01, name="diabetes_int8"),
        compare(MODELS / "fp32.onnx", MODELS / "int8.onnx", data=EXAMPLE / "prod_unlabeled",
                max_drop=0.01, name="int8_unlabeled"),
    ]
    return [each.to_dict() for comparison in found for each in comparison.all()]


def main() -> None:
    path = save_plot(comparisons(), OUTPUT, dpi=100)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
