"""Checkpoints of a GaussianModel (+ optimizer moments + extra values) in one safetensors file.

Layout: tensors `params.<name>`, `optim.<name>.<state key>` (e.g. Adam's exp_avg) and
`extra.<key>` for tensor values of `extra`; metadata `skyfall_splat` (format version),
`sh_degree`, `optim_steps` and `extra` (the JSON of the non-tensor values of `extra`).
`restore_optimizers` puts the moments back into optimizers made for the loaded model.
Files are written to a temporary name and renamed, so a crash never leaves a torn checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from skyfall_core.atomic import atomic_path
from skyfall_core.errors import SkyfallError
from skyfall_core.splat.model import PARAM_NAMES, GaussianModel

FORMAT_VERSION = "1"


class CheckpointError(SkyfallError):
    """A checkpoint file is missing, truncated or not a splat checkpoint."""


def save_checkpoint(
    path: str | Path,
    model: GaussianModel,
    extra: dict[str, Any] | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> Path:
    """Atomically write model parameters, optional optimizer moments and `extra`.

    `extra` values may be tensors (stored as tensors) or JSON-serialisable values.
    """
    extra = dict(extra or {})
    tensors: dict[str, Tensor] = {
        f"params.{name}": p.detach().cpu().contiguous() for name, p in model.params.items()
    }
    steps: dict[str, float] = {}
    for name, optimizer in (optimizers or {}).items():
        param = model.params[name]
        for key, value in optimizer.state.get(param, {}).items():
            if key == "step":
                steps[name] = float(value)
            elif isinstance(value, Tensor):
                tensors[f"optim.{name}.{key}"] = value.detach().cpu().contiguous()
    plain = {}
    for key, value in extra.items():
        if isinstance(value, Tensor):
            tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
        else:
            plain[key] = value
    metadata = {
        "skyfall_splat": FORMAT_VERSION,
        "sh_degree": str(model.sh_degree),
        "optim_steps": json.dumps(steps),
        "extra": json.dumps(plain),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"cannot read the checkpoint ({error})", path=path,
                              fix="resume from an earlier checkpoint of the job") from error
    if metadata.get("skyfall_splat") != FORMAT_VERSION:
        raise CheckpointError("not a Skyfall splat checkpoint (metadata skyfall_splat missing)",
                              path=path)
    return tensors, metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[GaussianModel, dict[str, Any]]:
    """Read a checkpoint: (model, extra). Restore optimizers with `restore_optimizers`."""
    path = Path(path)
    tensors, metadata = _read(path)
    params = {name: tensors[f"params.{name}"] for name in PARAM_NAMES}
    model = GaussianModel(params, sh_degree=int(metadata["sh_degree"])).to(device)
    extra: dict[str, Any] = json.loads(metadata.get("extra", "{}"))
    extra.update({key[6:]: value.to(device) for key, value in tensors.items()
                  if key.startswith("extra.")})
    return model, extra


def restore_optimizers(path: str | Path, model: GaussianModel,
                       optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Load the saved optimizer moments and step counters into `optimizers`, which must have
    been created for `model` (e.g. `model.create_optimizers()` on the loaded model)."""
    tensors, metadata = _read(Path(path))
    steps: dict[str, float] = json.loads(metadata.get("optim_steps", "{}"))
    for name, optimizer in optimizers.items():
        param = model.params[name]
        if optimizer.param_groups[0]["params"][0] is not param:
            raise ValueError(f"optimizer {name!r} does not optimise the model's {name!r}; "
                             "create the optimizers from the loaded model")
        prefix = f"optim.{name}."
        state: dict[str, Any] = {key[len(prefix):]: value.to(param.device)
                                 for key, value in tensors.items() if key.startswith(prefix)}
        if not state:
            continue
        if name in steps:
            # fused/capturable Adam keeps its step counter on the parameter's device
            state["step"] = torch.tensor(steps[name], dtype=torch.float32,
                                         device=param.device if _step_on_device(optimizer) else "cpu")
        optimizer.state[param] = state


def _step_on_device(optimizer: torch.optim.Optimizer) -> bool:
    defaults = optimizer.defaults
    return bool(defaults.get("fused") or defaults.get("capturable"))
