"""Perplexity against torch, on a tiny byte-level language model trained here.

The corpus is text that ships with Python: the docstrings of the public functions, classes and
methods of a few standard-library modules, as UTF-8 bytes (vocabulary 0..255). The model is a
neural 4-gram LM (byte embeddings of the three previous positions -> hidden layer -> 256 logits),
trained for a few hundred steps with a fixed seed; the candidate is the same model with its Linear
layers dynamically quantized to qint8 (torch.ao). Documents have different lengths and are
right-padded: ``attention_mask`` 0 on padding, target -100 on padding and on each document's last
position (targets are the inputs shifted left by one, aligned with the logits position by
position). Every perplexity must equal exp(mean token cross-entropy) from
``F.cross_entropy(ignore_index=-100)``, and nothing at a padded position may change the result.
"""

from __future__ import annotations

import bisect
import collections
import functools
import heapq
import inspect
import json
import math
import shlex
import string
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from pytest_quantguard import QuantGuardWarning, ValidationSet, compare

VOCAB, CONTEXT, LENGTH, CHUNKS = 256, 3, 96, 3
PAD = 32  # the byte written at padded positions (a space: a real token, so only masks hide it)
MODULES = (json, textwrap, string, collections, functools, heapq, bisect, shlex)


# --- the corpus: standard-library docstrings ---------------------------------------------------

def docstrings() -> list[bytes]:
    """Each public function's, class's and method's docstring in MODULES, once, in a fixed order."""
    seen: dict[bytes, None] = {}
    for module in MODULES:
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", "").partition(".")[0] != module.__name__:
                continue  # re-exported from elsewhere
            members = [obj]
            if inspect.isclass(obj):
                members += [member for key, member in sorted(vars(obj).items())
                            if not key.startswith("_") and inspect.isfunction(member)]
            for member in members:
                doc = inspect.getdoc(member)
                if doc and len(doc) >= 24:
                    seen.setdefault(doc.strip().encode("utf-8"))
    return list(seen)


