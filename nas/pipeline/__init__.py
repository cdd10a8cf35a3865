"""The end-to-end pipeline: ``python -m nas.pipeline --config pipeline.yaml``."""

from nas.pipeline._clock import HEARTBEAT_S
from nas.pipeline._config import (
    BaselineStage,
    PipelineConfig,
    PruneStage,
    QuantizeStage,
    ReportStage,
    SearchStage,
    load_pipeline,
)
from nas.pipeline._run import STAGES, run_pipeline

__all__ = [
    "HEARTBEAT_S",
    "STAGES",
    "BaselineStage",
    "PipelineConfig",
    "PruneStage",
    "QuantizeStage",
    "ReportStage",
    "SearchStage",
    "load_pipeline",
    "run_pipeline",
]
