"""Load model configs: roofsim TOML presets, user TOML files, Hugging Face config.json files."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hardware import files
from workloads.model import MLAConfig, ModelConfig, MoEConfig
from workloads.ops import WorkloadError

_MODEL_KEYS = {
    "name", "full_name", "n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "ffn",
    "gated_mlp", "activation", "vocab", "tied_embeddings", "norm", "position", "max_seq",
    "attn_bias", "mlp_bias", "n_params_published", "source", "sliding_window", "sliding_layers",
    "attention_sinks", "fp8_block_scales",
}  # fmt: skip


def _fp8_blocks(cfg: dict) -> bool:
    """Whether a config.json's quantization_config is fp8 with weight block scales."""
    quant = cfg.get("quantization_config") or {}
    return quant.get("quant_method") == "fp8" and bool(quant.get("weight_block_size"))


def list_models() -> list[str]:
    return _slugs("")


def _slugs(kind: str) -> list[str]:
    """The preset slugs of ``kind`` ("": LLMs in ``workloads/presets``; "dit": its ``dit/``)."""
    folder = resources.files("workloads") / "presets"
    folder = folder / kind if kind else folder
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


@cache
def hf_ids(kind: str = "") -> dict[str, str]:
    """The preset each Hugging Face repo id (``org/name``) names: every preset lists the
    checkpoints of its architecture (``hf_ids``), so ``--model meta-llama/Llama-3.1-8B`` works
    offline (``kind`` "dit": the DiT presets, ``black-forest-labs/FLUX.1-dev``)."""
    folder = resources.files("workloads") / "presets"
    folder = folder / kind if kind else folder
    out: dict[str, str] = {}
    for slug in _slugs(kind):
        repos = tomllib.loads((folder / f"{slug}.toml").read_text()).get("hf_ids", [])
        if not isinstance(repos, list) or not all(isinstance(r, str) and "/" in r for r in repos):
            raise WorkloadError(f"model {slug!r}: hf_ids must be a list of 'org/name' repo ids")
        out.update({repo: slug for repo in repos})
    return out


#: the hub addresses a repo id may be written with
_HUB = ("https://", "http://", "www.", "huggingface.co/", "hf.co/")


def preset_slug(name: str, kind: str = "") -> str | None:
    """The preset of ``kind`` (``hf_ids``) a slug or a Hugging Face repo id names (any case;
    with or without the hub's address, or a ``/tree/<branch>`` tail), else None."""
    lowered = name.lower()
    if lowered in _slugs(kind):
        return lowered
    repo = lowered.strip("/")
    for prefix in _HUB:
        repo = repo.removeprefix(prefix)
    parts = repo.split("/")
    if len(parts) == 4 and parts[2] == "tree":  # the hub's org/name/tree/<branch>
        parts = parts[:2]
    if len(parts) != 2:  # a path with more parts is a path, not a repo id
        return None
    repo = "/".join(parts)
    return next((slug for r, slug in hf_ids(kind).items() if r.lower() == repo), None)


@cache
def load_model(name_or_path: str) -> ModelConfig:
    """A preset slug, a roofsim model TOML, or a Hugging Face ``config.json`` path."""
    path = Path(name_or_path)
    if files.exists(path) and not files.is_file(path):
        # a folder: a downloaded checkpoint's config.json, else the repo id it is named like
        if files.is_file(path / "config.json"):
            path = path / "config.json"
        elif (slug := preset_slug(name_or_path)) is not None:
            return load_model(slug)
    if path.suffix in (".toml", ".json") or files.exists(path):
        if not files.is_file(path):
            raise WorkloadError(f"--model: no file {name_or_path!r}")
        text = files.read_text(path, "--model")
        if path.suffix == ".json":
            try:
                return model_from_hf(json.loads(text), name=path.name.split(".")[0])
            except json.JSONDecodeError as exc:
                raise WorkloadError(f"{name_or_path}: malformed JSON: {exc}") from None
    else:
        slug = preset_slug(name_or_path)
        if slug is None:
            raise WorkloadError(
                f"--model: unknown model {name_or_path!r}; available: {', '.join(list_models())} "
                "(or a Hugging Face repo id one of them lists, `roofsim models --hf`; or a path "
                "to a model TOML or a Hugging Face config.json)"
            )
        text = (resources.files("workloads") / "presets" / f"{slug}.toml").read_text()
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


