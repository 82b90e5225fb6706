"""Workflow files: a YAML list of scenes run with shared parameters, unattended and idempotent.

Each entry maps onto ``RunConfig`` (the same model as the CLI flags). Scenes whose output folder
already holds a finished run with the same inputs are skipped, so a scheduled rerun only
processes new or changed scenes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from geoseg.config import ClusterConfig, RunConfig, read_yaml_mapping
from geoseg.errors import GeosegError


class WorkflowError(GeosegError):
    """A workflow file is missing or invalid."""


class Workflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    out_root: Path
    scenes: list[Path]
    parameters: dict[str, Any] = {}
    cluster: ClusterConfig = ClusterConfig()

    def runs(self) -> list[RunConfig]:
        return [
            RunConfig(scene=scene, out=self.out_root / scene.stem, cluster=self.cluster, **self.parameters)
            for scene in self.scenes
        ]


def load_workflow(path: str | Path) -> tuple[Workflow, list[RunConfig]]:
    """Parse ``path``; relative out_root, scenes and parameters.model are relative to its folder."""
    path = Path(path)
    raw = read_yaml_mapping(path, WorkflowError, "name, out_root and scenes")
    if "aoi" in raw:
        raise WorkflowError(f"{path}: a monitoring workflow (it has an aoi); run it with geoseg monitor")
    base = path.resolve().parent
    for key in ("out_root",):
        if key in raw:
            raw[key] = str(base / raw[key])
    raw["scenes"] = [str(base / s) for s in raw.get("scenes", [])]
    params = raw.get("parameters")
    if isinstance(params, dict):

        def resolve(m: object) -> object:  # baselines are not files
            return (
                str(base / m) if isinstance(m, str) and not m.strip().lower().startswith("baseline:") else m
            )

        if "model" in params:
            params["model"] = resolve(params["model"])
        if isinstance(params.get("models"), list):
            params["models"] = [resolve(m) for m in params["models"]]
    try:
        wf = Workflow.model_validate(raw)
        return wf, wf.runs()
    except ValidationError as exc:
        err = exc.errors()[0]
        raise WorkflowError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
