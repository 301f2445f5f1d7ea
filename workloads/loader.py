"""Load model configs: roofsim TOML presets, user TOML files, Hugging Face config.json files."""

from __future__ import annotations

import json
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from workloads.model import MLAConfig, ModelConfig, MoEConfig
from workloads.ops import WorkloadError

_MODEL_KEYS = {
    "name", "full_name", "n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "ffn",
    "gated_mlp", "activation", "vocab", "tied_embeddings", "norm", "position", "max_seq",
    "attn_bias", "mlp_bias", "n_params_published", "source",
}  # fmt: skip


def list_models() -> list[str]:
    folder = resources.files("workloads") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


@cache
def load_model(name_or_path: str) -> ModelConfig:
    """A preset slug, a roofsim model TOML, or a Hugging Face ``config.json`` path."""
    path = Path(name_or_path)
    if path.suffix in (".toml", ".json") or path.exists():
        if not path.is_file():
            raise WorkloadError(f"--model: no file {name_or_path!r}")
        text = path.read_text()
        if path.suffix == ".json":
            try:
                return model_from_hf(json.loads(text), name=path.name.split(".")[0])
            except json.JSONDecodeError as exc:
                raise WorkloadError(f"{name_or_path}: malformed JSON: {exc}") from None
    else:
        if name_or_path not in list_models():
            raise WorkloadError(
                f"--model: unknown model {name_or_path!r}; available: {', '.join(list_models())} "
                "(or a path to a model TOML or a Hugging Face config.json)"
            )
        text = (resources.files("workloads") / "presets" / f"{name_or_path}.toml").read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{name_or_path}: malformed TOML: {exc}") from None
    return model_from_dict(raw)


def _counts(where: str, table: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Each of ``keys`` given in ``table`` must be an integer >= 1 (WorkloadError naming it)."""
    for key in keys:
        if table.get(key) is not None:  # null: absent (Hugging Face configs write both)
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise WorkloadError(f"{where}: {key} must be an integer >= 1, got {v!r}")


def model_from_dict(raw: dict[str, Any]) -> ModelConfig:
    """Build a ModelConfig from a roofsim model table (see docs/presets.md)."""
    name = str(raw.get("name", "custom"))
    fields = {k: v for k, v in raw.items() if k in _MODEL_KEYS}
    for required in ("n_layers", "hidden", "n_heads", "ffn", "vocab"):
        if required not in fields:
            raise WorkloadError(f"model {name!r}: missing field {required!r}")
    _counts(f"model {name!r}", fields, ("n_layers", "hidden", "n_heads", "ffn", "vocab",
                                        "n_kv_heads", "head_dim"))  # fmt: skip
    fields.setdefault("n_kv_heads", fields["n_heads"])
    fields.setdefault("head_dim", fields["hidden"] // fields["n_heads"])
    moe = raw.get("moe")
    if moe is not None:
        fields["moe"] = MoEConfig(
            n_experts=moe["n_experts"],
            top_k=moe["top_k"],
            expert_ffn=moe["expert_ffn"],
            n_shared_experts=moe.get("n_shared_experts", 0),
            first_dense_layers=moe.get("first_dense_layers", 0),
        )
    mla = raw.get("mla")
    if mla is not None:
        fields["mla"] = MLAConfig(**{k: mla[k] for k in MLAConfig.__dataclass_fields__ if k in mla})
    try:
        return ModelConfig(**fields)
    except TypeError as exc:
        raise WorkloadError(f"model {name!r}: {exc}") from None


_ACT = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu",
    "relu": "relu",
    "relu2": "relu2",
}


def model_from_hf(cfg: dict[str, Any], name: str = "hf-model") -> ModelConfig:
    """Map a Hugging Face ``config.json`` (Llama, Mistral, Mixtral, Qwen2, DeepSeek-V3 families)."""
    if not isinstance(cfg, dict):
        raise WorkloadError(
            f"config.json {name!r}: must be a JSON object of fields, got {type(cfg).__name__}"
        )
    _counts(f"config.json {name!r}", cfg, ("hidden_size", "num_attention_heads",
            "num_hidden_layers", "intermediate_size", "vocab_size", "num_key_value_heads",
            "head_dim"))  # fmt: skip
    try:
        hidden = cfg["hidden_size"]
        n_heads = cfg["num_attention_heads"]
        fields: dict[str, Any] = dict(
            name=name,
            full_name=str(cfg.get("_name_or_path") or cfg.get("model_type", name)),
            n_layers=cfg["num_hidden_layers"],
            hidden=hidden,
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            head_dim=cfg.get("head_dim") or hidden // n_heads,
            ffn=cfg["intermediate_size"],
            gated_mlp=True,
            activation=_ACT.get(str(cfg.get("hidden_act", "silu")), "silu"),
            vocab=cfg["vocab_size"],
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            norm="rmsnorm" if "rms_norm_eps" in cfg else "layernorm",
            position="rope",
            max_seq=cfg.get("max_position_embeddings", 4096),
            attn_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
            source="Hugging Face config.json",
        )
        if "num_local_experts" in cfg:  # Mixtral
            fields["moe"] = MoEConfig(
                n_experts=cfg["num_local_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=cfg["intermediate_size"],
            )
        elif "n_routed_experts" in cfg:  # DeepSeek-V2/V3
            fields["moe"] = MoEConfig(
                n_experts=cfg["n_routed_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=cfg["moe_intermediate_size"],
                n_shared_experts=cfg.get("n_shared_experts") or 0,
                first_dense_layers=cfg.get("first_k_dense_replace", 0),
            )
        if "kv_lora_rank" in cfg:
            fields["mla"] = MLAConfig(
                q_lora_rank=cfg.get("q_lora_rank") or 0,
                kv_lora_rank=cfg["kv_lora_rank"],
                qk_nope_head_dim=cfg["qk_nope_head_dim"],
                qk_rope_head_dim=cfg["qk_rope_head_dim"],
                v_head_dim=cfg["v_head_dim"],
            )
            fields["head_dim"] = cfg["v_head_dim"]
    except KeyError as exc:
        raise WorkloadError(f"config.json {name!r}: missing key {exc.args[0]!r}") from None
    return ModelConfig(**fields)