def _divides(where: str, hidden: Any, n_heads: Any) -> None:
    """The head dimension is hidden / heads only when the heads divide it (no silent floor)."""
    if isinstance(hidden, int) and isinstance(n_heads, int) and n_heads and hidden % n_heads:
        raise WorkloadError(
            f"{where}: the {n_heads} attention heads must divide the hidden size {hidden} "
            f"(or give head_dim)"
        )


def _subtable(raw: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    """``raw[key]`` when it is a table (None when absent); WorkloadError when it is not."""
    value = raw.get(key)
    if value is not None and not isinstance(value, dict):
        raise WorkloadError(f"model {name!r}: {key} must be a table ([{key}]), got {value!r}")
    return value


def model_from_dict(raw: dict[str, Any]) -> ModelConfig:
    """Build a ModelConfig from a roofsim model table (see docs/presets.md)."""
    name = str(raw.get("name", "custom"))
    fields = {k: v for k, v in raw.items() if k in _MODEL_KEYS}
    for required in ("n_layers", "hidden", "n_heads", "ffn", "vocab"):
        if required not in fields:
            raise WorkloadError(f"model {name!r}: missing field {required!r}")
    _counts(f"model {name!r}", fields, ("n_layers", "hidden", "n_heads", "ffn", "vocab",
                                        "n_kv_heads", "head_dim"))  # fmt: skip
    for required in ("n_layers", "hidden", "n_heads", "ffn", "vocab"):
        if fields[required] is None:
            raise WorkloadError(f"model {name!r}: {required} must be an integer >= 1, got None")
    fields.setdefault("n_kv_heads", fields["n_heads"])
    if "head_dim" not in fields:
        _divides(f"model {name!r}", fields["hidden"], fields["n_heads"])
        fields["head_dim"] = fields["hidden"] // fields["n_heads"]
    moe = _subtable(raw, "moe", name)
    if moe is not None:
        for key in ("n_experts", "top_k", "expert_ffn"):
            if key not in moe:
                raise WorkloadError(f"model {name!r}: [moe] needs {key!r}")
        fields["moe"] = MoEConfig(
            n_experts=moe["n_experts"],
            top_k=moe["top_k"],
            expert_ffn=moe["expert_ffn"],
            n_shared_experts=moe.get("n_shared_experts", 0),
            first_dense_layers=moe.get("first_dense_layers", 0),
            interleave=moe.get("interleave", 1),
            n_groups=moe.get("n_groups", 1),
            groups_per_token=moe.get("groups_per_token", 0),
            weight_format=moe.get("weight_format", ""),
        )
    mla = _subtable(raw, "mla", name)
    if mla is not None:
        missing = [k for k in MLAConfig.__dataclass_fields__ if k not in mla]
        if missing:
            raise WorkloadError(f"model {name!r}: [mla] needs {missing[0]!r}")
        fields["mla"] = MLAConfig(**{k: mla[k] for k in MLAConfig.__dataclass_fields__})
    try:
        return ModelConfig(**fields)
    except TypeError as exc:
        raise WorkloadError(f"model {name!r}: {exc}") from None


_ACT = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
    "relu2": "relu2",
}


#: the Hugging Face ``model_type``s roofsim reads, by family: Llama-style (gated MLP, RMSNorm,
#: RoPE) and the GPT-style ones whose MLP, norm, positions, biases and tying differ
LLAMA_STYLE = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
               "gemma", "gemma2", "gemma3_text", "phi3", "deepseek_v2", "deepseek_v3",
               "gpt_oss", "llama4_text")  # fmt: skip
