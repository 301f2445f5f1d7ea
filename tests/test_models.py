"""Model presets: parameter counts against the publishers', HF config.json loading."""

import json
import re
from pathlib import Path

import pytest

from workloads import WorkloadError, list_models, load_model
from workloads.loader import model_from_dict, model_from_hf

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
REQUIRED = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3-405b",
    "gpt3-175b", "opt-175b", "bloom-176b", "mixtral-8x7b", "deepseek-v3", "gpt4-moe-1.8t",
]  # fmt: skip


def test_every_required_model_is_shipped():
    assert set(REQUIRED) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_the_published_total(name):
    model = load_model(name)
    assert model.source
    if model.n_params_published is None:  # NeMo's launcher configuration: no published count
        assert name == "nemotron-22b"
        return
    # within 2 %: headline totals are rounded ("70B" for 68.98e9 weights of Llama-2-70B);
    # Nemotron-3 8B's card rounds 8.54e9 (two 256k-vocabulary tables) to "8 billion"
    rel = 0.07 if name == "nemotron-8b" else 0.02
    assert model.n_params() == pytest.approx(model.n_params_published, rel=rel)


def test_exact_counts_of_released_checkpoints():
    # Llama-2-7B: 32 x (4·4096² + 3·4096·11008 + 2·4096) + 2·32000·4096 + 4096 = 6,738,415,616
    assert load_model("llama-2-7b").n_params() == 6_738_415_616
    # Mixtral 8x7B: 46.7e9 total, 12.9e9 active (Jiang et al. 2024, Sec. 2)
    mixtral = load_model("mixtral-8x7b")
    assert mixtral.n_params(active=True) == pytest.approx(12.9e9, rel=0.01)


def test_deepseek_v3_active_parameters_match_the_report():
    ds = load_model("deepseek-v3")
    # 37B activated (report abstract); our count includes the 0.93e9 input embedding
    assert ds.n_params(active=True) == pytest.approx(37e9, rel=0.02)
    assert ds.mla is not None and ds.moe is not None and ds.n_moe_layers == 58


@pytest.mark.parametrize(
    ("fixture", "preset"),
    [("llama-3-8b.config.json", "llama-3-8b"), ("mixtral-8x7b.config.json", "mixtral-8x7b"),
     ("deepseek-v3.config.json", "deepseek-v3")],
)  # fmt: skip
def test_hf_config_gives_the_same_model_as_the_preset(fixture, preset):
    hf = load_model(str(FIXTURES / fixture))
    assert hf.n_params() == load_model(preset).n_params()
    assert hf.kv_elements_per_token() == load_model(preset).kv_elements_per_token()


def test_qwen2_hf_config_has_qkv_biases():
    qwen = load_model(str(FIXTURES / "qwen2-7b.config.json"))
    assert qwen.attn_bias
    assert qwen.n_params() == pytest.approx(7.6e9, rel=0.01)


def test_unknown_model_lists_names_and_malformed_files_fail_clearly(tmp_path):
    with pytest.raises(WorkloadError, match="unknown model 'llama-9'.*llama-2-7b"):
        load_model("llama-9")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(WorkloadError, match="malformed JSON"):
        load_model(str(bad))
    partial = tmp_path / "partial.config.json"
    partial.write_text('{"hidden_size": 8}')
    with pytest.raises(WorkloadError, match="missing key"):
        load_model(str(partial))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ('{"hidden_size": 4096, "num_attention_heads": 0, "num_hidden_layers": 2, '
         '"intermediate_size": 11008, "vocab_size": 32000}',
         "num_attention_heads must be an integer >= 1, got 0"),
        ('{"hidden_size": "4096", "num_attention_heads": 32, "num_hidden_layers": 2, '
         '"intermediate_size": 11008, "vocab_size": 32000}',
         "hidden_size must be an integer >= 1, got '4096'"),
        ("[1, 2]", "must be a JSON object of fields, got list"),
    ],
)  # fmt: skip
def test_a_config_json_with_a_bad_count_or_shape_is_one_workload_error(config, match, tmp_path):
    from workloads import WorkloadError, load_model

    path = tmp_path / "bad.json"
    path.write_text(config)
    with pytest.raises(WorkloadError, match=re.escape(match)):
        load_model(str(path))


