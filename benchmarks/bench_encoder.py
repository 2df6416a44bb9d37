"""A BERT-style encoder through the gate against a hand-written onnxruntime loop: ``compare(fp32,
int8, metric="cosine")`` with default options, and the loop a user writes by hand over both models
(plain ``InferenceSession``s, the same per-sample cosine) at its best batch size. Run by hand,
never in CI.

    python benchmarks/bench_encoder.py            # 7 alternating pairs
    python benchmarks/bench_encoder.py --quick    # 3 pairs (a smoke run; the target needs >= 5)

The benchmark builds its model once into ``<tmp>/quantguard-bench/encoder`` (torch -> ONNX, then
``quantize_dynamic`` for the INT8 candidate) and its sentences from the standard library's own
source text (a word vocabulary, nothing downloaded). Each run is a fresh subprocess: its wall time
(models loaded to result, imports excluded) and its peak RSS (``ru_maxrss``).

Targets (medians of the alternating pairs): plugin wall <= 1.05x the hand loop's; plugin peak RSS
<= the hand loop's + 512 MiB (the default ``--quant-memory``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _machine import load_text, machine_line  # benchmarks/_machine.py (run as scripts)
from _pairs import MiB, alternate, child_result, spread, verdict
from _text import PAD, cache_dir, encode, stdlib_documents, vocabulary

LAYERS, HIDDEN, HEADS, SEQ, VOCAB, SENTENCES = 4, 256, 4, 128, 8192, 512
WALL_TARGET, MEMORY = 1.05, 512 * MiB
HAND_BATCHES = (16, 32, 64, 128)
FOLDER = cache_dir("encoder")
FP32, INT8, DATA = FOLDER / "fp32.onnx", FOLDER / "int8.onnx", FOLDER / "sentences.npz"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


# --- building (once) ----------------------------------------------------------------------------

def sentences():
    """SENTENCES word runs of 16..SEQ tokens from the standard library's source, right-padded."""
    import numpy as np

    documents = stdlib_documents(64)
    vocab = vocabulary(documents, VOCAB)
    rng = np.random.default_rng(0)
    ids = np.full((SENTENCES, SEQ), PAD, np.int64)
    mask = np.zeros((SENTENCES, SEQ), np.int64)
    types = np.zeros((SENTENCES, SEQ), np.int64)
    for row in range(SENTENCES):
        words = documents[row % len(documents)]
        length = int(rng.integers(16, SEQ + 1))
        start = int(rng.integers(0, len(words) - length))
        ids[row, :length] = encode(words[start:start + length], vocab)
        mask[row, :length] = 1
        types[row, length // 2:length] = 1  # a second "segment", as BERT's sentence pairs
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def encoder():
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
            self.up, self.down = nn.Linear(HIDDEN, 4 * HIDDEN), nn.Linear(4 * HIDDEN, HIDDEN)
            self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)

        def forward(self, x, bias):
            batch, seq, _ = x.shape
            q, k, v = self.qkv(x).view(batch, seq, 3, HEADS, HIDDEN // HEADS).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5 + bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, HIDDEN)
            x = self.norm1(x + self.out(context))
            return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.words, self.positions = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
            self.types, self.norm = nn.Embedding(2, HIDDEN), nn.LayerNorm(HIDDEN)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            x = self.norm(self.words(input_ids) + self.positions(positions)
                          + self.types(token_type_ids))
            bias = (1.0 - attention_mask[:, None, None, :].float()) * -1e4
            for layer in self.layers:
                x = layer(x, bias)
            return x  # per-token hidden states [batch, seq, hidden]

    torch.manual_seed(0)
    return Encoder().eval()


def build() -> None:
    if FP32.exists() and INT8.exists() and DATA.exists():
        return
    import numpy as np
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    data = sentences()
    example = tuple(torch.from_numpy(data[name][:2]) for name in INPUTS)
    axes = {name: {0: "batch"} for name in INPUTS} | {"hidden": {0: "batch"}}
    torch.onnx.export(encoder(), example, str(FP32), input_names=list(INPUTS),
                      output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
    quantize_dynamic(str(FP32), str(INT8), weight_type=QuantType.QInt8)
    np.savez(DATA, **data)


# --- the two sides (each run in a fresh subprocess) ---------------------------------------------

def load():
    import numpy as np

    with np.load(DATA) as data:
        return {name: data[name] for name in INPUTS}


def plugin() -> tuple[float, dict]:
    from pytest_quantguard import ValidationSet, compare

    data = load()
    start = time.perf_counter()
    result = compare(str(FP32), str(INT8), data=ValidationSet(data), metric="cosine")
    wall = time.perf_counter() - start
    return wall, {"cosine": result.candidate_score, "batch": result.runtime["batch_size"]}


def hand(batch: int) -> tuple[float, dict]:
    """The loop a user writes: both models batch by batch, per-token cosine averaged over each
    sentence's unmasked tokens, the mean over sentences."""
    import numpy as np
    import onnxruntime

    data = load()
    start = time.perf_counter()
    reference, candidate = (onnxruntime.InferenceSession(str(path)) for path in (FP32, INT8))
    per_sentence = []
    for begin in range(0, SENTENCES, batch):
        feed = {name: values[begin:begin + batch] for name, values in data.items()}
        r, c = (session.run(None, feed)[0] for session in (reference, candidate))
        cos = (r * c).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(c, axis=-1))
        mask = feed["attention_mask"]
        per_sentence.append((cos * mask).sum(1) / mask.sum(1))
    wall = time.perf_counter() - start
    return wall, {"cosine": float(np.concatenate(per_sentence).mean()), "batch": batch}


def child(side: str, batch: int) -> None:
    import numpy  # noqa: F401  (imports before the clock, on both sides)
    import onnxruntime  # noqa: F401

    if side == "plugin":
        import pytest_quantguard  # noqa: F401
    wall, figures = plugin() if side == "plugin" else hand(batch)
    print(__import__("json").dumps(figures))
    child_result(wall)


def figures_of(side: str, batch: int = 0) -> dict:
    """Run one side in a fresh subprocess: its wall, peak RSS and figures."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, __file__, "--child", side, "--batch", str(batch)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {side} failed:\n{done.stderr[-4000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) | json.loads(lines[-2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--child", choices=("plugin", "hand"))
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batch)
    pairs = 3 if args.quick else max(5, args.pairs)
    print(machine_line())
    build()
    trial = {batch: figures_of("hand", batch) for batch in HAND_BATCHES}
    best = min(trial, key=lambda batch: trial[batch]["wall"])
    print("hand loop's batch, one run each: " + ", ".join(
        f"{batch}: {trial[batch]['wall']:.2f} s" for batch in HAND_BATCHES) + f" -> {best}")
    ours, theirs = alternate(pairs, lambda: figures_of("plugin"), lambda: figures_of("hand", best))
    wall = statistics.median(r["wall"] for r in ours) / statistics.median(r["wall"] for r in theirs)
    extra = statistics.median(r["rss"] for r in ours) - statistics.median(r["rss"] for r in theirs)
    print(f"\nBERT-style encoder ({LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, seq {SEQ}, "
          f"vocab {VOCAB}), {SENTENCES} sentences, fp32 vs int8 dynamic, metric cosine; "
          f"{pairs} alternating pairs, fresh subprocesses; load at end {load_text()}\n")
    print("| run | batch | wall, median (min–max) | peak RSS, median (min–max) | cosine |")
    print("|---|---|---|---|---|")
    for label, runs in (("plugin, default options", ours), (f"hand loop, batch {best}", theirs)):
        print(f"| {label} | {runs[0]['batch']} | {spread([r['wall'] for r in runs])} | "
              f"{spread([r['rss'] for r in runs], 'MiB', MiB)} | {runs[0]['cosine']:.6f} |")
    print(f"\nwall ratio {wall:.3f}; target <= {WALL_TARGET}: {verdict(wall <= WALL_TARGET)}")
    print(f"peak RSS over the hand loop's {extra / MiB:.0f} MiB; target <= {MEMORY // MiB} MiB: "
          f"{verdict(extra <= MEMORY)}")


if __name__ == "__main__":
    main()
