"""The `model_perf*.zip` bundle of a training run, and reloading it to predict new images.

Contents: model.pt (a state_dict, loaded with weights_only=True), model_spec.json, params.json
(every parameter, package versions, input checksums), loss_history.csv, metrics.json,
loss_curve.png, confusion_matrix.png; with a fold ensemble also fold_models.pt (a list of
state_dicts) and fold_specs.json, and then the bundle predicts with the fold models' mean.
"""
from __future__ import annotations

import io
import json
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import sklearn
import torch
from matplotlib.figure import Figure

from ..core.atomic import to_json
from ..core.errors import InputError
from .inference import EVAL_BATCH_SIZE, ensemble_probabilities
from .networks import ModelSpec, ResNet, build_model, cpu_state_dict

REQUIRED = ("model.pt", "model_spec.json", "params.json", "metrics.json", "loss_history.csv")


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "matplotlib": matplotlib.__version__}


def _state_bytes(states: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(states, buffer)
    return buffer.getvalue()


def write_bundle(path: Path, model: ResNet, spec: ModelSpec, params: dict[str, Any], *, history: pd.DataFrame,
                 metrics: dict[str, Any], figures: dict[str, Figure], fold_models: list[ResNet] = ()) -> None:
    """Write the zip to `path` (callers pass a temp path of an OutputSet, so it appears atomically).
    With `fold_models` the bundle predicts with their mean instead of `model`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.pt", _state_bytes(cpu_state_dict(model)))
        zf.writestr("model_spec.json", json.dumps(spec.to_dict(), indent=2))
        if fold_models:
            zf.writestr("fold_models.pt", _state_bytes([cpu_state_dict(m) for m in fold_models]))
            zf.writestr("fold_specs.json", json.dumps([m.spec.to_dict() for m in fold_models], indent=2))
        zf.writestr("params.json", to_json({**params, "versions": package_versions()}))
        zf.writestr("metrics.json", to_json(metrics))
        zf.writestr("loss_history.csv", history.to_csv(index=False))
        for name, fig in figures.items():
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
            zf.writestr(f"{name}.png", png.getvalue())


@dataclass
class Bundle:
    model: ResNet
    spec: ModelSpec
    params: dict[str, Any]
    metrics: dict[str, Any]
    history: pd.DataFrame
    fold_models: list[ResNet] = field(default_factory=list)  # when present, predictions are their mean

    @property
    def predictors(self) -> list[ResNet]:
        """The models whose mean output is the bundle's prediction."""
        return self.fold_models or [self.model]


def _load_model(spec_json: Any, state: dict[str, torch.Tensor]) -> ResNet:
    model = build_model(ModelSpec.from_dict(spec_json))
    model.load_state_dict(state)
    return model.eval()


def load_bundle(path: str | Path) -> Bundle:
    """Rebuild the model of a bundle; a missing, corrupt or foreign zip raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model bundle not found")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(path, "not a zip file (corrupt model bundle)") from None
    with zf:
        missing = [name for name in REQUIRED if name not in zf.namelist()]
        if missing:
            raise InputError(path, f"not a model_perf bundle: missing {missing}")
        try:
            spec_json = json.loads(zf.read("model_spec.json"))
            model = _load_model(spec_json, torch.load(io.BytesIO(zf.read("model.pt")), map_location="cpu",
                                                      weights_only=True))
            fold_models = []
            if "fold_models.pt" in zf.namelist():
                states = torch.load(io.BytesIO(zf.read("fold_models.pt")), map_location="cpu", weights_only=True)
                fold_models = [_load_model(fold_spec, state) for fold_spec, state in zip(json.loads(zf.read("fold_specs.json")),
                                                                                          states, strict=True)]
            params = json.loads(zf.read("params.json"))
            metrics = json.loads(zf.read("metrics.json"))
            history = pd.read_csv(io.BytesIO(zf.read("loss_history.csv")))
        except Exception as exc:
            raise InputError(path, f"model bundle is damaged or does not match its spec ({type(exc).__name__}: "
                                   f"{str(exc)[:200]})") from None
    return Bundle(model, model.spec, params, metrics, history, fold_models)


def predict_with_bundle(bundle: Bundle, images: np.ndarray, images_path: str | Path = "images",
                        device: str = "cpu", batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """Softmax outputs of a reloaded model (or its fold ensemble) on new images, after checking they fit."""
    if images.ndim != 4 or images.shape[1] != bundle.spec.in_channels:
        raise InputError(images_path, f"images have {images.shape[1] if images.ndim == 4 else '?'} channels but the "
                                      f"model was trained on {bundle.spec.in_channels}")
    return ensemble_probabilities(bundle.predictors, images, device, batch_size)