def padded(texts: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask and targets (n, LENGTH): right-padded; targets = input_ids shifted
    left by one, -100 on padding and on each text's last position."""
    ids = np.full((len(texts), LENGTH), PAD, dtype=np.int64)
    mask = np.zeros((len(texts), LENGTH), dtype=np.int64)
    for row, text in enumerate(texts):
        ids[row, :len(text)] = np.frombuffer(text, dtype=np.uint8)
        mask[row, :len(text)] = 1
    targets = np.full_like(ids, -100)
    targets[:, :-1] = np.where(mask[:, 1:] == 1, ids[:, 1:], -100)
    return ids, mask, targets


class ByteLM(nn.Module):
    """A neural 4-gram LM: position t sees bytes t-2..t and predicts byte t + 1 (causal, so what
    follows a position, padding included, never changes its logits)."""

    def __init__(self):
        super().__init__()
        self.context = CONTEXT
        self.embed = nn.Embedding(VOCAB, 16)
        self.hidden = nn.Linear(CONTEXT * 16, 64)
        self.head = nn.Linear(64, VOCAB)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(input_ids)
        tokens = embedded.shape[1]
        context = [embedded]
        for back in range(1, self.context):
            context.append(F.pad(embedded, (0, 0, back, 0))[:, :tokens])
        return self.head(torch.relu(self.hidden(torch.cat(context, dim=-1))))


class Corpus:
    """The trained pair and its data: ``docs`` (one row per document: each docstring's first
    paragraph, cut at LENGTH bytes) and ``chunks`` (each docstring's first CHUNKS * LENGTH bytes cut
    into rows of LENGTH: several rows per document, ``documents`` naming each row's document)."""

    def __init__(self):
        texts = docstrings()
        firsts = [text.split(b"\n\n")[0][:LENGTH] for text in texts]
        self.docs = padded(firsts)
        pieces, documents = [], []
        for number, text in enumerate(texts):
            text = text[:CHUNKS * LENGTH]
            for start in range(0, len(text), LENGTH):
                if len(text) - start >= 2:  # a lone byte has no target
                    pieces.append(text[start:start + LENGTH])
                    documents.append(number)
        self.chunks = padded(pieces)
        self.documents = np.asarray(documents)
        self.reference = self._train(self.chunks)
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated (still works)
            warnings.simplefilter("ignore")
            self.candidate = torch.ao.quantization.quantize_dynamic(
                self.reference, {nn.Linear}, dtype=torch.qint8)

    @staticmethod
    def _train(data) -> ByteLM:
        ids, mask, targets = (torch.from_numpy(array) for array in data)
        torch.manual_seed(0)
        model = ByteLM()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        generator = torch.Generator().manual_seed(0)
        for _ in range(250):
            rows = torch.randint(0, len(ids), (32,), generator=generator)
            loss = F.cross_entropy(model(ids[rows], mask[rows]).reshape(-1, VOCAB),
                                   targets[rows].reshape(-1), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()


@pytest.fixture(scope="module")
def corpus():
    # one thread: two threads on two shared, busy cores are ten times slower, not faster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Corpus()
    finally:
        torch.set_num_threads(threads)


# --- direct torch computations -------------------------------------------------------------------

def torch_logits(model: nn.Module, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).double()


def torch_perplexity(logits: torch.Tensor, targets: np.ndarray) -> float:
    """exp(mean token cross-entropy) over the positions whose target is not -100."""
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(targets).reshape(-1),
                           ignore_index=-100)
    return math.exp(loss.item())


def cluster_interval(reference_nll, candidate_nll, tokens, units, confidence=0.95):
    """The relative perplexity increase's delta-method interval, clustered by ``units``, written
    out: log ratio r = sum(dNLL) / sum(tokens), SE^2 = G/(G-1) * sum_g (dNLL_g - r tokens_g)^2 /
    sum(tokens)^2, t quantile on G - 1 df, mapped back with exp(.) - 1."""
    delta = np.bincount(units, weights=candidate_nll - reference_nll)
    counts = np.bincount(units, weights=tokens)
    groups = len(delta)
    ratio = delta.sum() / counts.sum()
    se = math.sqrt(groups / (groups - 1) * np.sum((delta - ratio * counts) ** 2)) / counts.sum()
    quantile = stats.t.ppf(1 - (1 - confidence) / 2, groups - 1)
    return math.expm1(ratio - quantile * se), math.expm1(ratio + quantile * se)


def per_row_nll(logits: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    nll = F.cross_entropy(logits.permute(0, 2, 1), torch.from_numpy(targets), ignore_index=-100,
                          reduction="none")
    return nll.sum(dim=1).numpy()


def labelled(data, **extra) -> ValidationSet:
    ids, mask, targets = data
    return ValidationSet({"input_ids": ids, "attention_mask": mask}, targets,
                         task="language-model", **extra)


def logits_callable(model: nn.Module, corrupt_padding: bool = False):
    """``f(batch) -> logits`` for a batch of named arrays; with ``corrupt_padding``, the logits at
    every position whose attention_mask is 0 are replaced by large random values."""
    rng = np.random.default_rng(1)

    def run(batch):
        with torch.no_grad():
            logits = model(torch.tensor(batch["input_ids"]),
                           torch.tensor(batch["attention_mask"])).numpy()
        if corrupt_padding:
            padding = np.asarray(batch["attention_mask"]) == 0
            logits[padding] = rng.normal(0.0, 50.0, size=(int(padding.sum()), VOCAB))
        return logits

    return run


# --- the tests -----------------------------------------------------------------------------------

def test_perplexity_is_exp_of_the_mean_token_cross_entropy_from_torch(corpus):
    ids, mask, targets = corpus.docs
    lengths = mask.sum(axis=1)
    assert len(ids) >= 30 and len(set(lengths.tolist())) > 10 and (lengths < LENGTH).sum() > 10
    result = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))

    ref_logits = torch_logits(corpus.reference, ids, mask)
    cand_logits = torch_logits(corpus.candidate, ids, mask)
    expected_ref = torch_perplexity(ref_logits, targets)
    expected_cand = torch_perplexity(cand_logits, targets)
    assert expected_ref < 12 < VOCAB  # the model learned: far below a uniform guess over bytes
    assert expected_cand != expected_ref  # the quantized head really changes the outputs
    assert result.metric == "perplexity" and result.method == "linearized-cluster"
    assert result.relative is True and result.details["margin"] == "relative"
    assert result.reference_score == pytest.approx(expected_ref, rel=1e-6)
    assert result.candidate_score == pytest.approx(expected_cand, rel=1e-6)
    assert result.drop == pytest.approx(result.candidate_score / result.reference_score - 1,
                                        rel=1e-9, abs=1e-12)
    assert result.drop == pytest.approx(expected_cand / expected_ref - 1, rel=1e-6, abs=1e-9)
    assert result.n == len(ids) and result.details["tokens"] == int((targets >= 0).sum())
    # documents differ in length: the mean over tokens is not the mean of per-document means
    per_document = per_row_nll(ref_logits, targets) / (targets >= 0).sum(axis=1)
    assert abs(math.exp(per_document.mean()) / expected_ref - 1) > 1e-3
    # the interval, documents as units, written out independently
    expected_interval = cluster_interval(per_row_nll(ref_logits, targets),
                                         per_row_nll(cand_logits, targets),
                                         (targets >= 0).sum(axis=1), np.arange(len(ids)))
    assert result.interval == pytest.approx(expected_interval, rel=1e-6, abs=1e-12)
    assert result.interval.low < result.drop < result.interval.high


