"""All of stylebatch's settings, read from the environment in one place.

Every setting is documented in ``local.settings.json.example`` and the README; the defaults of
what the nodes are told come from ``shared/contract.py``. A Function app's settings are its
environment (App Settings in Azure, ``local.settings.json`` under ``func start``), so the app's
functions ask ``get_settings()``, which reads it once; no other code reads ``os.environ`` for a
setting. A host that runs the app inside its own process (``stylebatch run/serve``, the tests)
builds a ``Settings`` and installs it (``install_settings``) rather than writing the
environment; code below the functions gets its ``Settings`` passed in.

    python -c "from shared.settings import get_settings; print(get_settings())"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from shared.contract import MODEL_KINDS, SCORING, InputLimits

# Azurite's published development account. Not a secret: it is the same on every machine.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Settings(InputLimits):
    # --- input limits: the fields of InputLimits (shared/contract.py), MAX_INPUT_BYTES,
    # MAX_DURATION_S, MAX_WIDTH, MAX_HEIGHT, MAX_FRAMES; bad input fails fast with the limit.

    # --- storage ---------------------------------------------------------------------------
    # Local/dev: a connection string (Azurite) in STORAGE. Azure: STORAGE__blobServiceUri (or
    # STORAGE_ACCOUNT_URL); the app then uses its managed identity (DefaultAzureCredential).
    storage_connection_string: str = ""
    storage_account_url: str = ""

    # --- jobs --------------------------------------------------------------------------------
    default_style: str = "swirl"
    default_model: str = "gatys"  # gatys | fast
    frames_per_chunk: int = 48
    max_chunks: int = 10_000
    max_chunk_attempts: int = 3  # per chunk, counting the first try
    poll_interval_s: float = 10.0
    # Replays grow with history; continue_as_new after this many monitor rounds.
    monitor_rounds_per_generation: int = 50
    keep_work_on_failure: bool = True

    # --- scoring (what the chunk tasks are told) -------------------------------------------------
    # Defaults and meanings: shared/contract.py (ScoringDefaults).
    scoring_max_side: int = SCORING.max_side
    gatys_steps: int = SCORING.gatys_steps
    gatys_warm_steps: int = SCORING.gatys_warm_steps
    train_steps: int = SCORING.train_steps
    # Seams and flicker: a chunk task first scores this many of the previous chunk's last frames
    # and drops them (0 = chunks start cold); the temporal stage steadies every model's output.
    lead_in_frames: int = SCORING.lead_in_frames
    temporal_stage: bool = True
    temporal_weight: float = SCORING.temporal_weight
    temporal_weight_fast: float = SCORING.temporal_weight_fast
    chroma_sigma: float = SCORING.chroma_sigma  # colour blur before a 4:2:0 encode; 0 = off
    output_codec: str = SCORING.codec
    output_crf: int = SCORING.crf
    output_preset: str = SCORING.preset
    output_pix_fmt: str = SCORING.pix_fmt

    # --- batch ---------------------------------------------------------------------------------
    batch_backend: str = "local"  # local | azure
    local_batch_slots: int = 2
    task_max_wall_s: int = 3600
    # Runs of a retryably failed task repeated in place by the local backend only. Azure Batch
    # cannot exempt exit code 2 from its own retries, so Azure tasks get none and the
    # orchestrator's new attempts (MAX_CHUNK_ATTEMPTS) are the retries there.
    task_max_retries: int = 2
    batch_account_url: str = ""
    batch_account_name: str = ""
    batch_account_key: str = ""  # only for emulators/tests; Azure uses managed identity
    batch_pool_id: str = "stylebatch-gpu"
    batch_app_package: str = "stylebatch"  # application package holding scoring/ + shared/
    batch_app_version: str = ""
    # A task's SAS URLs live its own wall-clock limit (TASK_MAX_WALL_S) plus this: the wait for
    # a node and clock skew. A task that waits longer fails its download and is resubmitted.
    sas_slack_minutes: int = 15
    # --- azure batch pool, chunk sizing and estimates (docs/azure-batch.md, shared/plan.py) -------
    batch_vm_size: str = "Standard_NC4as_T4_v3"  # the pool's VM size: sizing and cost estimates
    batch_max_nodes: int = 4  # the pool's autoscale cap: wall-time estimates
    batch_spot: bool = False  # the pool runs Spot nodes: cost estimates
    chunk_target_seconds: float = 0.0  # >0: auto-size chunks to this many task seconds (120)
    seconds_per_frame: float = 0.0  # measured seconds per frame on the pool; 0 = speed table
    batch_task_retention_minutes: int = 60  # a finished task's files stay on the node this long
    batch_progress_peek_tasks: int = 16  # running tasks whose stdout is read for frame progress
    batch_job_max_wall_hours: float = 24.0  # Batch ends a job left running this long (orphans)

    # --- callers (shared/callers.py) -----------------------------------------------------------
    # In Azure, App Service authentication (Entra ID) names the caller of every API request.
    # Locally, with no sign-in in front of the app, requests without a principal run as this
    # fixed identity; empty = such requests are refused (401).
    local_caller: str = ""
    admin_role: str = "stylebatch.admin"  # app role (token `roles` claim) that sees every job
    max_active_jobs_per_caller: int = 5  # unfinished API-started jobs one caller may have

    def input_limits(self) -> InputLimits:
        """What input is accepted (MAX_INPUT_BYTES, MAX_DURATION_S, MAX_WIDTH, …)."""
        return InputLimits(**{f.name: getattr(self, f.name) for f in fields(InputLimits)})

    def temporal_weight_for(self, model: str) -> float:
        """The temporal stage's blend weight for a model (TEMPORAL_WEIGHT_FAST for fast)."""
        return self.temporal_weight_fast if model == "fast" else self.temporal_weight


