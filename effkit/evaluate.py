"""Evaluation: accuracy and macro-F1 for sentences, entity-level F1 (seqeval) for tags.

``evaluate(model, loader, task, label_names)`` is what :func:`effkit.train.fit` calls on the dev
set and what chapters call on the test set. It also holds the checks that turn a mismatched
dataset or batch into a readable error, and ``autocast_context`` for mixed precision.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

TASKS = ("sequence", "token")
PRIMARY_METRIC = {"sequence": "accuracy", "token": "f1"}  # what early stopping watches
from .batching import IGNORE_INDEX  # label of continuation pieces, special tokens and padding (never scored)

PRECISIONS = ("fp32", "bf16", "fp16")  # what autocast_context (and so fit and evaluate) accept


# ---------------------------------------------------------------- precision
def autocast_context(device, precision: str):
    """A context manager running the forward pass in ``precision``.

    ``"fp32"``: no autocast. ``"bf16"``: ``torch.autocast`` with bfloat16 on CPU or on a CUDA GPU
    that supports it. ``"fp16"``: float16 autocast, CUDA only (fit adds a GradScaler).
    Raises ValueError when the device cannot do what is asked, instead of silently running fp32.
    """
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"precision must be one of ('fp32', 'bf16', 'fp16'), got {precision!r}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"autocast in {precision} is supported here on 'cpu' and 'cuda', "
                         f"not on {device.type!r}; use precision='fp32'")
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision='fp16' needs a CUDA GPU (float16 autocast with a GradScaler); "
                             "on CPU use 'bf16' or 'fp32'")
        return torch.autocast("cuda", dtype=torch.float16)  # CUDA path
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():  # CUDA path
        raise ValueError("precision='bf16' but this GPU does not support bfloat16 "
                         "(compute capability < 8.0); use 'fp16' or 'fp32'")
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------- input checks
def check_label_names(model: nn.Module, label_names) -> None:
    """label_names (if given) must have exactly one name per output of the model's head."""
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if label_names is not None and num_labels is not None and len(label_names) != num_labels:
        raise ValueError(f"the dataset has {len(label_names)} label names but the model's head has "
                         f"num_labels={num_labels}; load the model with num_labels={len(label_names)}")


def check_batch(batch: dict, model: nn.Module) -> None:
    """A batch must carry ``labels`` whose ids fit the model's head (ids in [0, num_labels), or -100)."""
    if "labels" not in batch:
        raise ValueError(f"batch has no 'labels' (keys: {sorted(batch)}); encode the data with "
                         f"effkit.batching.encode_sentiment / encode_ner, which add them")
    labels = batch["labels"]
    real = labels[labels != IGNORE_INDEX]
    if real.numel() == 0:
        return
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    top, low = int(real.max()), int(real.min())
    if low < 0:
        raise ValueError(f"batch has label id {low}; label ids must be >= 0 (or -100 for ignored tokens)")
    if num_labels is not None and top >= num_labels:
        raise ValueError(f"batch has label id {top} but the model's head has num_labels={num_labels} "
                         f"(ids must be < {num_labels}); the dataset has at least {top + 1} labels")


# ---------------------------------------------------------------- predictions
@torch.no_grad()
def predict(model: nn.Module, loader, precision: str = "fp32"):
    """Argmax predictions and gold labels for every batch of ``loader``.

    Returns ``(preds, labels, mean_loss)``. For a sequence head, preds/labels are lists of ints
    (one per example). For a token head, lists of per-sentence int lists, each as long as that
    batch's padded length (gold -100 marks positions that are not scored).
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    preds, golds, loss_sum, n_batches = [], [], 0.0, 0
    for batch in loader:
        check_batch(batch, model)
        batch = {k: v.to(dev) for k, v in batch.items()}
        with autocast_context(dev, precision):
            out = model(**batch)
        loss_sum += float(out.loss)
        n_batches += 1
        preds.extend(out.logits.argmax(-1).cpu().tolist())
        golds.extend(batch["labels"].cpu().tolist())
    model.train(was_training)
    return preds, golds, loss_sum / max(n_batches, 1)


def sequence_metrics(preds: list[int], labels: list[int]) -> dict:
    """accuracy and macro-F1 (every class weighs the same, whatever its frequency)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(labels, preds)),
            "macro_f1": float(f1_score(labels, preds, average="macro")),
            "examples": len(labels)}


