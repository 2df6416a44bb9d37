"""Language models in the results workflow (docs/results.md, "Language models: top-k
log-probabilities"): ``quantguard validate --top-k K`` keeps each token's NLL in place of the
logits, with its K largest log-probabilities, and ``quantguard compare`` reports KL(reference ||
candidate): exact from both models' full logits, a stated lower bound from both sides' top-k, or
why it is not available."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_quantguard.errors import QuantGuardError

APPROXIMATION = (
    "a lower bound of KL(reference || candidate): both distributions coarsened to the tokens in "
    "both models' top-k (each its own bucket) and one bucket holding the rest of the mass; "
    "coarsening never increases KL (the data-processing inequality)")


def keep_top_k(outputs: dict[str, Any], batch: Any, k: int, task: str | None,
               top_k: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """One batch's outputs as ``validate --top-k`` keeps them: each per-token logits output
    (samples, tokens, vocabulary) becomes its per-token NLL of the targets, plus its top-k
    log-probabilities and token ids and the positions scored; ``top_k`` records the names."""
    from pytest_quantguard.metrics.language import token_mask, token_nll, top_k_logprobs

    if task != "language-model":
        raise QuantGuardError(f"--top-k keeps the top-k log-probabilities of a language model; "
                              f"this set's task is {task!r} (task = \"language-model\" in "
                              "quantguard.toml)")
    kept = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.ndim != 3 or not np.issubdtype(value.dtype, np.floating):
            kept[name] = value
            continue
        targets = None if batch.labels is None else np.asarray(batch.labels)
        if targets is None or targets.shape != value.shape[:2] or \
                not np.issubdtype(targets.dtype, np.integer):
            raise QuantGuardError(f"--top-k: output {name!r} has logits of shape "
                                  f"{list(value.shape)}; keeping its per-token NLL needs integer "
                                  "targets of shape (n, tokens) as the set's labels")
        values, ids = top_k_logprobs(value, k)
        kept[name] = token_nll(value, targets)
        names = {"logprobs": f"{name}.topk_logprobs", "ids": f"{name}.topk_ids",
                 "scored": f"{name}.scored"}
        kept.update({names["logprobs"]: values, names["ids"]: ids,
                     names["scored"]: token_mask(batch, value.shape[:2], targets, name)})
        top_k[name] = {"k": values.shape[2], **names}
    if not top_k:
        raise QuantGuardError("--top-k: the model has no per-token logits output (samples, "
                              f"tokens, vocabulary); its outputs are {list(outputs)}")
    return kept


def kl_details(record: dict[str, Any], reference: Any, candidate: Any,
               output: str | int | None) -> dict[str, Any] | None:
    """The ``kl`` entry of a perplexity comparison's details: exact (both full logits), a
    top-k lower bound (both sides' top-k), or not available and why; None for other metrics."""
    if record.get("metric") != "perplexity":
        return None
    details = record.get("details") or {}
    if details.get("mean_kl") is not None:
        return {"available": True, "method": "exact", "mean_kl": details["mean_kl"],
                "top_token_agreement": details.get("top_token_agreement"),
                "approximation": "none: from both models' full logits"}
    sides = [getattr(runner, "top_k_in_set_order", lambda _: None)(output)
             for runner in (reference, candidate)]
    if sides[0] is None or sides[1] is None:
        return {"available": False, "why": _why(sides, reference, candidate)}
    from pytest_quantguard.metrics.language import top_k_kl

    kl, agree = top_k_kl((sides[0]["logprobs"], sides[0]["ids"]),
                         (sides[1]["logprobs"], sides[1]["ids"]))
    scored = np.asarray(sides[0]["scored"], bool) & np.asarray(sides[1]["scored"], bool)
    tokens = int(scored.sum())
    return {"available": True, "method": "top-k lower bound",
            "k": [sides[0]["k"], sides[1]["k"]], "tokens": tokens,
            "mean_kl": float(kl[scored].sum() / max(tokens, 1)),
            "top_token_agreement": float(agree[scored].sum() / max(tokens, 1)),
            "approximation": APPROXIMATION}


def _why(sides: list[Any], reference: Any, candidate: Any) -> str:
    """Which side lacks a distribution, and what to write instead."""
    held = []
    for role, runner, side in (("reference", reference, sides[0]),
                               ("candidate", candidate, sides[1])):
        shown = getattr(runner, "description", runner)
        if side is not None:
            held.append(f"the {role} ({shown}) has its top-k log-probabilities")
        elif hasattr(runner, "top_k_in_set_order"):
            held.append(f"the {role} ({shown}) keeps neither full logits nor top-k "
                        "log-probabilities")
        else:
            held.append(f"the {role} ({shown}) is a model whose full logits are not "
                        "compared with top-k ones")
    return ("KL needs both distributions: " + "; ".join(held) + ". Write both results with "
            "quantguard validate --top-k K (or both with full logits) for KL")


def kl_text(entry: dict[str, Any] | None) -> str:
    """The KL part of a candidate's row in ``quantguard compare``'s output."""
    if entry is None:
        return ""
    if not entry["available"]:
        return f"\n  KL: not available: {entry['why']}"
    if entry["method"] == "exact":
        return f"\n  KL(reference || candidate): {entry['mean_kl']:.4g} per token (exact)"
    return (f"\n  KL(reference || candidate) >= {entry['mean_kl']:.4g} per token (top-k, k = "
            f"{entry['k'][0]} and {entry['k'][1]}: {entry['approximation']}); top-token "
            f"agreement {entry['top_token_agreement']:.4f}")