# Environment variable name for every field (upper-case field name), plus aliases.
_ALIASES = {
    # `STORAGE` is also the blob trigger's connection name: a connection string locally, or
    # identity-based `STORAGE__blobServiceUri` (+ `STORAGE__credential`, `STORAGE__clientId`).
    "storage_connection_string": ("STORAGE", "STORAGE_CONNECTION_STRING"),
    "storage_account_url": ("STORAGE__blobServiceUri", "STORAGE_ACCOUNT_URL"),
}

STORAGE_SETTING_NAMES = tuple(n for names in _ALIASES.values() for n in names)


def _coerce(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(float(raw))
    if isinstance(default, float):
        return float(raw)
    return raw


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping (``os.environ`` by default).

    Raises ``ValueError`` naming the variable when a value cannot be parsed.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        names = _ALIASES.get(f.name, (f.name.upper(),))
        for name in names:
            if env.get(name):
                default = getattr(Settings, f.name)
                try:
                    values[f.name] = _coerce(env[name], default)
                except ValueError as exc:
                    raise ValueError(f"setting {name}={env[name]!r} is not valid: {exc}") from exc
                break
    settings = Settings(**values)
    validate_settings(settings)
    return settings


def validate_settings(s: Settings) -> None:
    if s.default_model not in MODEL_KINDS:
        raise ValueError(f"DEFAULT_MODEL must be gatys or fast, not {s.default_model!r}")
    if s.batch_backend not in ("local", "azure"):
        raise ValueError(f"BATCH_BACKEND must be local or azure, not {s.batch_backend!r}")
    if s.frames_per_chunk < 1:
        raise ValueError("FRAMES_PER_CHUNK must be at least 1")
    if s.max_chunk_attempts < 1:
        raise ValueError("MAX_CHUNK_ATTEMPTS must be at least 1")
    for name in ("temporal_weight", "temporal_weight_fast"):
        if not 0.0 <= getattr(s, name) < 1.0:
            raise ValueError(f"{name.upper()} must be at least 0 and below 1")
    if s.chroma_sigma < 0:
        raise ValueError("CHROMA_SIGMA must not be negative (0 turns the chroma step off)")
    if s.max_active_jobs_per_caller < 1:
        raise ValueError("MAX_ACTIVE_JOBS_PER_CALLER must be at least 1")
    if s.sas_slack_minutes < 0:
        raise ValueError("SAS_SLACK_MINUTES must not be negative")


class _ProcessSettings:
    """The settings of the Function app in this process: installed by a host, else read from
    the environment on first use."""

    def __init__(self) -> None:
        self.current: Settings | None = None


_process = _ProcessSettings()


def get_settings() -> Settings:
    """The app's settings: the installed ones, else read once from the environment."""
    if _process.current is None:
        _process.current = settings_from_env()
    return _process.current


def install_settings(settings: Settings | None) -> None:
    """Run the app in this process with ``settings`` (a local host); None: back to the
    environment's, read at the next ``get_settings()``."""
    if settings is not None:
        validate_settings(settings)
    _process.current = settings
