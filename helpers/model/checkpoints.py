"""Checkpoints: the last epoch of a run, so an interrupted run resumes. A checkpoint records a
fingerprint of what made it (inputs, training settings, code, holdout) and is resumed only by the
very same run."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from ..core.atomic import OutputSet
from ..core.errors import InputError
from ..core.fingerprints import code_hash, file_identity
from ..data.sets import ImageSet
from .networks import cpu_state_dict
from .settings import TrainConfig


def checkpoint_path(bundle_path: Path) -> Path:
    """`s_1a/model_perf_diff.zip` -> `s_1a/checkpoint_diff.pt`: the last epoch of that run."""
    bundle_path = Path(bundle_path)
    return bundle_path.with_name(bundle_path.stem.replace("model_perf", "checkpoint") + ".pt")


# What a checkpoint's run may differ in and still resume: where it runs and how it reports.
_NOT_FINGERPRINTED = ("resume_from", "progress", "run_name", "device")


def training_fingerprint(image_set: ImageSet, cfg: TrainConfig, holdout: np.ndarray | None = None) -> str:
    """Hash of what makes a training run: its input files, its parameters, the code (and a holdout)."""
    h = hashlib.sha256(code_hash().encode())
    for path in image_set.pair:
        h.update(file_identity(path).encode())
    params = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_FINGERPRINTED}
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    if holdout is not None:
        h.update(np.packbits(np.asarray(holdout, bool)).tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None,
                    epoch: int, *, history: list[dict], best: dict, fingerprint: str = "") -> None:
    with OutputSet() as out:
        torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": cpu_state_dict(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "history": history, "best_score": best["score"], "best_epoch": best["epoch"],
                    "best_state": best["state"]}, out.path(path))


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler | None,
                    fingerprint: str) -> tuple[int, list[dict], dict] | None:
    """Restore a checkpoint of this very run (its `fingerprint`: same inputs, parameters and code);
    returns (next epoch, history so far, best so far). None, saying why, when it was made from
    anything else or is damaged: that would be continued as if it were this run."""
    if not path.is_file():
        raise InputError(path, "checkpoint to resume from not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # damaged: start over
        state = None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        print(f"{path}: made from other inputs, parameters or code than this run (or damaged); not resuming, "
              "training from scratch", flush=True)
        return None
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except Exception as exc:
        raise InputError(path, f"not a checkpoint of this model ({type(exc).__name__}: {str(exc)[:200]})") from None
    # checkpoints written before `select_by` kept the best validation loss
    score = state["best_score"] if "best_score" in state else -state["best_val_loss"]
    best = {"score": score, "epoch": state["best_epoch"], "state": state["best_state"]}
    return state["epoch"] + 1, list(state["history"]), best