GPT_STYLE = ("gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "mpt")
MODEL_TYPES = LLAMA_STYLE + GPT_STYLE


def _gpt_style(cfg: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """The fields of a GPT-style config (transformers' configuration_<type>.py key names and
    defaults): an ungated MLP, LayerNorm, and each family's positions, biases and tying."""
    g = cfg.get
    if kind in ("gpt2", "gptj"):
        hidden, layers, heads = g("n_embd", 768), g("n_layer", 12), g("n_head", 12)
        ffn = g("n_inner") or 4 * hidden
        act, vocab, max_seq = (
            g("activation_function", "gelu_new"),
            g("vocab_size", 50257),
            g("n_positions", 1024),
        )
        # GPT-2: learned positions, biases everywhere, tied; GPT-J: RoPE, no attention biases,
        # MLP biases, untied
        gpt2 = kind == "gpt2"
        return dict(n_layers=layers, hidden=hidden, n_heads=heads, ffn=ffn, vocab=vocab,
                    activation=act, max_seq=max_seq, position="learned" if gpt2 else "rope",
                    attn_bias=gpt2, mlp_bias=True,
                    tied_embeddings=bool(g("tie_word_embeddings", gpt2)))  # fmt: skip
    if kind == "gpt_neox":
        return dict(n_layers=g("num_hidden_layers"), hidden=g("hidden_size"),
                    n_heads=g("num_attention_heads"), ffn=g("intermediate_size"),
                    vocab=g("vocab_size"), activation=g("hidden_act", "gelu"),
                    max_seq=g("max_position_embeddings", 2048), position="rope",
                    attn_bias=bool(g("attention_bias", True)), mlp_bias=True,
                    tied_embeddings=bool(g("tie_word_embeddings", False)))  # fmt: skip
    if kind == "opt":
        if g("word_embed_proj_dim", g("hidden_size")) != g("hidden_size"):
            raise WorkloadError(
                f"config.json {name!r}: OPT with word_embed_proj_dim != hidden_size (a projection "
                "around the embeddings) is not modelled; use a roofsim model TOML"
            )
        return dict(n_layers=g("num_hidden_layers"), hidden=g("hidden_size"),
                    n_heads=g("num_attention_heads"), ffn=g("ffn_dim"), vocab=g("vocab_size"),
                    activation=g("activation_function", "relu"),
                    max_seq=g("max_position_embeddings", 2048), position="learned",
                    attn_bias=bool(g("enable_bias", True)), mlp_bias=bool(g("enable_bias", True)),
                    tied_embeddings=bool(g("tie_word_embeddings", True)))  # fmt: skip
    if kind == "bloom":
        hidden = g("hidden_size") or g("n_embed")
        return dict(n_layers=g("n_layer"), hidden=hidden, n_heads=g("n_head"), ffn=4 * hidden,
                    vocab=g("vocab_size"), activation="gelu", max_seq=g("seq_length", 2048),
                    position="alibi", attn_bias=True, mlp_bias=True,
                    tied_embeddings=bool(g("tie_word_embeddings", True)))  # fmt: skip
    if kind == "falcon":
        heads = g("num_attention_heads")
        if g("new_decoder_architecture"):
            kv = g("num_kv_heads") or heads
        else:
            kv = 1 if g("multi_query", True) else heads
        hidden = g("hidden_size")
        return dict(n_layers=g("num_hidden_layers"), hidden=hidden, n_heads=heads, n_kv_heads=kv,
                    ffn=g("ffn_hidden_size") or 4 * hidden, vocab=g("vocab_size"),
                    activation=g("activation", "gelu"),
                    max_seq=g("max_position_embeddings", 2048),
                    position="alibi" if g("alibi") else "rope", attn_bias=bool(g("bias")),
                    mlp_bias=bool(g("bias")),
                    tied_embeddings=bool(g("tie_word_embeddings", True)))  # fmt: skip
    # mpt
    d = g("d_model")
    return dict(n_layers=g("n_layers"), hidden=d, n_heads=g("n_heads"),
                ffn=int(g("expansion_ratio", 4) * d), vocab=g("vocab_size"), activation="gelu",
                max_seq=g("max_seq_len", 2048),
                position="alibi" if (g("attn_config") or {}).get("alibi", False) else "learned",
                attn_bias=not g("no_bias", False), mlp_bias=not g("no_bias", False),
                tied_embeddings=True)  # fmt: skip


#: the config class defaults of model types whose released config.json files omit fields (the
#: text_config of a Gemma 3 checkpoint lists only what differs from them): transformers'
#: Gemma3TextConfig.__init__ (models/gemma3/configuration_gemma3.py)
_HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": dict(vocab_size=262_208, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                        head_dim=256, hidden_activation="gelu_pytorch_tanh",
                        max_position_embeddings=131_072, tie_word_embeddings=True,
                        sliding_window=4096, sliding_window_pattern=6, rms_norm_eps=1e-6),
    # transformers Llama4TextConfig (models/llama4/configuration_llama4.py): Llama 4 Scout's text
    # model (meta-llama/Llama-4-Scout-17B-16E)
    "llama4_text": dict(vocab_size=202_048, hidden_size=5120, intermediate_size=8192,
                        intermediate_size_mlp=16384, num_hidden_layers=48,
                        num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                        hidden_act="silu", max_position_embeddings=4096 * 32,
                        tie_word_embeddings=False, num_experts_per_tok=1, num_local_experts=16,
                        interleave_moe_layer_step=1, no_rope_layer_interval=4,
                        attention_chunk_size=8192, rms_norm_eps=1e-5),
}  # fmt: skip


