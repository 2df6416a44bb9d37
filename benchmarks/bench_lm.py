"""A causal language model through the gate against a hand-written onnxruntime loop: ``compare(fp32,
[int8, int4], metric="perplexity")`` with default options (one pass for both candidates), and the
loop a user writes by hand that runs each of the three models once and computes its perplexity.
Run by hand, never in CI.

    python benchmarks/bench_lm.py            # 7 alternating pairs
    python benchmarks/bench_lm.py --quick    # 3 pairs (a smoke run; the targets need >= 5)

The benchmark builds its models once into ``<tmp>/quantguard-bench/lm``: a causal transformer
(vocabulary 16,384, windows of 256 tokens) exported from torch, an INT8 candidate by
``quantize_dynamic`` and an INT4 weight-only one by ``MatMulNBitsQuantizer`` (bits 4, block 128).
Its windows are the standard library's own source text (a word vocabulary, nothing downloaded),
targets the inputs shifted left by one, ``groups`` each window's file (docs/data.md,
"Language-model data"). Each run is a fresh subprocess: its wall time (models loaded to result,
imports excluded) and its peak RSS (``ru_maxrss``).

Targets (medians of the alternating pairs): plugin peak RSS < 1.5 GB; plugin wall <= 1.5x the
hand loop's. Also checked: the FP32 and INT4 perplexities equal the hand loop's to 1e-6 relative;
the dynamic INT8's depends on the batch, so it is compared with a hand loop at the plugin's batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _machine import load_text, machine_line  # benchmarks/_machine.py (run as scripts)
from _pairs import alternate, child_result, spread, verdict
from _text import cache_dir, encode, stdlib_documents, vocabulary

LAYERS, HIDDEN, HEADS, SEQ, VOCAB, WINDOWS = 2, 128, 4, 256, 16384, 128
RSS_TARGET, WALL_TARGET, EXACT = 1.5e9, 1.5, 1e-6
HAND_BATCHES = (8, 16, 32)
FOLDER = cache_dir("lm")
MODELS = {name: FOLDER / f"{name}.onnx" for name in ("fp32", "int8", "int4")}
DATA = FOLDER / "windows.npz"


# --- building (once) ----------------------------------------------------------------------------

def windows():
    """WINDOWS windows of SEQ words, a few from each standard-library file, in file order."""
    import numpy as np

    documents = stdlib_documents(1000)
    vocab = vocabulary(documents, VOCAB)
    per_file = -(-WINDOWS // len(documents))
    ids, groups = [], []
    for index, words in enumerate(documents):
        for start in range(0, min(per_file * SEQ, len(words) - SEQ), SEQ):
            ids.append(encode(words[start:start + SEQ], vocab))
            groups.append(index)
    ids, groups = np.array(ids[:WINDOWS], np.int64), np.array(groups[:WINDOWS], np.int64)
    targets = np.full_like(ids, -100)
    targets[:, :-1] = ids[:, 1:]  # position t scores token t + 1; the last has none
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "targets": targets,
            "groups": groups}


def language_model():
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.out = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
            self.up, self.down = nn.Linear(HIDDEN, 4 * HIDDEN), nn.Linear(4 * HIDDEN, HIDDEN)
            self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)

        def forward(self, x, causal):
            batch = x.shape[0]
            q, k, v = self.qkv(self.norm1(x)).view(batch, SEQ, 3, HEADS, HIDDEN // HEADS).unbind(2)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5 + causal
            x = x + self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, SEQ, HIDDEN))
            return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))

    class CausalLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.words, self.positions = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
            self.norm, self.head = nn.LayerNorm(HIDDEN), nn.Linear(HIDDEN, VOCAB)
            self.register_buffer("causal", torch.full((SEQ, SEQ), -1e4).triu(1))

        def forward(self, input_ids, attention_mask):
            x = self.words(input_ids) + self.positions.weight
            bias = self.causal + (1.0 - attention_mask[:, None, None, :].float()) * -1e4
            for layer in self.layers:
                x = layer(x, bias)
            return self.head(self.norm(x))  # logits [batch, SEQ, VOCAB]

    torch.manual_seed(0)
    model = CausalLM().eval()
    with torch.no_grad():  # a sharper, more LM-like output than the random init's near-uniform one
        model.head.weight.mul_(8.0)
    return model


def build() -> None:
    if all(path.exists() for path in MODELS.values()) and DATA.exists():
        return
    import numpy as np
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    data = windows()
    example = tuple(torch.from_numpy(data[name][:2]) for name in ("input_ids", "attention_mask"))
    axes = {"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(language_model(), example, str(MODELS["fp32"]),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    quantize_dynamic(str(MODELS["fp32"]), str(MODELS["int8"]), weight_type=QuantType.QInt8)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(MODELS["fp32"])), bits=4, block_size=128,
                                     is_symmetric=True)
    quantizer.process()
    quantizer.model.save_model_to_file(str(MODELS["int4"]), use_external_data_format=False)
    np.savez(DATA, **data)


# --- the two sides (each run in a fresh subprocess) ---------------------------------------------

def load():
    import numpy as np

    with np.load(DATA) as data:
        return {name: data[name] for name in data.files}


def plugin() -> tuple[float, dict]:
    from pytest_quantguard import ValidationSet, compare

    data = load()
    start = time.perf_counter()
    dataset = ValidationSet({"input_ids": data["input_ids"],
                             "attention_mask": data["attention_mask"]}, data["targets"],
                            data["groups"], task="language-model")
    int8, int4 = compare(str(MODELS["fp32"]), [str(MODELS["int8"]), str(MODELS["int4"])],
                         data=dataset, metric="perplexity")
    wall = time.perf_counter() - start
    return wall, {"fp32": int8.reference_score, "int8": int8.candidate_score,
                  "int4": int4.candidate_score, "batch": int8.runtime["batch_size"],
                  "verdicts": [int8.verdict, int4.verdict]}


def perplexity(path, data, batch: int) -> float:
    """The loop a user writes: the model batch by batch, each token's NLL from a float32
    log-sum-exp, summed in float64 over the scored tokens."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    total, count = 0.0, 0
    for begin in range(0, WINDOWS, batch):
        rows = slice(begin, begin + batch)
        logits = session.run(None, {"input_ids": data["input_ids"][rows],
                                    "attention_mask": data["attention_mask"][rows]})[0]
        targets = data["targets"][rows]
        scored = targets >= 0
        top = logits.max(-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
        picked = np.take_along_axis(logits, np.where(scored, targets, 0)[..., None], -1)[..., 0]
        total += float((lse - picked)[scored].sum(dtype=np.float64))
        count += int(scored.sum())
        del logits, top, lse, picked
    return float(np.exp(total / count))


def hand(batch: int, names: list[str]) -> tuple[float, dict]:
    data = load()
    start = time.perf_counter()
    figures = {name: perplexity(MODELS[name], data, batch) for name in names}
    return time.perf_counter() - start, figures | {"batch": batch}


def child(side: str, batch: int, names: list[str]) -> None:
    import numpy  # noqa: F401  (imports before the clock, on both sides)
    import onnxruntime  # noqa: F401

    if side == "plugin":
        import pytest_quantguard  # noqa: F401
    wall, figures = plugin() if side == "plugin" else hand(batch, names)
    print(json.dumps(figures))
    child_result(wall)


def figures_of(side: str, batch: int = 0, names: str = "fp32,int8,int4") -> dict:
    """Run one side in a fresh subprocess: its wall, peak RSS and figures."""
    done = subprocess.run([sys.executable, __file__, "--child", side, "--batch", str(batch),
                           "--models", names], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {side} failed:\n{done.stderr[-4000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) | json.loads(lines[-2])


def report(ours: list[dict], theirs: list[dict], best: int, same_batch: dict, pairs: int) -> None:
    print(f"\ncausal LM ({LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB:,}, {SEQ} tokens), "
          f"{WINDOWS} windows; fp32 vs int8 dynamic and int4 weight-only, metric perplexity; "
          f"{pairs} alternating pairs, fresh subprocesses; load at end {load_text()}\n")
    print("| run | batch | wall, median (min–max) | peak RSS, median (min–max) | "
          "ppl fp32 / int8 / int4 |\n|---|---|---|---|---|")
    for label, runs in (("plugin, default options", ours), (f"hand loop, batch {best}", theirs)):
        r = runs[0]
        print(f"| {label} | {r['batch']} | {spread([x['wall'] for x in runs])} | "
              f"{spread([x['rss'] for x in runs], 'MB', 1e6)} | "
              f"{r['fp32']:.6f} / {r['int8']:.6f} / {r['int4']:.6f} |")
    print(f"\nplugin verdicts (int8, int4): {ours[0]['verdicts']}")
    wall = statistics.median(r["wall"] for r in ours) / statistics.median(r["wall"] for r in theirs)
    rss = statistics.median(r["rss"] for r in ours)
    print(f"peak RSS {rss / 1e6:.0f} MB; target < {RSS_TARGET / 1e6:.0f} MB: "
          f"{verdict(rss < RSS_TARGET)}")
    print(f"wall ratio {wall:.3f}; target <= {WALL_TARGET}: {verdict(wall <= WALL_TARGET)}")
    for name, hand_figure in (("fp32", theirs[0]["fp32"]), ("int4", theirs[0]["int4"]),
                              ("int8", same_batch["int8"])):
        gap = abs(ours[0][name] / hand_figure - 1)
        where = f"hand loop at the plugin's batch {same_batch['batch']}" if name == "int8" else \
            f"hand loop, batch {best}"
        print(f"{name} perplexity vs {where}: relative difference {gap:.2e}; "
              f"target <= {EXACT:g}: {verdict(gap <= EXACT)}")
    print(f"int8 perplexity at hand batch {best}: {theirs[0]['int8']:.6f} (relative difference to "
          f"the plugin's {abs(ours[0]['int8'] / theirs[0]['int8'] - 1):.2e}: dynamic ranges are "
          "per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--child", choices=("plugin", "hand"))
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--models", default="fp32,int8,int4")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.batch, args.models.split(","))
    pairs = 3 if args.quick else max(5, args.pairs)
    print(machine_line())
    build()
    trial = {batch: figures_of("hand", batch) for batch in HAND_BATCHES}
    best = min(trial, key=lambda batch: trial[batch]["wall"])
    print("hand loop's batch, one run each: " + ", ".join(
        f"{batch}: {trial[batch]['wall']:.2f} s" for batch in HAND_BATCHES) + f" -> {best}")
    ours, theirs = alternate(pairs, lambda: figures_of("plugin"), lambda: figures_of("hand", best))
    same_batch = figures_of("hand", ours[0]["batch"], "int8")
    report(ours, theirs, best, same_batch, pairs)


if __name__ == "__main__":
    main()