def to_tag_sequences(preds, labels, label_names: list[str]):
    """Keep the scored positions (gold != -100) and turn ids into tag names, sentence by sentence."""
    y_true, y_pred = [], []
    for p_row, g_row in zip(preds, labels):
        kept = [(p, g) for p, g in zip(p_row, g_row) if g != IGNORE_INDEX]
        y_true.append([label_names[g] for _, g in kept])
        y_pred.append([label_names[p] for p, _ in kept])
    return y_true, y_pred


def entity_metrics(y_true: list[list[str]], y_pred: list[list[str]]) -> dict:
    """Entity-level precision/recall/F1 (seqeval, default conlleval-style mode, BIO/IOB2 tags).

    An entity counts only if its type and both ends match exactly. ``report`` has one entry per
    entity type (precision, recall, f1-score, support) plus micro/macro/weighted averages.
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    kw = {"zero_division": 0}
    return {"precision": float(precision_score(y_true, y_pred, **kw)),
            "recall": float(recall_score(y_true, y_pred, **kw)),
            "f1": float(f1_score(y_true, y_pred, **kw)),
            "report": classification_report(y_true, y_pred, output_dict=True, **kw)}


def token_accuracy(preds, labels) -> float:
    """Fraction of scored positions (gold != -100) whose predicted id equals the gold id."""
    hits = total = 0
    for p_row, g_row in zip(preds, labels):
        for p, g in zip(p_row, g_row):
            if g != IGNORE_INDEX:
                hits += p == g
                total += 1
    return hits / total if total else float("nan")


def seed_style_token_accuracy(model: nn.Module, loader, o_id: int = 0, precision: str = "fp32") -> dict:
    """The seed article's score: accuracy over EVERY position of max_length-padded sentences.

    ``loader`` comes from :func:`effkit.batching.encode_ner_seed_style` (no -100 anywhere), so
    [CLS], [SEP], continuation pieces and all the 'O' padding are scored. Returns the model's
    accuracy and, for scale, that of a "model" that answers 'O' everywhere.
    """
    preds, labels, _ = predict(model, loader, precision)
    cells = sum(len(row) for row in labels)
    all_o = sum(g == o_id for row in labels for g in row) / cells
    return {"model": token_accuracy(preds, labels), "all_O": all_o, "positions": cells}


def evaluate(model: nn.Module, loader, task: str = "sequence", label_names=None,
             precision: str = "fp32") -> dict:
    """Score ``model`` on ``loader``.

    sequence: ``accuracy``, ``macro_f1``, ``loss``, ``examples``.
    token: entity ``precision``, ``recall``, ``f1`` (seqeval), ``report`` (per entity type),
    ``token_accuracy`` on the real tokens only (first piece of each word), ``loss``, ``sentences``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "token" and label_names is None:
        raise ValueError("task='token' needs label_names (tag names in label-id order) for entity F1")
    check_label_names(model, label_names)
    preds, labels, loss = predict(model, loader, precision)
    if task == "sequence":
        return {**sequence_metrics(preds, labels), "loss": loss}
    y_true, y_pred = to_tag_sequences(preds, labels, label_names)
    return {**entity_metrics(y_true, y_pred), "token_accuracy": token_accuracy(preds, labels),
            "loss": loss, "sentences": len(labels)}


def report_frame(metrics: dict):
    """The per-entity-type part of a token ``evaluate`` result as a pandas DataFrame."""
    import pandas as pd

    if "report" not in metrics:
        raise ValueError("report_frame needs the result of evaluate(..., task='token')")
    frame = pd.DataFrame(metrics["report"]).T
    frame["support"] = frame["support"].astype(int)
    return frame.round(3)
