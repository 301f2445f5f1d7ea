"""Diffusers transformer ``config.json`` files as DiT models (Flux, SD3, PixArt, CogVideoX,
HunyuanVideo, Wan).

A diffusers pipeline keeps its transformer, VAE and text encoders in separate folders; the
transformer's ``config.json`` (its ``_class_name`` and the keys of that class's ``__init__``)
gives the denoiser's shape: blocks, heads, head width, MLP width, patch, latent channels and the
text-conditioning width. What it does not carry (the VAE's compression and decoder cost, the
text encoder, the pipeline's default resolution and steps) is taken from the roofsim preset of
the same family, named in ``DiTConfig.source``.

Key names follow huggingface/diffusers ``src/diffusers/models/transformers/``:
``pixart_transformer_2d.py``, ``transformer_sd3.py``, ``transformer_flux.py``,
``cogvideox_transformer_3d.py``, ``transformer_hunyuan_video.py``, ``transformer_wan.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from workloads.dit import DiTConfig, load_dit
from workloads.ops import WorkloadError, check_ints

#: diffusers class -> (roofsim block, adaLN style, the preset whose VAE, text encoder and
#: pipeline defaults the transformer config does not carry)
CLASSES: dict[str, tuple[str, str, str]] = {
    "PixArtTransformer2DModel": ("cross", "single", "pixart-alpha"),
    "SD3Transformer2DModel": ("mmdit", "per-block", "sd3-medium"),
    "FluxTransformer2DModel": ("hybrid", "per-block", "flux-1-dev"),
    "CogVideoXTransformer3DModel": ("mmdit", "per-block", "cogvideox-5b"),
    "HunyuanVideoTransformer3DModel": ("hybrid", "per-block", "hunyuanvideo"),
    "WanTransformer3DModel": ("cross", "single", "wan2.1-14b"),
}

#: the qk_norm key of SD3, HunyuanVideo and Wan configs -> roofsim's DiTConfig.qk_norm
_QK_NORMS = {None: "none", "rms_norm": "rms", "rms_norm_across_heads": "rms",
             "layer_norm": "layer"}  # fmt: skip


def _int(cfg: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = cfg.get(key, default)
    check_ints(where, **{key: value})
    return value  # type: ignore[return-value]


def dit_from_diffusers(cfg: Any, name: str = "diffusers-model") -> DiTConfig:
    """A DiTConfig from a diffusers transformer ``config.json`` (a dict) of one of ``CLASSES``."""
    where = f"config.json {name!r}"
    if not isinstance(cfg, dict):
        raise WorkloadError(f"{where}: must be a JSON object of fields, got {type(cfg).__name__}")
    cls = cfg.get("_class_name")
    if cls not in CLASSES:
        raise WorkloadError(
            f"{where}: _class_name {cls!r} is not a diffusers transformer roofsim reads; "
            f"supported: {', '.join(CLASSES)} (or write a roofsim DiT TOML, docs/presets.md)"
        )
    block, adaln, family = CLASSES[cls]
    base = load_dit(family)
    heads = _int(cfg, "num_attention_heads", where)
    head_dim = _int(cfg, "attention_head_dim", where)
    hidden = heads * head_dim
    fields: dict[str, Any] = dict(
        name=name,
        full_name=f"{cls} ({name})",
        n_layers=_int(cfg, "num_layers", where),
        n_single_layers=0,
        hidden=hidden,
        n_heads=heads,
        head_dim=head_dim,
        mlp_ratio=4.0,  # FeedForward(dim, mult=4) unless the class says otherwise (below)
        gated_mlp=False,
        block=block,
        adaln=adaln,
        adaln_dim=0,
        shared_text_weights=False,
        in_channels=_int(cfg, "in_channels", where),
        n_params_published=None,
        source=(
            f"diffusers {cls} config.json; VAE, text encoder and pipeline defaults from the "
            f"roofsim preset {family!r}"
        ),
    )
    patch = cfg.get("patch_size", 2)
    if isinstance(patch, list | tuple):  # Wan: (t, h, w)
        if len(patch) != 3 or patch[1] != patch[2]:
            raise WorkloadError(f"{where}: patch_size must be [t, p, p], got {patch!r}")
        fields["patch_t"], patch = _int({"t": patch[0]}, "t", where), patch[1]
    fields["patch"] = _int({"patch_size": patch}, "patch_size", where)
    if cls == "PixArtTransformer2DModel":
        fields["text_dim"] = _int(cfg, "caption_channels", where, 4096)
    elif cls == "SD3Transformer2DModel":
        fields["text_dim"] = _int(cfg, "joint_attention_dim", where, 4096)
    elif cls == "FluxTransformer2DModel":
        # the pipeline packs 2 x 2 latent patches into in_channels (64 = 16 x 4) with patch 1:
        # tokens and weights are those of a patch-2 model on the 16-channel latent
        fields["n_single_layers"] = _int(cfg, "num_single_layers", where, 38)
        fields["in_channels"] = max(1, fields["in_channels"] // 4)
        fields["patch"] = fields["patch"] * 2
        fields["text_dim"] = _int(cfg, "joint_attention_dim", where, 4096)
    elif cls == "CogVideoXTransformer3DModel":
        # joint text + video tokens through shared weights; expert adaLN from a time embedding
        fields["shared_text_weights"] = True
        fields["adaln_dim"] = _int(cfg, "time_embed_dim", where, 512)
        fields["text_dim"] = _int(cfg, "text_embed_dim", where, 4096)
        fields["text_tokens"] = _int(cfg, "max_text_seq_length", where, 226)
        fields["patch_t"] = cfg.get("patch_size_t") or 1
        fields["vae_temporal"] = _int(cfg, "temporal_compression_ratio", where, 4)
    elif cls == "HunyuanVideoTransformer3DModel":
        fields["n_single_layers"] = _int(cfg, "num_single_layers", where, 40)
        fields["mlp_ratio"] = cfg.get("mlp_ratio", 4.0)
        fields["patch_t"] = _int(cfg, "patch_size_t", where, 1)
        fields["text_dim"] = _int(cfg, "text_embed_dim", where, 4096)
    else:  # Wan
        fields["mlp_ratio"] = _int(cfg, "ffn_dim", where) / hidden
        fields["text_dim"] = _int(cfg, "text_dim", where, 4096)
    # QK-norm and RoPE: a config key where the class has one, else the class's fixed choice
    # (Flux: RMSNorm and RoPE always; CogVideoX: LayerNorm, RoPE per
    # use_rotary_positional_embeddings; PixArt: neither)
    if "qk_norm" in cfg:
        if cfg["qk_norm"] not in _QK_NORMS:
            raise WorkloadError(
                f"{where}: qk_norm {cfg['qk_norm']!r} is not one roofsim reads; supported: "
                f"{', '.join(str(k) for k in _QK_NORMS)}"
            )
        fields["qk_norm"] = _QK_NORMS[cfg["qk_norm"]]
    if cls == "CogVideoXTransformer3DModel":
        fields["rope"] = "real" if cfg.get("use_rotary_positional_embeddings") else "none"
    elif cls in ("PixArtTransformer2DModel", "SD3Transformer2DModel"):
        fields["rope"] = "none"
        fields.setdefault("qk_norm", "none")
    # diffusers' attention processors run to_q, to_k, to_v (and a text stream's add_*_proj) as
    # separate linears, whatever the family's own repository does (HunyuanVideo's fuses them)
    fields["qkv_linears"] = 3
    fields["diffusers_attention"] = True
    try:
        return replace(base, **fields)
    except TypeError as exc:
        raise WorkloadError(f"{where}: {exc}") from None
