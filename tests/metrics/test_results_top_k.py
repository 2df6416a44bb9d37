"""Language models in the results workflow (docs/results.md, "Language models: top-k
log-probabilities"), on the tiny byte-level LM of test_perplexity: `validate --top-k` keeps the
per-token NLL (the same perplexity figures as full logits) and the top-k log-probabilities, from
which `compare` reports a lower bound of KL(reference || candidate), checked against the exact KL
of the full logits; where a side lacks a distribution, KL is said to be unavailable, and why."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_perplexity import Corpus, write_folder  # tests/metrics/test_perplexity.py

from pytest_quantguard.cli import main
from pytest_quantguard.metrics.language import top_k_kl, top_k_logprobs

K = 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """The pair as TorchScript files, the documents as a folder, and each model validated with
    full logits and with --top-k K."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = Corpus()
        root = tmp_path_factory.mktemp("lm")
        with warnings.catch_warnings():  # torch.jit is deprecated (still works)
            warnings.simplefilter("ignore")
            for name, model in (("reference", corpus.reference), ("candidate", corpus.candidate)):
                torch.jit.save(torch.jit.script(model), root / f"{name}.pt")
        data = write_folder(root / "docs", corpus.docs, shards=1)
        for name in ("reference", "candidate"):
            for kind, extra in (("full", []), ("topk", ["--top-k", str(K)])):
                assert main(["validate", str(root / f"{name}.pt"), "--data", data, "-o",
                             str(root / kind / name), *extra]) == 0
        yield root, data
    finally:
        torch.set_num_threads(threads)


def _compare(reference, candidate, data, tmp_path, capsys) -> tuple[int, dict, str]:
    report = tmp_path / "report.json"
    capsys.readouterr()
    status = main(["compare", str(reference), str(candidate), "--data", data, "--max-drop", "0.5",
                   "--qat-limit", "0.9", "--report", str(report)])
    out = capsys.readouterr().out
    return status, json.loads(report.read_text())["comparisons"][0], out


def _exact_kl(root) -> tuple[float, float]:
    """Mean KL(reference || candidate) over the scored tokens and the top-token agreement, by
    torch, from the full logits the two models' results hold."""
    ref = torch.from_numpy(np.load(root / "full" / "reference" / "output_0.npy")).double()
    cand = torch.from_numpy(np.load(root / "full" / "candidate" / "output_0.npy")).double()
    scored = np.load(root / "topk" / "reference" / "output_0.scored.npy")
    kl = F.kl_div(F.log_softmax(cand, -1), F.log_softmax(ref, -1), log_target=True,
                  reduction="none").sum(-1).numpy()
    agree = (ref.argmax(-1) == cand.argmax(-1)).numpy()
    return float(kl[scored].mean()), float(agree[scored].mean())


def test_top_k_results_give_the_perplexity_figures_and_a_stated_kl_bound(runs, tmp_path, capsys):
    root, data = runs
    exact, agreement = _exact_kl(root)
    status, full, _ = _compare(root / "full" / "reference", root / "full" / "candidate", data,
                               tmp_path, capsys)
    assert full["details"]["kl"]["method"] == "exact"
    # the pipe reduces float32 logits in float32 (docs/metrics.md, "Memory of the reductions")
    assert full["details"]["kl"]["mean_kl"] == pytest.approx(exact, rel=2e-3)
    status, topk, out = _compare(root / "topk" / "reference", root / "topk" / "candidate", data,
                                 tmp_path, capsys)
    assert status == 0
    for key in ("drop", "interval", "verdict"):
        assert topk[key] == full[key]
    kl = topk["details"]["kl"]
    assert kl["method"] == "top-k lower bound" and kl["k"] == [K, K]
    assert "lower bound" in kl["approximation"] and "data-processing inequality" in kl["approximation"]
    assert 0.9 * exact <= kl["mean_kl"] <= exact * (1 + 1e-4)  # a bound, and a tight one at K=16
    assert kl["top_token_agreement"] == pytest.approx(agreement, abs=1e-9)
    assert f"KL(reference || candidate) >= {kl['mean_kl']:.4g} per token (top-k" in out


def test_the_bound_grows_to_the_exact_kl_with_k(runs):
    root, _ = runs
    ref = np.load(root / "full" / "reference" / "output_0.npy")
    cand = np.load(root / "full" / "candidate" / "output_0.npy")
    scored = np.load(root / "topk" / "reference" / "output_0.scored.npy")
    exact = _exact_kl(root)[0]
    bounds = [float(top_k_kl(top_k_logprobs(ref, k), top_k_logprobs(cand, k))[0][scored].mean())
              for k in (1, 4, 16, 256)]
    assert bounds == sorted(bounds) and bounds[0] < 0.9 * exact
    assert bounds[-1] == pytest.approx(exact, rel=1e-4)  # every token its own bucket: exact


def test_kl_is_not_available_when_a_side_lacks_a_distribution(runs, tmp_path, capsys):
    root, data = runs
    _, mixed, out = _compare(root / "topk" / "reference", root / "full" / "candidate", data,
                             tmp_path, capsys)
    kl = mixed["details"]["kl"]
    assert kl["available"] is False and "KL needs both distributions" in kl["why"]
    assert "the reference (results" in kl["why"] and "has its top-k" in kl["why"]
    assert "KL: not available" in out
    _, model, _ = _compare(root / "reference.pt", root / "topk" / "candidate", data, tmp_path,
                           capsys)
    assert "is a model" in model["details"]["kl"]["why"]


def test_top_k_on_a_set_that_is_not_a_language_models_is_refused(tmp_path, capsys):
    from conftest import MODELS, PROD_VAL

    assert main(["validate", str(MODELS / "fp32.onnx"), "--data", str(PROD_VAL), "-o",
                 str(tmp_path / "out"), "--top-k", "5"]) == 3
    assert "--top-k keeps the top-k log-probabilities of a language model" in capsys.readouterr().err
    assert main(["validate", "m.onnx", "--data", "d", "-o", "o", "--top-k", "0"]) == 2
    assert "a whole number >= 1" in capsys.readouterr().err
