"""Source ``trained``: a model trained here by ``filterdb train <id>``.

The net is rebuilt from :mod:`filterdb.train.nets` as the zoo entry describes it and its weights
are read from ``{models_dir}/{model_id}.pt`` (default ``models``); the metrics written next to it
(``{model_id}.json``) supply ``accuracy`` (or ``reconstruction_mse``) as extra meta-data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filterdb.sources import LoadedModel, ModelLoadError, register_source
from filterdb.sources.checkpoint import read_state_dict
from filterdb.train.data import get_dataset_spec
from filterdb.train.recipe import ENTRY_KEYS, build_entry_net

__all__ = ["DEFAULT_MODELS_DIR", "load_trained"]

DEFAULT_MODELS_DIR = "models"
"""Folder of the checkpoints when an entry gives no ``models_dir``."""

_METRIC_KEYS = (
    "accuracy",
    "reconstruction_mse",
    "noisy_input_mse",
    "epochs",
    "n_train",
    "n_train_samples",
)


@register_source("trained", keys=ENTRY_KEYS)
def load_trained(model_id: str, entry: Mapping[str, Any]) -> LoadedModel:
    """Rebuild the net of a ``trained`` zoo entry and load its checkpoint.

    Parameters
    ----------
    model_id : str
        The entry's id; the checkpoint is ``{models_dir}/{model_id}.pt``.
    entry : mapping
        ``arch``, ``dataset``, optional ``width`` and ``models_dir``, and the training keys.

    Returns
    -------
    LoadedModel
        ``module`` in eval mode, ``weights="trained:{models_dir}/{model_id}.pt"``,
        ``input_size=(C, H, W)`` of the dataset, ``extra_meta`` with the held-out metric and
        ``n_train_samples`` (images trained on; older metrics files without it give ``n_train``).

    Raises
    ------
    ModelLoadError
        Unknown arch or dataset, missing checkpoint (run ``filterdb train <id>`` first), or a
        checkpoint that does not fit the architecture the entry describes.
    """
    models_dir = Path(entry.get("models_dir", DEFAULT_MODELS_DIR))
    ckpt = models_dir / f"{model_id}.pt"
    try:
        net = build_entry_net(model_id, entry)
        spec = get_dataset_spec(entry["dataset"])
    except (KeyError, ValueError) as err:
        raise ModelLoadError(f"zoo entry {model_id!r}: {err}") from err
    if not ckpt.is_file():
        raise ModelLoadError(
            f"model {model_id!r}: checkpoint {ckpt} does not exist; "
            f"run `filterdb train {model_id}` first"
        )
    state = read_state_dict(ckpt, model_id)  # a corrupt file is a ModelLoadError naming it
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as err:
        raise ModelLoadError(
            f"model {model_id!r}: checkpoint {ckpt} does not fit arch {entry['arch']!r} "
            f"(width {entry.get('width')}); retrain with `filterdb train {model_id}`: {err}"
        ) from err
    net.eval()
    extra: dict[str, Any] = {}
    metrics_path = ckpt.with_suffix(".json")
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(
                f"model {model_id!r}: cannot read metrics {metrics_path}: {err}"
            ) from err
        extra = {k: metrics[k] for k in _METRIC_KEYS if k in metrics}
        if "n_train_samples" not in extra and "n_train" in extra:
            extra["n_train_samples"] = extra["n_train"]
    # trained by this project on packaged data: the dataset's own licence
    extra.setdefault("license", "CC-BY-4.0")
    return LoadedModel(
        module=net,
        weights=f"trained:{ckpt.as_posix()}",
        input_size=spec.input_size,
        extra_meta=extra,
    )