def test_nothing_at_a_padded_position_changes_the_result(corpus):
    ids, mask, targets = corpus.docs
    baseline = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))
    padding = mask == 0
    assert padding.sum() > 1000

    # real (non -100) targets at the padded positions: attention_mask alone hides them
    rng = np.random.default_rng(0)
    noisy_targets = np.where(padding, rng.integers(0, VOCAB, ids.shape), targets)
    noisy = compare(corpus.reference, corpus.candidate, data=labelled((ids, mask, noisy_targets)))
    for field in ("reference_score", "candidate_score", "drop", "interval"):
        assert getattr(noisy, field) == pytest.approx(getattr(baseline, field), rel=1e-12)
    assert noisy.details["tokens"] == baseline.details["tokens"]
    assert noisy.details["mean_kl"] == pytest.approx(baseline.details["mean_kl"], rel=1e-12)

    # other bytes at the padded positions: the causal reference's perplexity is unchanged. (The
    # dynamically quantized candidate's is not: its activations are quantized with the range of
    # the whole batch, padding included, so it still must match torch on those inputs.)
    noisy_ids = np.where(padding, rng.integers(0, VOCAB, ids.shape), ids)
    noisy = compare(corpus.reference, corpus.candidate, data=labelled((noisy_ids, mask, targets)))
    assert noisy.reference_score == pytest.approx(baseline.reference_score, rel=1e-12)
    assert noisy.candidate_score == pytest.approx(
        torch_perplexity(torch_logits(corpus.candidate, noisy_ids, mask), targets), rel=1e-6)

    # garbage logits at the padded positions: the same figures, and a model compared with its own
    # corrupted outputs agrees on every scored token
    corrupted = compare(logits_callable(corpus.reference, corrupt_padding=True),
                        logits_callable(corpus.candidate, corrupt_padding=True),
                        data=labelled(corpus.docs))
    for field in ("reference_score", "candidate_score", "drop", "interval"):
        assert getattr(corrupted, field) == pytest.approx(getattr(baseline, field), rel=1e-12)
    itself = compare(logits_callable(corpus.reference),
                     logits_callable(corpus.reference, corrupt_padding=True),
                     data=labelled(corpus.docs), max_drop=0.01)
    assert itself.candidate_score == itself.reference_score and itself.drop == 0.0
    assert itself.details["top_token_agreement"] == 1.0 and itself.details["mean_kl"] == 0.0

    # without an attention_mask, target -100 alone hides the padding
    def ids_only(model):
        def run(batch):
            tensor = torch.tensor(batch)
            with torch.no_grad():
                return model(tensor, torch.ones_like(tensor)).numpy()
        return run

    unmasked = compare(ids_only(corpus.reference), ids_only(corpus.candidate),
                       data=ValidationSet(ids, targets, task="language-model"))
    for field in ("reference_score", "candidate_score", "drop", "interval"):
        assert getattr(unmasked, field) == pytest.approx(getattr(baseline, field), rel=1e-12)


def nll_callable(model: nn.Module):
    """``f(batch) -> per-token NLL (batch, tokens)`` of the next byte; 0 where nothing is scored."""
    def run(batch):
        ids = torch.tensor(batch["input_ids"])
        mask = torch.tensor(batch["attention_mask"])
        targets = torch.full_like(ids, -100)
        targets[:, :-1] = torch.where(mask[:, 1:] == 1, ids[:, 1:], -100)
        with torch.no_grad():
            logits = model(ids, mask)
        return F.cross_entropy(logits.permute(0, 2, 1), targets, ignore_index=-100,
                               reduction="none").numpy()
    return run


