"""Workloads: model configs and presets, workload descriptors, lowering to ops."""

from workloads.llm import Decode, MemoryNeed, OpGraph, Prefill
from workloads.loader import list_models, load_model, model_from_dict, model_from_hf
from workloads.model import MLAConfig, ModelConfig, MoEConfig
from workloads.ops import Attention, Collective, Gemm, Op, OpKind, Role, WorkloadError

__all__ = [
    "Attention",
    "Collective",
    "Decode",
    "Gemm",
    "MLAConfig",
    "MemoryNeed",
    "ModelConfig",
    "MoEConfig",
    "Op",
    "OpGraph",
    "OpKind",
    "Prefill",
    "Role",
    "WorkloadError",
    "list_models",
    "load_model",
    "model_from_dict",
    "model_from_hf",
]
