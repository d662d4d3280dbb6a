"""Validated configuration: one ``config.toml`` with sections and named presets.

Every model forbids unknown keys, so a typo is an error that names the key. Presets are plain
named entries under ``[presets.<name>]``; each holds the settings of the cameras, stage 1 and
stage 2. A job stores the resolved (fully expanded) config it ran with.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from skyfall_core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class WorkspaceConfig(_Strict):
    root: Path = Path("workspace")  # jobs, job store and caches; relative to the config file


class CatalogConfig(_Strict):
    folders: list[Path] = [Path("sample_aoi/scenes")]  # scanned for scenes; relative to config
    # PNG/JPEG count only with an RPC sidecar; a .TIL is a mosaic of the tiles it lists
    extensions: list[str] = [".tif", ".tiff", ".ntf", ".nitf", ".jp2", ".til", ".png", ".jpg", ".jpeg"]


class DeviceConfig(_Strict):
    compute: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when present
    renderer: Literal["auto", "gsplat", "cpu", "torch"] = "auto"  # auto = gsplat on CUDA, else cpu
    threads: int = Field(0, ge=0)  # CPU threads for torch/OpenMP; 0 = all cores


class AOIConfig(_Strict):
    min_area_m2: float = Field(2_500.0, gt=0)  # 50 m x 50 m
    max_area_m2: float = Field(4_000_000.0, gt=0)  # 2 km x 2 km
    margin_m: float = Field(20.0, ge=0)  # crop margin around the AOI
    min_coverage: float = Field(0.95, gt=0, le=1)  # fraction of the AOI a usable scene must cover
    min_views: int = Field(3, ge=2)  # fewer usable views than this is an error
    height_margin_m: float = Field(10.0, ge=0)  # added above/below the AOI's height range
    dem_path: Path | None = None  # DEM GeoTIFF (GLO-30, SRTM) for the AOI's heights; relative to the config

    @model_validator(mode="after")
    def _areas_ordered(self) -> "AOIConfig":
        if self.min_area_m2 >= self.max_area_m2:
            raise ValueError(f"min_area_m2 ({self.min_area_m2}) must be below max_area_m2 ({self.max_area_m2})")
        return self


class ServerConfig(_Strict):
    address: str = "127.0.0.1"  # bind address of the Streamlit server
    port: int = Field(8501, ge=1, le=65535)
    max_upload_mb: int = Field(200, ge=1, le=4096)


class CameraSettings(_Strict):
    grid_xy: int = Field(11, ge=3)  # samples a side of the AOI volume for the pinhole fit
    grid_z: int = Field(7, ge=2)  # height samples of the AOI volume
    max_image_size: int = Field(1024, ge=64)  # crops larger than this are downsampled (pixels a side)
    bias_correction: bool = True  # tie points + per-view correction
    max_features: int = Field(6_000, ge=100)  # SIFT features a view for tie points
    min_tie_points: int = Field(30, ge=6)  # below this a view keeps its raw RPC


class Stage1Settings(_Strict):
    iterations: int = Field(3_000, ge=1)
    sh_degree: int = Field(1, ge=0, le=3)
    init_points: int = Field(20_000, ge=100)  # tie points + fill over the AOI volume
    max_gaussians: int = Field(200_000, ge=1_000)
    lambda_dssim: float = Field(0.2, ge=0, le=1)  # loss = (1-l)*L1 + l*D-SSIM
    opacity_reg: float = Field(10.0, ge=0)  # binary-entropy opacity regulariser weight
    opacity_reg_start: float = Field(0.5, ge=0, le=1)  # fraction of the iterations before it starts
    depth_prior_weight: float = Field(0.5, ge=0)  # 1 - Pearson on pseudo-camera depth
    flat_reg: float = Field(0.0, ge=0)  # per metre of mean smallest scale (flat splats; issue 14 ablation)
    depth_model: str = "depth-anything/Depth-Anything-V2-Small-hf"  # id or local path
    appearance_embedding_dim: int = Field(32, ge=1)
    densify_until: int = Field(1_500, ge=0)


class Stage2Settings(_Strict):
    elevations_deg: list[float] = [85.0, 75.0, 65.0, 55.0, 45.0]
    radii_m: list[float] = [300.0, 275.0, 275.0, 250.0, 250.0]  # for a 256 m AOI; scaled to the AOI
    fov_deg: float = Field(60.0, gt=1, lt=179)
    lookat_grid: int = Field(3, ge=1)  # n x n look-at points over the AOI
    azimuths: int = Field(6, ge=1)  # per look-at point, evenly spaced
    edits_per_view: int = Field(2, ge=1)
    iterations_per_round: int = Field(10_000, ge=1)
    image_size: int = Field(512, ge=32)
    refiner: Literal["flowedit", "sdedit", "classical"] = "flowedit"
    refiner_model: str = "black-forest-labs/FLUX.1-dev"  # id or local path (FLUX.1-dev, SD3, or an SD checkpoint)
    fallback_to_classical: bool = True  # no weights -> say so and use the classical refiner
    edited_view_probability: float = Field(0.75, ge=0, le=1)
    # FlowEdit (paper defaults)
    steps: int = Field(28, ge=1)
    n_min: int = Field(4, ge=0)
    n_max: int = Field(10, ge=0)
    n_avg: int = Field(1, ge=1)
    source_guidance: float = Field(1.5, ge=0)
    target_guidance: float = Field(5.5, ge=0)
    # the published Skyfall-GS pair (paper, supplement B.1, "Baseline")
    source_prompt: str = ("Satellite image of an urban area with modern and older buildings, roads, green "
                          "spaces. Some areas appear distorted, with blurring and warping artifacts.")
    target_prompt: str = ("Clear satellite image of an urban area with sharp buildings, smooth edges, "
                          "natural lighting, and well-defined textures.")
    # SDEdit
    sdedit_strength: float = Field(0.5, gt=0, le=1)
    # memory / speed
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    # FLUX.1-dev bf16: none ~36-38 GB GPU; model ~26-28 GB GPU (+35 GB RAM); sequential a few GB, 5-10x slower
    # auto: none when the weights fit the free GPU memory, else model, else sequential (measured at load)
    offload: Literal["auto", "none", "model", "sequential"] = "auto"
    batch_size: int = Field(1, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _flowedit_window(self) -> "Stage2Settings":
        if not self.n_min <= self.n_max <= self.steps:
            raise ValueError(f"FlowEdit needs n_min <= n_max <= steps, got n_min={self.n_min}, "
                             f"n_max={self.n_max}, steps={self.steps}")
        return self

    @model_validator(mode="after")
    def _schedule_lengths(self) -> "Stage2Settings":
        if len(self.elevations_deg) != len(self.radii_m):
            raise ValueError(f"elevations_deg has {len(self.elevations_deg)} entries but radii_m "
                             f"has {len(self.radii_m)}: give one radius per elevation")
        bad = [e for e in self.elevations_deg if not 0 < e <= 90]
        if bad:
            raise ValueError(f"elevations_deg must lie in (0, 90], got {bad}")
        return self


class JobsSettings(_Strict):
    """The ``[jobs]`` section: which runner starts jobs, and how many at a time."""

    runner: Literal["local", "ray"] = "local"  # local = one OS process a job on this machine; ray = a Ray task
    ray_address: str = "auto"  # "auto" = the running cluster (`ray start --head`), or "host:6379"
    max_concurrent: int = Field(1, ge=1)  # jobs running at once (local: 1 a GPU; ray: the cluster's GPUs)
    cancel_timeout_s: float = Field(60.0, gt=0)  # graceful cancel; then SIGTERM (local) / ray.cancel
    kill_grace_s: float = Field(10.0, gt=0)  # after SIGTERM, before SIGKILL of the process group
    num_gpus: float = Field(1.0, ge=0)  # Ray: GPUs a job reserves; 0 = a CPU-only job
    num_cpus: float = Field(1.0, gt=0)  # Ray: CPUs a job reserves
    store: Path | None = None  # the job store; None = <workspace>/jobs.sqlite (keep it on a local disk)


class Preset(_Strict):
    description: str = ""
    cameras: CameraSettings = CameraSettings()
    stage1: Stage1Settings = Stage1Settings()
    stage2: Stage2Settings = Stage2Settings()


class Config(_Strict):
    workspace: WorkspaceConfig = WorkspaceConfig()
    catalog: CatalogConfig = CatalogConfig()
    device: DeviceConfig = DeviceConfig()
    aoi: AOIConfig = AOIConfig()
    server: ServerConfig = ServerConfig()
    jobs: JobsSettings = JobsSettings()
    presets: dict[str, Preset] = {}
    source: Path | None = None  # the file this was read from (set by load_config)

    @model_validator(mode="before")
    @classmethod
    def _absolute_dem_path(cls, data: Any) -> Any:
        """[aoi] dem_path relative to the config file, made absolute (a job's copy then keeps it)."""
        if isinstance(data, dict) and data.get("source") and isinstance(data.get("aoi"), dict):
            dem = data["aoi"].get("dem_path")
            if dem and not Path(dem).is_absolute():
                data = {**data, "aoi": {**data["aoi"], "dem_path": str((Path(data["source"]).parent / dem).resolve())}}
        return data

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise ConfigError(f"unknown preset {name!r}", path=self.source,
                              fix=f"use one of: {', '.join(sorted(self.presets)) or '(none defined)'}")
        return self.presets[name]

    def resolve_path(self, p: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        base = self.source.parent if self.source else Path.cwd()
        return p if p.is_absolute() else (base / p).resolve()

    @property
    def workspace_root(self) -> Path:
        return self.resolve_path(self.workspace.root)

    @property
    def catalog_folders(self) -> list[Path]:
        return [self.resolve_path(p) for p in self.catalog.folders]

    def resolved(self, preset: str | None = None) -> dict[str, Any]:
        """JSON-able dict of the whole config (or of one preset with the global sections)."""
        data = self.model_dump(mode="json")
        if preset is not None:
            self.preset(preset)  # raises a ConfigError naming the known presets
            data["presets"] = {preset: data["presets"][preset]}
        return data


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            got = err.get("input")
            lines.append(f"bad value for '{key}': {err['msg']} (got {got!r})")
    return "; ".join(lines)


def config_from_dict(data: dict[str, Any], *, source: Path | None = None) -> Config:
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc), path=source,
                          fix="correct or remove the key (see the comments in the shipped config.toml)") from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate ``config.toml`` (``$SKYFALL_CONFIG``, else the repository's)."""
    path = Path(path or os.environ.get("SKYFALL_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path,
                          fix="pass --config PATH or set SKYFALL_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", path=path, fix="correct the TOML syntax") from None
    return config_from_dict(data, source=path)


# ------------------------------------------------------------------------------ overrides
PRESET_SECTIONS = ("description", "cameras", "stage1", "stage2")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is JSON when it parses, else a string."""
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value", fix="write e.g. stage2.elevations_deg=[80,60,40]")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(resolved: dict[str, Any], preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A job's resolved config: ``resolved`` (:meth:`Config.resolved` of ``preset``) with dotted
    ``overrides`` applied (``stage2.elevations_deg`` → the preset's section; ``device.threads`` →
    a global one) and validated by the config models. A bad override is a :class:`ConfigError`
    naming it, with the closest known key."""
    import copy

    data = copy.deepcopy(resolved)
    paths = {}
    for key, value in (overrides or {}).items():
        path = _override_path(key, preset)
        _set_existing(data, path, key, value)
        paths[key] = path
    try:
        model = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_override_error(exc, paths),
                          fix="correct the override (see the comments in config.toml for the allowed values)") from None
    return model.model_dump(mode="json")


def _override_path(key: str, preset: str) -> list[str]:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override key {key!r} is malformed",
                          fix="use dotted keys such as stage2.iterations_per_round")
    return ["presets", preset, *parts] if parts[0] in PRESET_SECTIONS else parts


def _set_existing(data: dict[str, Any], path: list[str], key: str, value: Any) -> None:
    import difflib

    node: Any = data
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"did you mean '{'.'.join(path[2 if path[0] == 'presets' else 0:i] + close)}'? " if close else ""
            raise ConfigError(f"override '{key}': unknown key",
                              fix=f"{hint}known keys here: {', '.join(known) or '(none)'}")
        if i == len(path) - 1:
            if isinstance(node[part], dict):
                raise ConfigError(f"override '{key}' names a whole section", fix="override one of its keys")
            node[part] = value
        else:
            node = node[part]


def _override_error(exc: ValidationError, paths: dict[str, list[str]]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        keys = [k for k, p in paths.items() if loc[:len(p)] == p or p[:len(loc)] == loc]
        where = ", ".join(f"'{k}'" for k in keys) if keys else f"'{'.'.join(loc)}'"
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if keys and loc[:len(paths[keys[0]])] == paths[keys[0]] else ""
        lines.append(f"override {where}: {msg}{got}" if keys else f"config key {where}: {msg}")
    return "; ".join(lines)