def model_from_hf(cfg: dict[str, Any], name: str = "hf-model") -> ModelConfig:
    """Map a Hugging Face ``config.json`` of one of ``MODEL_TYPES`` (its ``model_type`` key;
    a config without one is read as Llama-style)."""
    if not isinstance(cfg, dict):
        raise WorkloadError(
            f"config.json {name!r}: must be a JSON object of fields, got {type(cfg).__name__}"
        )
    kind = str(cfg.get("model_type", "llama"))
    text = cfg.get("text_config")
    if kind not in MODEL_TYPES and isinstance(text, dict):
        # a vision-language wrapper (Gemma 3, Llama 4, Mistral 3): its language model is the
        # text_config, whose own model_type says how to read it (and whose config class fills
        # the fields it omits, where _HF_DEFAULTS has that class's defaults); the vision tower,
        # which a text prompt never runs, is not modelled
        inner = str(text.get("model_type", "llama"))
        if inner not in MODEL_TYPES:
            raise WorkloadError(
                f"config.json {name!r}: model_type {kind!r} wraps a text model of model_type "
                f"{inner!r}, which is not supported; supported: {', '.join(MODEL_TYPES)} (or "
                "write a roofsim model TOML, docs/presets.md)"
            )
        model = model_from_hf({"model_type": inner, **text}, f"{name} (its text_config)")
        return replace(model, name=name, source=f"{model.source}: the text model of a {kind} "
                                                "config (vision tower not modelled)")  # fmt: skip
    if kind not in MODEL_TYPES:
        raise WorkloadError(
            f"config.json {name!r}: model_type {kind!r} is not supported; supported: "
            f"{', '.join(MODEL_TYPES)} (or write a roofsim model TOML, docs/presets.md)"
        )
    cfg = {**_HF_DEFAULTS.get(kind, {}), **cfg}
    _counts(f"config.json {name!r}", cfg, ("hidden_size", "num_attention_heads",
            "num_hidden_layers", "intermediate_size", "vocab_size", "num_key_value_heads",
            "head_dim", "n_embd", "n_layer", "n_head", "n_inner", "ffn_dim", "d_model",
            "n_layers", "n_heads"))  # fmt: skip
    try:
        return _from_hf(cfg, kind, name)
    except WorkloadError:
        raise
    except KeyError as exc:
        raise WorkloadError(f"config.json {name!r}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        # a field of the wrong type (a string, a list, null) met the arithmetic of the mapping
        raise WorkloadError(
            f"config.json {name!r}: a field has the wrong type or value ({exc}); the size "
            "fields must be integers >= 1"
        ) from None


def _sliding(cfg: dict[str, Any], kind: str) -> dict[str, int]:
    """(sliding_window, sliding_layers) of a config, as transformers builds its layers: the
    ``layer_types`` list where given (gpt-oss, Gemma 3 and newer configs); else Mistral's window
    (and Phi-3's) on every layer, Gemma 2's on every second (``is_sliding = not layer_idx % 2``),
    Gemma 3's on all but every ``sliding_window_pattern``-th; Qwen2/3's only with
    ``use_sliding_window`` (off in their released configs), from layer ``max_window_layers``."""
    n = cfg["num_hidden_layers"]
    if kind == "llama4_text":
        # chunked local attention on the RoPE layers (transformers Llama4TextConfig: layer_types
        # "chunked_attention" where no_rope_layers is 1, by default all but every
        # no_rope_layer_interval-th layer), costed as a sliding window of the chunk: the same
        # keys up to a chunk of context; beyond it a query reads the keys of its own chunk (on
        # average half of one), the window a whole chunk's
        chunk = cfg.get("attention_chunk_size") or 0
        types = cfg.get("layer_types")
        if isinstance(types, list) and types:  # given: it decides (as in transformers)
            layers = sum(t == "chunked_attention" for t in types)
        else:
            rope = cfg.get("no_rope_layers") or [
                int((i + 1) % (cfg.get("no_rope_layer_interval") or 4) != 0) for i in range(n)
            ]
            layers = sum(1 for r in rope if r)
        return {"sliding_window": int(chunk), "sliding_layers": layers} if chunk and layers else {}
    window = cfg.get("sliding_window") or 0
    if not window:
        return {}
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        layers = sum(t == "sliding_attention" for t in types)
    elif kind in ("mistral", "phi3"):  # every layer (Phi-3-mini-4k: 2047)
        layers = n
    elif kind == "gemma2":
        layers = (n + 1) // 2
    elif kind == "gemma3_text":
        pattern = cfg.get("sliding_window_pattern") or 6
        layers = n - n // pattern
    elif kind.startswith("qwen") and cfg.get("use_sliding_window"):
        # transformers' Qwen2/3 layers: sliding from layer max_window_layers on
        # (transformers' Qwen2Config default max_window_layers 28)
        window_from = cfg.get("max_window_layers")
        layers = max(0, n - int(28 if window_from is None else window_from))
    else:
        return {}
    return {"sliding_window": int(window), "sliding_layers": layers} if layers else {}


def _from_hf(cfg: dict[str, Any], kind: str, name: str) -> ModelConfig:
    if kind in GPT_STYLE:
        fields = _gpt_style(cfg, kind, name)
        missing = [k for k, v in fields.items() if v is None]
        if missing:
            raise WorkloadError(f"config.json {name!r}: missing the {kind} key for {missing[0]!r}")
        fields["activation"] = _ACT.get(str(fields["activation"]), "gelu")
        fields.setdefault("n_kv_heads", fields["n_heads"])
        if fields["hidden"] % fields["n_heads"]:
            raise WorkloadError(
                f"config.json {name!r}: the {fields['n_heads']} heads must divide the hidden "
                f"size {fields['hidden']}"
            )
        return ModelConfig(name=name, full_name=str(cfg.get("_name_or_path") or kind),
                           head_dim=fields["hidden"] // fields["n_heads"], gated_mlp=False,
                           norm="layernorm", source=f"Hugging Face config.json ({kind})",
                           **fields)  # fmt: skip
    try:
        hidden = cfg["hidden_size"]
        n_heads = cfg["num_attention_heads"]
        act = cfg.get("hidden_act", cfg.get("hidden_activation", "silu"))
        fields: dict[str, Any] = dict(
            name=name,
            full_name=str(cfg.get("_name_or_path") or kind),
            n_layers=cfg["num_hidden_layers"],
            hidden=hidden,
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            head_dim=cfg.get("head_dim")
            or (_divides(f"config.json {name!r}", hidden, n_heads) or hidden // n_heads),
            ffn=cfg["intermediate_size"],
            gated_mlp=True,
            activation=_ACT.get(str(act), "silu"),
            vocab=cfg["vocab_size"],
            # Gemma ties its embeddings by default (GemmaConfig tie_word_embeddings=True)
            tied_embeddings=bool(cfg.get("tie_word_embeddings", kind.startswith("gemma"))),
            norm="rmsnorm" if ("rms_norm_eps" in cfg or kind != "llama") else "layernorm",
            position="rope",
            max_seq=cfg.get("max_position_embeddings", 4096),
            attn_bias=bool(cfg.get("attention_bias", kind in ("qwen2", "qwen2_moe"))),
            # gpt-oss's experts carry biases (GptOssExperts gate_up_proj_bias, down_proj_bias)
            mlp_bias=kind == "gpt_oss",
            # gpt-oss's attention has a learned sink per head (GptOssAttention.sinks)
            attention_sinks=kind == "gpt_oss",
            # an fp8 checkpoint with block scales (DeepSeek-V3/R1, Qwen3-FP8: quant_method fp8,
            # weight_block_size [128, 128])
            fp8_block_scales=_fp8_blocks(cfg),
            source=f"Hugging Face config.json ({kind})",
            **_sliding(cfg, kind),
        )
        if kind == "llama4_text":
            # every interleave_moe_layer_step-th layer is MoE (routed experts of
            # intermediate_size plus one shared expert of the same size); the others are dense
            # MLPs of intermediate_size_mlp (transformers Llama4TextDecoderLayer, Llama4TextMoe)
            moe_layers = cfg.get("moe_layers")
            step = int(cfg.get("interleave_moe_layer_step") or 1)
            n = cfg["num_hidden_layers"]
            if moe_layers is not None and sorted(moe_layers) != list(range(step - 1, n, step)):
                raise WorkloadError(
                    f"config.json {name!r}: moe_layers {moe_layers} are not every "
                    f"interleave_moe_layer_step-th layer ({step}); use a roofsim model TOML"
                )
            fields["ffn"] = cfg["intermediate_size_mlp"]
            fields["moe"] = MoEConfig(
                n_experts=cfg["num_local_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=cfg["intermediate_size"],
                n_shared_experts=1,
                interleave=step,
            )
        elif "num_local_experts" in cfg:  # Mixtral, gpt-oss
            quant = cfg.get("quantization_config") or {}
            fields["moe"] = MoEConfig(
                n_experts=cfg["num_local_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=cfg["intermediate_size"],
                # gpt-oss: MXFP4 experts, attention/router/embeddings kept 16-bit
                # (quantization_config.modules_to_not_convert)
                weight_format="mxfp4" if quant.get("quant_method") == "mxfp4" else "",
            )
        elif kind in ("qwen2_moe", "qwen3_moe"):  # every layer MoE (decoder_sparse_step 1)
            expert = cfg["moe_intermediate_size"]
            shared = cfg.get("shared_expert_intermediate_size") or 0
            fields["moe"] = MoEConfig(
                n_experts=cfg["num_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=expert,
                n_shared_experts=round(shared / expert),  # the shared expert as expert-sized units
            )
        elif "n_routed_experts" in cfg:  # DeepSeek-V2/V3
            fields["moe"] = MoEConfig(
                n_experts=cfg["n_routed_experts"],
                top_k=cfg["num_experts_per_tok"],
                expert_ffn=cfg["moe_intermediate_size"],
                n_shared_experts=cfg.get("n_shared_experts") or 0,
                first_dense_layers=cfg.get("first_k_dense_replace", 0),
                n_groups=cfg.get("n_group") or 1,
                groups_per_token=cfg.get("topk_group") or 0,
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
