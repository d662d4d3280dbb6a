"""Tiny random-weight models for tests and offline demos — nothing is fetched from a hub.

Each ``build_tiny_*`` writes a complete model folder with ``save_pretrained`` (the same layout
as a real checkpoint) so that it loads through the ordinary code path: ``load_depth_model`` /
``load_refiner`` -> ``from_pretrained``. The tokenizers are built in code with the ``tokenizers``
library (character-level CLIP BPE and T5 Unigram vocabularies), as diffusers' own fast tests do
with their ``get_dummy_components()`` — except that theirs come from the hub.

The weights are random: outputs are meaningless images, but every tensor flows through the real
VAE / text encoders / transformer / scheduler with the real shapes and maths.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

# Characters the tiny tokenizers know; anything else becomes <unk>.
_CHARS = string.ascii_lowercase + string.digits + ",.;:!?'-()/&"


def tiny_clip_tokenizer(model_max_length: int = 77):
    """A character-level CLIP BPE tokenizer (ids: 0 <|startoftext|>, 1 <|endoftext|>)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _CHARS:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)  # word-final form (CLIP's end_of_word_suffix)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_t5_tokenizer(model_max_length: int = 512):
    """A character-level T5 Unigram tokenizer (ids: 0 <pad>, 1 </s>, 2 <unk>)."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(ch, -3.0) for ch in _CHARS] + [("\u2581" + ch, -3.5) for ch in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _clip_text_config(vocab_size: int, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                          intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
                          num_hidden_layers=2, vocab_size=vocab_size, hidden_act="gelu",
                          projection_dim=projection, max_position_embeddings=77)


def _t5_encoder(vocab_size: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=37, num_layers=2,
                      num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)


def _vae(latent_channels: int, *, flow: bool):
    """A two-level AutoencoderKL (vae_scale_factor 2); ``flow`` adds the FLUX/SD3 shift factor."""
    from diffusers import AutoencoderKL

    kwargs = dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False,
                  use_post_quant_conv=False) if flow else dict(scaling_factor=0.18215)
    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=4, **kwargs)


def build_tiny_flux(path: str | Path, *, seed: int = 0) -> Path:
    """A FLUX.1-dev-shaped pipeline folder (guidance-distilled transformer, CLIP + T5, 16-ch packing)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    path = Path(path)
    clip_tok, t5_tok = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(len(clip_tok)))
    torch.manual_seed(seed)
    text_encoder_2 = _t5_encoder(len(t5_tok))
    torch.manual_seed(seed)
    vae = _vae(latent_channels=4, flow=True)
    # FLUX.1-dev's scheduler uses resolution-dependent shifting (mu); keep that code path exercised.
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                max_image_seq_len=256, base_shift=0.5, max_shift=1.15)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=clip_tok,
                        text_encoder_2=text_encoder_2, tokenizer_2=t5_tok, transformer=transformer)
    pipe.save_pretrained(path)
    return path


def build_tiny_sd3(path: str | Path, *, seed: int = 0) -> Path:
    """A Stable Diffusion 3-shaped pipeline folder (MMDiT with CFG, two CLIPs + T5)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    path = Path(path)
    clip_tok, t5_tok = tiny_clip_tokenizer(), tiny_t5_tokenizer(model_max_length=256)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=4)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(_clip_text_config(len(clip_tok)))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(len(clip_tok)))
    torch.manual_seed(seed)
    text_encoder_3 = _t5_encoder(len(t5_tok))
    torch.manual_seed(seed)
    vae = _vae(latent_channels=4, flow=True)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=vae, text_encoder=text_encoder, tokenizer=clip_tok,
                                    text_encoder_2=text_encoder_2, tokenizer_2=tiny_clip_tokenizer(),
                                    text_encoder_3=text_encoder_3, tokenizer_3=t5_tok)
    pipe.save_pretrained(path)
    return path


def build_tiny_sd(path: str | Path, *, seed: int = 0) -> Path:
    """A Stable Diffusion 1.x-shaped pipeline folder (UNet + CLIP, no safety checker) for SDEdit."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    path = Path(path)
    clip_tok = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=4, attention_head_dim=4)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(len(clip_tok)))
    torch.manual_seed(seed)
    vae = _vae(latent_channels=4, flow=False)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def build_tiny_depth(path: str | Path, *, seed: int = 0) -> Path:
    """A Depth Anything-shaped model folder (tiny DINOv2 backbone, DPT head) + its image processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    path = Path(path)
    backbone = Dinov2Config(image_size=28, patch_size=7, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=37, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            initializer_range=0.12)
    # initializer_range 0.12 (not 0.02): outputs of order 0.1 instead of 1e-8 after the ReLU head
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=7, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16, head_hidden_size=8,
                                 initializer_range=0.12)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    # Depth Anything's preprocessing, at a tiny size: keep aspect, multiple of the patch size.
    processor = DPTImageProcessor(do_resize=True, size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                                  ensure_multiple_of=7, resample=3, do_rescale=True, do_normalize=True,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