def test_per_token_nll_outputs_give_the_perplexity_of_the_logits(corpus):
    logits = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))
    nll = compare(nll_callable(corpus.reference), nll_callable(corpus.candidate),
                  data=labelled(corpus.docs))
    assert nll.metric == "perplexity" and nll.method == "linearized-cluster"
    assert nll.reference_score == pytest.approx(logits.reference_score, rel=1e-6)
    assert nll.candidate_score == pytest.approx(logits.candidate_score, rel=1e-6)
    assert nll.drop == pytest.approx(logits.drop, rel=1e-5, abs=1e-9)
    assert nll.interval == pytest.approx(logits.interval, rel=1e-5, abs=1e-9)
    assert nll.details["tokens"] == logits.details["tokens"]
    # per-token NLL carries no distributions: nothing to compare token by token
    assert "top_token_agreement" not in nll.details and "mean_kl" not in nll.details


def test_per_token_nll_with_targets_raises_no_label_range_warning(corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantGuardWarning)
        compare(nll_callable(corpus.reference), nll_callable(corpus.candidate),
                data=labelled(corpus.docs))


def test_the_message_of_an_ungrouped_set_names_no_groups(corpus):
    result = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))
    assert result.n_groups is None
    assert "None groups" not in result.message
    assert f"n={result.n})" in result.message


def test_top_token_agreement_and_mean_kl_equal_torch(corpus):
    ids, mask, targets = corpus.docs
    result = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))
    ref_logits = torch_logits(corpus.reference, ids, mask)
    cand_logits = torch_logits(corpus.candidate, ids, mask)
    scored = torch.from_numpy((targets >= 0) & (mask == 1))
    agree = ref_logits.argmax(dim=-1) == cand_logits.argmax(dim=-1)
    kl = F.kl_div(F.log_softmax(cand_logits, dim=-1), F.log_softmax(ref_logits, dim=-1),
                  log_target=True, reduction="none").sum(dim=-1)  # KL(reference || candidate)
    expected_agreement = agree[scored].double().mean().item()
    expected_kl = kl[scored].mean().item()
    assert 0.5 < expected_agreement < 1.0 and expected_kl > 0  # quantization moved something
    assert result.details["top_token_agreement"] == pytest.approx(expected_agreement, rel=1e-12)
    assert result.details["mean_kl"] == pytest.approx(expected_kl, rel=1e-6)
    # over every position (padding included) both would differ: the figures are over scored tokens
    assert agree.double().mean().item() != pytest.approx(expected_agreement, rel=1e-9)


def test_groups_cluster_the_interval_by_document(corpus):
    ids, mask, targets = corpus.chunks
    documents = corpus.documents
    rows_per_document = np.bincount(documents)
    assert (rows_per_document >= 2).sum() >= 10 and len(rows_per_document) >= 30

    by_row = compare(corpus.reference, corpus.candidate, data=labelled(corpus.chunks))
    by_document = compare(corpus.reference, corpus.candidate,
                          data=labelled(corpus.chunks, groups=documents))
    ref_logits = torch_logits(corpus.reference, ids, mask)
    cand_logits = torch_logits(corpus.candidate, ids, mask)
    for result in (by_row, by_document):
        assert result.method == "linearized-cluster" and result.n == len(ids)
        assert result.reference_score == pytest.approx(torch_perplexity(ref_logits, targets),
                                                       rel=1e-6)
        assert result.candidate_score == pytest.approx(torch_perplexity(cand_logits, targets),
                                                       rel=1e-6)
    assert by_document.drop == by_row.drop
    assert by_document.n_groups == len(rows_per_document) and by_row.n_groups is None
    assert by_document.details["units"] == len(rows_per_document)
    assert by_row.details["units"] == len(ids)
    assert f"n={len(ids)}, {len(rows_per_document)} groups" in by_document.message
    assert by_document.interval != pytest.approx(by_row.interval, rel=1e-3)

    reference_nll, candidate_nll = per_row_nll(ref_logits, targets), per_row_nll(cand_logits, targets)
    tokens = (targets >= 0).sum(axis=1)
    assert by_document.interval == pytest.approx(
        cluster_interval(reference_nll, candidate_nll, tokens, documents), rel=1e-6, abs=1e-12)
    assert by_row.interval == pytest.approx(
        cluster_interval(reference_nll, candidate_nll, tokens, np.arange(len(ids))),
        rel=1e-6, abs=1e-12)


