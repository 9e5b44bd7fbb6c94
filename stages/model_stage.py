"""The base of stages that call a model: which role they need, their identity, and the result cache.

A model stage names a role (caption, judge, embed); the pipeline attaches the model configured for
that role (``--model ROLE=PATH[@backend]`` or ``models:`` in the YAML). With no model for its role,
the stage is skipped and the run says so. The attached model's name and revision are part of the
stage's config hash, so changing the weights re-runs what they produced and nothing else, while the
model's path, backend and options are not: the same weights elsewhere give the same identity.

On Spark, the stage is pickled to executors with its ``ModelSpec`` only; the model itself is loaded
lazily, once per worker process (``models.registry``), and fed whole batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from medcurate.hashing import sha256_json
from medcurate.models.cache import ResultCache, result_cache
from medcurate.models.spec import ModelSpec
from medcurate.stages.base import GlobalStage, MapStage, StageContext


@dataclass
class UsesModel:
    """What a stage needs to be given a model: map stages (``ModelStage``) and global stages
    (``GlobalModelStage``, whose ``fit`` reads what a model stage wrote) alike. The pipeline attaches
    ``model`` to every stage of this kind, and skips (and names) one whose role has no model."""

    model: ModelSpec | None = None

    #: The role whose model this stage uses (a param ``role`` may point it at another).
    role: ClassVar[str]
    #: Whether the stage also runs (with less to do) when its role has no model.
    model_optional: ClassVar[bool] = False
    #: What the stage asks of an executor (Spark stage-level scheduling); CPU stages ask for nothing.
    resources: ClassVar[dict[str, float]] = {}

    @property
    def model_role(self) -> str:
        return str(self.params.get("role", self.role))

    @property
    def config_hash(self) -> str:
        identity = self.model.identity() if self.model else None
        return sha256_json(
            {"stage": self.name, "version": self.version, "params": dict(self.params), "model": identity}
        )[:16]

    def require_model(self) -> ModelSpec:
        if self.model is None:
            raise RuntimeError(f"stage {self.name!r} runs without a model for role {self.model_role!r}")
        return self.model

    def task_resources(self) -> dict[str, float]:
        """GPUs (and CPUs) one task needs: none without a model, nor for remote (HTTP) or CPU models."""
        model = self.model
        if model is None or model.backend == "http":
            return {}
        device = str(model.options.get("device", "auto"))
        if model.backend == "vllm" or device.startswith("cuda"):
            return {"gpu": float(model.options.get("gpus_per_task", 1))}
        return dict(self.resources)

    def cache(self, ctx: StageContext, task: str) -> ResultCache | None:
        """This model's results for ``task`` in the lake (None when the stage runs outside a lake)."""
        if ctx.lake_uri is None:
            return None
        model = self.require_model()
        return result_cache(ctx.lake_uri, f"{task}-{model.cache_namespace}")

    def lineage_model(self) -> dict[str, Any]:
        model = self.require_model()
        return {"model": model.ref, "backend": model.backend}


@dataclass
class ModelStage(UsesModel, MapStage):
    """A map stage that needs the model of ``role``; ``model`` is attached by the pipeline."""


@dataclass
class GlobalModelStage(UsesModel, GlobalStage):
    """A global stage that needs the model of ``role`` (its identity names the lake state it reads)."""