@pytest.mark.parametrize(
    ("fixture", "published", "gated", "position"),
    [
        ("gpt2", 124_439_808, False, "learned"),
        ("gpt-neox-20b", 20_554_567_680, False, "rope"),
        ("opt-125m", 125_239_296, False, "learned"),
        ("gpt-j-6b", 6_053_381_344, False, "rope"),
        ("falcon-7b", 6_921_720_704, False, "rope"),
        ("mpt-7b", 6_649_286_656, False, "alibi"),
        ("bloom-560m", 559_214_592, False, "alibi"),
    ],
)
def test_gpt_style_configs_read_their_mlp_norm_positions_biases_and_tying(
    fixture, published, gated, position
):
    # a gpt_neox config used to load as a gated Llama: 27.2B parameters for a 20.6B model
    m = load_model(str(FIXTURES / f"{fixture}.config.json"))
    assert m.gated_mlp is gated and m.norm == "layernorm" and m.position == position
    assert m.n_params() == pytest.approx(published, rel=1e-3)


def test_an_unknown_model_type_names_the_supported_ones(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "rwkv", "hidden_size": 2048}')
    with pytest.raises(WorkloadError, match="model_type 'rwkv' is not supported; supported: llama"):
        load_model(str(path))


def test_heads_that_do_not_divide_the_hidden_size_are_refused_not_floored(tmp_path):

    raw = {"name": "odd", "n_layers": 2, "hidden": 4097, "n_heads": 32, "ffn": 64, "vocab": 64}
    with pytest.raises(WorkloadError, match="32 attention heads must divide the hidden size 4097"):
        model_from_dict(raw)
    assert model_from_dict({**raw, "head_dim": 128}).head_dim == 128  # given: taken as is
    hf = {"hidden_size": 4097, "num_attention_heads": 32, "num_hidden_layers": 2,
          "intermediate_size": 64, "vocab_size": 64}  # fmt: skip
    with pytest.raises(WorkloadError, match="must divide the hidden size 4097"):
        model_from_hf(hf)


def test_qwen3_30b_a3b_matches_its_model_card_and_its_hf_config():
    preset = load_model("qwen3-30b-a3b")
    assert preset.n_params() == pytest.approx(30.5e9, rel=0.005)
    assert preset.n_params(active=True) == pytest.approx(3.3e9, rel=0.02)
    hf = model_from_hf(dict(
        model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
        num_key_value_heads=4, head_dim=128, intermediate_size=6144, moe_intermediate_size=768,
        num_experts=128, num_experts_per_tok=8, vocab_size=151936, rms_norm_eps=1e-6,
        max_position_embeddings=40960, tie_word_embeddings=False,
    ))  # fmt: skip
    assert hf.n_params() == preset.n_params()
    assert hf.kv_elements_per_token() == preset.kv_elements_per_token()


def test_hugging_face_repo_ids_name_their_preset():
    from workloads.loader import hf_ids

    ids = hf_ids()
    assert ids["meta-llama/Llama-2-7b-hf"] == "llama-2-7b"
    # any case, with or without the hub's address
    assert load_model("META-LLAMA/llama-2-7b-chat-hf") == load_model("llama-2-7b")
    assert load_model("https://huggingface.co/openai/gpt-oss-20b") == load_model("gpt-oss-20b")
    assert load_model("hf.co/openai/gpt-oss-20b/tree/main") == load_model("gpt-oss-20b")
    # each id names one preset, and an id is never a preset's own slug
    seen: dict[str, str] = {}
    for slug in list_models():
        text = (Path(__file__).parents[1] / "workloads" / "presets" / f"{slug}.toml").read_text()
        for repo in (
            re.findall(r'"([^"]+/[^"]+)"', text.split("hf_ids", 1)[1].split("]")[0])
            if ("hf_ids" in text)
            else []
        ):
            assert repo.lower() not in seen, f"{repo} in {slug} and {seen.get(repo.lower())}"
            seen[repo.lower()] = slug
            assert "/" in repo and repo.lower() not in list_models()
    assert len(seen) == len(ids)
    with pytest.raises(WorkloadError, match="roofsim models --hf"):
        load_model("some-org/not-a-model")