def write_folder(folder, data, documents=None, shards=2) -> str:
    """.npz shards (input_ids, attention_mask, labels) and a language-model manifest."""
    ids, mask, targets = data
    folder.mkdir()
    for number, part in enumerate(np.array_split(np.arange(len(ids)), shards)):
        extra = {} if documents is None else {"document": documents[part]}
        np.savez(folder / f"shard_{number}.npz", input_ids=ids[part], attention_mask=mask[part],
                 labels=targets[part], **extra)
    manifest = ('task = "language-model"\ninputs = ["input_ids", "attention_mask"]\n'
                'labels = "labels"\n' + ("" if documents is None else 'groups = "document"\n'))
    (folder / "quantguard.toml").write_text(manifest, encoding="utf-8")
    return str(folder)


def test_a_folder_on_disk_gives_the_torch_perplexity(corpus, tmp_path):
    ids, mask, targets = corpus.docs
    folder = write_folder(tmp_path / "docs", corpus.docs)
    from_folder = compare(corpus.reference, corpus.candidate, data=folder)
    in_memory = compare(corpus.reference, corpus.candidate, data=labelled(corpus.docs))
    assert from_folder.metric == "perplexity" and from_folder.relative is True
    assert from_folder.method == "linearized-cluster" and from_folder.n == len(ids)
    assert from_folder.data["path"] == folder
    assert from_folder.reference_score == in_memory.reference_score
    assert from_folder.details["tokens"] == in_memory.details["tokens"]
    # each shard is its own batch; the dynamically quantized candidate's activation ranges are
    # per batch, so its logits are those of one forward per shard
    shards = np.array_split(np.arange(len(ids)), 2)
    cand_logits = torch.cat([torch_logits(corpus.candidate, ids[rows], mask[rows]) for rows in shards])
    expected_cand = torch_perplexity(cand_logits, targets)
    assert from_folder.candidate_score == pytest.approx(expected_cand, rel=1e-6)
    # logits are reduced in float32 with float64 sums (docs/metrics.md, "Memory of the
    # reductions"): each perplexity is exact to about 1e-9 relative, and so is the drop
    assert from_folder.drop == pytest.approx(expected_cand / in_memory.reference_score - 1,
                                             rel=1e-6, abs=1e-8)

    grouped = compare(corpus.reference, corpus.candidate,
                      data=write_folder(tmp_path / "chunks", corpus.chunks, corpus.documents, 1))
    expected = compare(corpus.reference, corpus.candidate,
                       data=labelled(corpus.chunks, groups=corpus.documents))
    assert grouped.n_groups == expected.n_groups == len(np.unique(corpus.documents))
    for field in ("reference_score", "candidate_score", "drop", "interval"):
        assert getattr(grouped, field) == getattr(expected, field)


GATE = """
import pytest

@pytest.mark.quant_tolerance(max_drop=0.5, qat_limit=0.9)
def test_loose(quant_compare):
    result = quant_compare("models/reference.pt", "models/candidate.pt")
    assert result.metric == "perplexity" and result.relative is True

@pytest.mark.quant_tolerance(max_drop=1e-9)
def test_tight(quant_compare):
    quant_compare("models/reference.pt", "models/candidate.pt")
"""


def test_the_pytest_fixture_gates_on_relative_perplexity(corpus, pytester):
    models = pytester.path / "models"
    models.mkdir()
    with warnings.catch_warnings():  # torch.jit is deprecated (still works)
        warnings.simplefilter("ignore")
        for name, model in (("reference", corpus.reference), ("candidate", corpus.candidate)):
            torch.jit.save(torch.jit.script(model), models / f"{name}.pt")
    folder = write_folder(pytester.path / "val", corpus.docs)
    expected = compare(corpus.reference, corpus.candidate, data=folder)
    assert expected.interval.high > 1e-9  # so the tight limit cannot ship

    pytester.makepyfile(test_lm=GATE)
    result = pytester.runpytest("--quant-data", "val", "--quant-report", "quant.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*Traceback*")
    failure = "\n".join(result.stdout.lines)
    assert "test_tight" in failure and "perplexity" in failure
    assert f"reference {expected.reference_score:.4f}" in failure
    report = json.loads((pytester.path / "quant.json").read_text(encoding="utf-8"))
    rows = {row["id"].rpartition("::")[2]: row for row in report["comparisons"]}
    assert set(rows) == {"test_loose", "test_tight"}
    for row in rows.values():
        assert row["metric"] == "perplexity" and row["thresholds"]["relative"] is True
        assert row["drop"] == pytest.approx(expected.drop, rel=1e-9, abs=1e-12)
        assert row["interval"]["method"] == "linearized-cluster"
    assert rows["test_loose"]["verdict"] == "ship" and rows["test_tight"]["verdict"] != "ship"
