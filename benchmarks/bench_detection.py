"""Detection mAP: the true drops of the coverage cells, and speed beside pycocotools (run by hand,
never in CI; docs/benchmarks.md, "Detection mAP").

    python benchmarks/bench_detection.py truth                 # 10^6 images, about a minute
    python benchmarks/bench_detection.py speed                 # 5,000 images x 100 x 80 classes
    python benchmarks/bench_detection.py speed --images 1000 --resamples 2000

``truth``: the MILD candidate's map50 and map50_95 drops over ``--images`` generated images, as
the mean of independent chunks with its Monte-Carlo SE (the coverage cells of
``benchmarks/coverage.py --family detection`` use them: ``simulation.detection.TRUE_DROPS``).
``speed``: each measurement in a fresh subprocess (its peak RSS its own): pycocotools' COCOeval
(bbox) on the reference's detections (loadRes + evaluate + accumulate; building the ground
truth's COCO object excluded), then quantguard's paired evaluation of both models (matching, the
mAP, the interval and the per-class and per-size rows) at each ``--resamples``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import subprocess
import sys
import time

import numpy as np
from _machine import machine_line  # benchmarks/_machine.py (run as scripts)

from pytest_quantguard.metrics import detection
from pytest_quantguard.metrics.base import Context
from pytest_quantguard.metrics.detection import MAP50_95, DetectionScores
from pytest_quantguard.simulation.detection import MILD, Scene, detection_set, detection_true_drop

SPEED_SCENE = Scene(classes=80, false_positives=80.0, max_det=100)


def truth(options) -> None:
    print(machine_line())
    started = time.time()
    drops = detection_true_drop(images=options.images, chunk=options.chunk)
    for metric, (value, error) in drops.items():
        print(f"- true {metric} drop {value:.6f} (Monte-Carlo SE {error:.6f})")
    print(f"- {options.images} images in chunks of {options.chunk}: {time.time() - started:.0f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


def _coco(drawn) -> tuple[dict, list[dict]]:
    """The generated set as COCO ground truth and the reference's results (x, y, w, h boxes)."""
    images, annotations, results = [], [], []
    for i, (labels, found) in enumerate(zip(drawn.labels, drawn.reference, strict=True)):
        images.append({"id": i, "width": 1000, "height": 1000})
        for x1, y1, x2, y2, cls, crowd, area in labels[labels[:, 4] >= 0]:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(cls),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area,
                                "iscrowd": int(crowd)})
        for x1, y1, x2, y2, score, cls in found[found[:, 4] > 0]:
            results.append({"image_id": i, "category_id": int(cls), "score": score,
                            "bbox": [x1, y1, x2 - x1, y2 - y1]})
    categories = [{"id": c, "name": str(c)} for c in range(SPEED_SCENE.classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def one(options) -> None:
    """One measurement, in this process."""
    drawn = detection_set(np.random.default_rng(0), options.images, MILD, SPEED_SCENE)
    detections = int((drawn.reference[..., 4] > 0).sum())
    if options.what == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        truth_json, results = _coco(drawn)
        with contextlib.redirect_stdout(io.StringIO()):
            ground = COCO()
            ground.dataset = truth_json
            ground.createIndex()
            wall, cpu = time.time(), time.process_time()
            evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        what = f"pycocotools COCOeval, one model (mAP {evaluation.stats[0]:.4f})"
    else:
        resamples = int(options.what)
        detection.DETECTION_RESAMPLES = resamples  # the benchmark measures above the limit too
        wall, cpu = time.time(), time.process_time()
        scores = DetectionScores(drawn.reference, drawn.candidate, drawn.labels,
                                 MAP50_95.thresholds, "map50_95")
        found = scores.evaluate(Context(margin="absolute", confidence=0.95, resamples=resamples,
                                        rng=np.random.default_rng(1)))
        what = (f"quantguard map50_95, both models, {resamples} resamples, per-class and per-size "
                f"rows (mAP {found.reference_score:.4f}, drop {found.drop:.4f})")
    print(f"| {what} | {options.images} | {detections} | {time.time() - wall:.1f} | "
          f"{time.process_time() - cpu:.1f} | "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} |", flush=True)


def speed(options) -> None:
    print(machine_line())
    print(f"\n{SPEED_SCENE.classes} classes, up to {SPEED_SCENE.max_det} detections per image\n")
    print("| evaluation | images | reference detections | wall s | CPU s | peak RSS MB |")
    print("|---|---|---|---|---|---|", flush=True)
    for what in ["pycocotools", *map(str, options.resamples)]:
        subprocess.run([sys.executable, __file__, "one", "--what", what, "--images",
                        str(options.images)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    true = sub.add_parser("truth")
    true.add_argument("--images", type=int, default=1_000_000)
    true.add_argument("--chunk", type=int, default=20_000)
    fast = sub.add_parser("speed")
    fast.add_argument("--images", type=int, default=5000)
    fast.add_argument("--resamples", type=int, nargs="+", default=[2000, 10_000])
    single = sub.add_parser("one")
    single.add_argument("--what", required=True)
    single.add_argument("--images", type=int, default=5000)
    options = parser.parse_args()
    {"truth": truth, "speed": speed, "one": one}[options.command](options)


if __name__ == "__main__":
    main()