def test_models_hf_lists_the_repo_ids(capsys):
    from sim.cli import main

    assert main(["models", "--hf"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^llama-2-7b\s+.*meta-llama/Llama-2-7b-hf", out, re.M)
    assert main(["models", "--json"]) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert "openai/gpt-oss-120b" in rows["gpt-oss-120b"]["hf_ids"]


def test_a_folder_named_like_a_repo_id_loads_its_config_or_the_preset(tmp_path, monkeypatch):
    """A downloaded checkpoint's folder (huggingface-cli --local-dir) is read through its
    config.json; a folder without one does not hide the preset its repo id names."""
    from workloads.loader import load_model as uncached

    monkeypatch.chdir(tmp_path)
    (tmp_path / "meta-llama" / "Llama-2-7b-hf").mkdir(parents=True)
    assert uncached.__wrapped__("meta-llama/Llama-2-7b-hf") == load_model("llama-2-7b")
    (tmp_path / "meta-llama" / "Meta-Llama-3-8B").mkdir(parents=True)
    cfg = json.loads((FIXTURES / "llama-3-8b.config.json").read_text())
    (tmp_path / "meta-llama" / "Meta-Llama-3-8B" / "config.json").write_text(json.dumps(cfg))
    loaded = uncached.__wrapped__("meta-llama/Meta-Llama-3-8B")
    assert loaded.source.startswith("Hugging Face config.json")
    assert loaded.n_params() == load_model("llama-3-8b").n_params()


def test_dit_presets_take_their_hugging_face_ids_and_diffusers_folders(
    tmp_path, monkeypatch, capsys
):
    from workloads.dit import load_dit

    assert load_dit("black-forest-labs/FLUX.1-dev") == load_dit("flux-1-dev")
    assert load_dit("hf.co/Wan-AI/Wan2.1-T2V-14B-Diffusers") == load_dit("wan2.1-14b")
    with pytest.raises(WorkloadError, match="roofsim models --hf"):
        load_dit("some-org/not-a-dit")
    # a downloaded diffusers pipeline: its transformer's config.json, named after the folder
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "FLUX.1-dev" / "transformer"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        (FIXTURES.parent / "diffusers" / "flux-1-dev.json").read_text()
    )
    loaded = load_dit.__wrapped__("FLUX.1-dev")
    assert loaded.n_params() == load_dit("flux-1-dev").n_params()
    assert loaded.name == "FLUX.1-dev"  # named after the pipeline's folder
    # a repo-id-like path with more parts is a path: its own config, not the preset of the id
    inner = tmp_path / "Wan-AI" / "Wan2.1-T2V-14B-Diffusers" / "transformer"
    inner.mkdir(parents=True)
    (inner / "config.json").write_text((folder / "config.json").read_text())
    assert load_dit.__wrapped__("Wan-AI/Wan2.1-T2V-14B-Diffusers/transformer").block == (
        load_dit("flux-1-dev").block
    )
    assert load_dit.__wrapped__("FLUX.1-dev/transformer").n_params() == loaded.n_params()
    # roofsim models --hf lists the DiT ids too
    from sim.cli import main

    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["flux-1-dev"]["hf_ids"] == ["black-forest-labs/FLUX.1-dev"]


def test_a_vision_language_config_is_read_through_its_text_model():
    """Gemma 3's released config.json wraps a sparse text_config (transformers fills the rest
    from Gemma3TextConfig's defaults); an unsupported inner type is a one-line error."""
    gemma3_12b = {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "text_config": {"hidden_size": 3840, "intermediate_size": 15360,
                        "model_type": "gemma3_text", "num_attention_heads": 16,
                        "num_hidden_layers": 48, "num_key_value_heads": 8,
                        "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"},
    }  # fmt: skip
    m = model_from_hf(gemma3_12b, "gemma-3-12b-it")
    assert (m.head_dim, m.vocab, m.n_layers, m.tied_embeddings) == (256, 262208, 48, True)
    assert (m.sliding_window, m.sliding_layers) == (1024, 40)  # five of every six layers
    # the Gemma 3 technical report (arXiv 2503.19786, Table 1), 12B: 1,012M embedding and
    # 10,759M non-embedding parameters beside the 417M vision encoder
    assert m.n_params() == pytest.approx((1012 + 10759) * 1e6, rel=0.005)
    assert "vision tower not modelled" in m.source
    preset = load_model("gemma-3-12b")  # the preset is the released config's language model
    assert (m.n_params(), m.kv_elements_per_token()) == (
        preset.n_params(),
        preset.kv_elements_per_token(),
    )
    assert load_model("google/gemma-3-27b-it") == load_model("gemma-3-27b")
    same = model_from_hf({**gemma3_12b["text_config"]}, "gemma-3-12b-it")
    assert same.n_params() == m.n_params()
    with pytest.raises(WorkloadError, match="wraps a text model of model_type 'qwen3_next'"):
        model_from_hf({"model_type": "qwen3_vl", "text_config": {"model_type": "qwen3_next"}})


def test_llama_4_configs_give_the_presets_and_interleave_their_moe_layers():
    """Llama 4 Scout's released config (a llama4 wrapper, sparse text_config: transformers'
    Llama4TextConfig fills the rest) and Maverick's text_config map to the presets: every layer
    MoE in Scout, every second (1, 3, ...) in Maverick, one shared expert each, chunked
    attention on the RoPE layers as a window of the chunk."""
    scout = {
        "model_type": "llama4",
        "text_config": {
            "model_type": "llama4_text",
            "hidden_size": 5120,
            "num_hidden_layers": 48,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "num_local_experts": 16,
            "num_experts_per_tok": 1,
            "vocab_size": 202048,
            "max_position_embeddings": 10485760,
        },
    }
    maverick = {"model_type": "llama4_text", "hidden_size": 5120, "num_hidden_layers": 48,
                "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
                "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                "interleave_moe_layer_step": 2, "num_local_experts": 128,
                "num_experts_per_tok": 1, "attention_chunk_size": 8192, "vocab_size": 202048,
                "tie_word_embeddings": False}  # fmt: skip
    for cfg, slug in ((scout, "llama-4-scout"), (maverick, "llama-4-maverick")):
        hf, preset = model_from_hf(cfg, slug), load_model(slug)
        assert hf.n_params() == preset.n_params()
        assert hf.n_params(active=True) == preset.n_params(active=True)
        assert hf.kv_elements_per_token() == preset.kv_elements_per_token()
        assert (hf.sliding_window, hf.sliding_layers) == (8192, 36)
        # 17B activated (model card), with the input embedding
        assert preset.n_params(active=True) == pytest.approx(17.2e9, rel=0.01)
    mav = load_model("llama-4-maverick")
    assert (mav.n_moe_layers, mav.n_dense_layers) == (24, 24)
    # layers 0-3: 1 and 3 are MoE; 5-9: 5, 7, 9
    assert mav.moe_layers_in(0, 4) == 2 and mav.moe_layers_in(5, 5) == 3
    assert load_model("llama-4-scout").moe_layers_in(10, 7) == 7
    with pytest.raises(WorkloadError, match="not every interleave_moe_layer_step-th layer"):
        model_from_hf({**maverick, "moe_layers": [0, 2]})


def test_an_interleaved_moe_model_has_its_moe_layers_on_every_pipeline_stage():
    """Maverick's MoE layers are every second one: each of 4 stages of 12 layers holds 6 MoE
    and 6 dense layers (first_dense_layers would have put every dense one on the first two)."""
    from workloads.training import Training

    mav = load_model("llama-4-maverick")
    plan = Training(model=mav, seq=4096, micro_batch=1, global_batch=32, tp=8, pp=4, ep=4,
                    dp=4).lower()  # fmt: skip
    for (chunk,) in plan.stages:
        counts = {k: max((op.count for op in chunk.forward if op.name == f"{k}.mlp_norm"),
                         default=0) for k in ("moe", "dense")}  # fmt: skip
        assert counts == {"moe": 6, "dense": 6}, counts


def test_a_wrapped_text_config_names_itself_in_errors_and_layer_types_decide():
    with pytest.raises(
        WorkloadError, match=r"'llava-1.5 \(its text_config\)': missing key 'hidden_size'"
    ):
        model_from_hf({"model_type": "llava", "text_config": {"model_type": "llama"}}, "llava-1.5")
    # an explicit layer_types list decides which Llama 4 layers are chunked (as transformers)
    full = model_from_hf({"model_type": "llama4_text", "layer_types": ["full_attention"] * 48})
    assert (full.sliding_window, full.sliding_layers) == (0, 0)
    some = model_from_hf({"model_type": "llama4_text",
                          "layer_types": ["chunked_attention", "full_attention"] * 24})  # fmt: skip
    assert (some.sliding_window, some.sliding_layers) == (8192, 24)


def test_an_fp8_checkpoint_with_block_scales_is_marked_and_one_without_is_not(tmp_path):
    cfg = json.loads((FIXTURES / "llama-3-8b.config.json").read_text())
    assert not model_from_hf(cfg, "plain").fp8_block_scales
    block = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    assert model_from_hf(cfg | {"quantization_config": block}, "blocks").fp8_block_scales
    per_tensor = {"quant_method": "fp8", "activation_scheme": "static"}
    assert not model_from_hf(cfg | {"quantization_config": per_tensor}, "tensor").fp8_block_scales
    assert load_model("deepseek-v3").fp8_block_scales and load_model("deepseek-r1").fp8_block_scales
