"""CLIP (Radford et al. 2021) in plain PyTorch, computing exactly what Hugging Face's CLIPModel computes, with
the same parameter names, so a state dict saved from here loads into `transformers.CLIPModel` and back.

    vision: patch conv (no bias) + [CLS] + position -> pre_layrnorm -> pre-LN encoder
            last_hidden_state = encoder output (patch tokens, no final LN)    [B, 1+N, Cv]
            image_embeds = visual_projection(post_layernorm(last_hidden_state[:, 0]))   [B, E], not normalised
    text:   token + position -> pre-LN encoder (causal + padding masks) -> final_layer_norm
            last_hidden_state                                                 [B, L, Ct]
            text_embeds = text_projection(last_hidden_state at the first EOS)           [B, E], not normalised
    encoder layer: x + MHA(LN1(x)), then x + MLP(LN2(x)), MLP = fc2(quick_gelu(fc1(.)))

Used by tools/make_clip.py (random-weight models and fixtures) and reusable for training a small CLIP:
`CLIPModel.forward` returns the contrastive logits and `clip_loss` the symmetric InfoNCE.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ----------------------------------------------------------------------------------------------------------
# configuration (field names as in HF's CLIPTextConfig / CLIPVisionConfig / CLIPConfig)


@dataclass
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 49407
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    attention_dropout: float = 0.0
    dropout: float = 0.0
    model_type: str = "clip_text_model"


@dataclass
class CLIPVisionConfig:
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    attention_dropout: float = 0.0
    dropout: float = 0.0
    model_type: str = "clip_vision_model"
    # Optional convolutional stem (not in HF's CLIP): 3x3 stride-2 conv + BatchNorm + ReLU per entry, then
    # patch_embedding reduces the remaining patch_size / 2^len(stem_channels) pixels per token. Empty = plain
    # ViT patchify, exactly HF's. The token grid is (image_size / patch_size)^2 either way.
    stem_channels: list = field(default_factory=list)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class CLIPConfig:
    text_config: CLIPTextConfig = field(default_factory=CLIPTextConfig)
    vision_config: CLIPVisionConfig = field(default_factory=CLIPVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592  # ln(1/0.07), CLIP's initial temperature
    initializer_factor: float = 1.0

    def to_hf_dict(self) -> dict:
        """config.json as HF's CLIPConfig.to_dict() lays it out (the fields transformers(.js) read)."""
        text = {**asdict(self.text_config), "projection_dim": self.projection_dim}
        vision = {**asdict(self.vision_config), "projection_dim": self.projection_dim}
        if not vision["stem_channels"]:
            del vision["stem_channels"]  # a plain ViT's config.json stays exactly HF's
        return {
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "initializer_factor": self.initializer_factor,
            "text_config": text,
            "vision_config": vision,
            "torch_dtype": "float32",
        }

    @classmethod
    def from_hf_dict(cls, d: dict) -> "CLIPConfig":
        def pick(klass, src: dict):
            names = {f.name for f in fields(klass)}
            return klass(**{k: v for k, v in src.items() if k in names})
        return cls(text_config=pick(CLIPTextConfig, d["text_config"]),
                   vision_config=pick(CLIPVisionConfig, d["vision_config"]),
                   projection_dim=d["projection_dim"],
                   logit_scale_init_value=d.get("logit_scale_init_value", 2.6592),
                   initializer_factor=d.get("initializer_factor", 1.0))

    @classmethod
    def from_json_file(cls, path: str) -> "CLIPConfig":
        with open(path, encoding="utf-8") as f:
            return cls.from_hf_dict(json.load(f))


# ----------------------------------------------------------------------------------------------------------
# layers


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class CLIPAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        assert hidden % heads == 0, f"hidden size {hidden} is not divisible by {heads} heads"
        self.hidden = hidden
        self.num_heads = heads
        self.head_dim = hidden // heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T = x.shape[0], x.shape[1]  # [B, T, C]; C is the constant self.hidden, so ONNX knows it
        q = (self.q_proj(x) * self.scale).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        att = q @ k.transpose(-1, -2)  # [B, H, T, T]
        if mask is not None:
            att = att + mask  # [B or 1, 1, T, T] additive: 0 or very negative
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.hidden)  # [B, T, C]
        return self.out_proj(y)


class CLIPMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.self_attn = CLIPAttention(hidden, heads)
        self.layer_norm1 = nn.LayerNorm(hidden, eps=eps)
        self.mlp = CLIPMLP(hidden, intermediate)
        self.layer_norm2 = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        x = x + self.mlp(self.layer_norm2(x))
        return x


class CLIPEncoder(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, layers: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(hidden, heads, intermediate, eps) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


# ----------------------------------------------------------------------------------------------------------
# towers


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.image_size = c.image_size
        self.class_embedding = nn.Parameter(torch.zeros(c.hidden_size))
        self.stem = None
        channels, patch = c.num_channels, c.patch_size
        if c.stem_channels:
            layers: list[nn.Module] = []
            for ch in c.stem_channels:
                layers += [nn.Conv2d(channels, ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
                channels, patch = ch, patch // 2
            assert patch >= 1 and patch * 2 ** len(c.stem_channels) == c.patch_size, \
                f"patch_size {c.patch_size} is not divisible by the stem's stride {2 ** len(c.stem_channels)}"
            self.stem = nn.Sequential(*layers)
        self.patch_embedding = nn.Conv2d(channels, c.hidden_size, patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding(c.num_patches + 1, c.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        B = pixel_values.shape[0]  # [B, 3, S, S]
        if self.stem is not None:
            pixel_values = self.stem(pixel_values)  # [B, C0, S/2^k, S/2^k]
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [B, N, C]
        cls = self.class_embedding.reshape(1, 1, -1).expand(B, 1, -1)  # [B, 1, C]
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight.unsqueeze(0)  # [B, 1+N, C]


class CLIPVisionTransformer(nn.Module):
    def __init__(self, c: CLIPVisionConfig):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)  # sic: HF's spelling
        self.encoder = CLIPEncoder(c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                   c.num_hidden_layers, c.layer_norm_eps)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        last_hidden_state = self.encoder(x, None)  # [B, 1+N, C], no mask: every token sees every token
        pooled = self.post_layernorm(last_hidden_state[:, 0])  # [B, C]
        return last_hidden_state, pooled


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embedding = nn.Embedding(c.max_position_embeddings, c.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[1]  # [B, L]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:L].unsqueeze(0)  # [B, L, C]


def text_attention_mask(attention_mask: torch.Tensor | None, L: int, dtype: torch.dtype) -> torch.Tensor:
    """HF's additive mask: causal (key after query) plus padding (key with attention_mask 0), each adding
    the dtype's minimum; a key masked twice gets -inf, which softmax treats the same."""
    neg = torch.finfo(dtype).min
    pos = torch.arange(L, device=attention_mask.device if attention_mask is not None else None)
    later = pos.unsqueeze(0) > pos.unsqueeze(1)  # [L(query), L(key)] key after query
    mask = torch.zeros_like(later, dtype=dtype).masked_fill(later, neg).reshape(1, 1, L, L)
    if attention_mask is not None:
        pad = torch.zeros_like(attention_mask, dtype=dtype).masked_fill(attention_mask == 0, neg)  # [B, L]
        mask = mask + pad[:, None, None, :]  # [B, 1, L, L]
    return mask


class CLIPTextTransformer(nn.Module):
    def __init__(self, c: CLIPTextConfig):
        super().__init__()
        self.eos_token_id = c.eos_token_id
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c.hidden_size, c.num_attention_heads, c.intermediate_size,
                                   c.num_hidden_layers, c.layer_norm_eps)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        B, L = input_ids.shape  # [B, L]
        x = self.embeddings(input_ids)
        x = self.encoder(x, text_attention_mask(attention_mask, L, x.dtype))
        last_hidden_state = self.final_layer_norm(x)  # [B, L, C]
        # pool at the first EOS (HF's rule; the same as argmax(input_ids) because EOS is the highest id)
        eos_pos = (input_ids == self.eos_token_id).to(torch.int32).argmax(dim=-1)  # [B]
        idx = eos_pos.to(torch.int64).reshape(B, 1, 1).expand(B, 1, last_hidden_state.shape[2])
        pooled = last_hidden_state.gather(1, idx).squeeze(1)  # [B, C]
        return last_hidden_state, pooled


class CLIPModel(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config.text_config)
        self.vision_model = CLIPVisionTransformer(config.vision_config)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image_embeds [B, E] unnormalised, last_hidden_state [B, 1+N, Cv]) as CLIPVisionModelWithProjection."""
        last_hidden_state, pooled = self.vision_model(pixel_values)
        return self.visual_projection(pooled), last_hidden_state

    def patch_embeds(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """[B, 1+N, E]: every token through the CLS token's own head (post_layernorm, visual_projection), so a
        patch can be compared with text embeddings (MaskCLIP's reading of CLIP's patch tokens)."""
        return self.visual_projection(self.vision_model.post_layernorm(last_hidden_state))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(text_embeds [B, E] unnormalised, last_hidden_state [B, L, Ct]) as CLIPTextModelWithProjection."""
        last_hidden_state, pooled = self.text_model(input_ids, attention_mask)
        return self.text_projection(pooled), last_hidden_state

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits_per_image [Bi, Bt], logits_per_text [Bt, Bi]): scaled cosine similarities, as HF."""
        image_embeds, _ = self.encode_image(pixel_values)
        text_embeds, _ = self.encode_text(input_ids, attention_mask)
        image_embeds = F.normalize(image_embeds, dim=-1)
        text_embeds = F.normalize(text_embeds, dim=-1)
        logits_per_text = self.logit_scale.exp() * text_embeds @ image_embeds.t()
        return logits_per_text.t(), logits_per_text


def clip_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching pairs (pair i is the positive of row and column i)."""
    target = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return 0.5 * (F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.t(), target))


# ----------------------------------------------------------------------------------------------------------
# initialisation


@torch.no_grad()
def init_weights(model: CLIPModel, generator: torch.Generator, perturb: float = 0.0) -> None:
    """HF's CLIP initialisation (normal draws with its standard deviations; biases 0, LayerNorm 1/0), every
    draw from `generator` in module order. perturb > 0 then adds N(0, perturb) to every bias and LayerNorm
    parameter, so a random fixture also exercises them (HF's init leaves them at exactly 0 and 1)."""
    cfg = model.config

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std)

    for tower, c in ((model.text_model, cfg.text_config), (model.vision_model, cfg.vision_config)):
        f = c.initializer_factor
        H, layers = c.hidden_size, c.num_hidden_layers
        emb = tower.embeddings
        if isinstance(emb, CLIPTextEmbeddings):
            normal(emb.token_embedding.weight, f * 0.02)
            normal(emb.position_embedding.weight, f * 0.02)
        else:
            normal(emb.class_embedding, H ** -0.5 * f)
            if emb.stem is None:
                normal(emb.patch_embedding.weight, c.initializer_range * f)
            else:  # He initialisation through the ReLU stem, then unit-variance tokens
                for conv in emb.stem:
                    if isinstance(conv, nn.Conv2d):
                        normal(conv.weight, (2 / (conv.in_channels * 9)) ** 0.5)
                w = emb.patch_embedding.weight
                normal(w, (w.shape[1] * w.shape[2] * w.shape[3]) ** -0.5)
            normal(emb.position_embedding.weight, c.initializer_range * f)
        in_std = H ** -0.5 * (2 * layers) ** -0.5 * f
        for layer in tower.encoder.layers:
            a = layer.self_attn
            for lin in (a.q_proj, a.k_proj, a.v_proj):
                normal(lin.weight, in_std)
            normal(a.out_proj.weight, H ** -0.5 * f)
            normal(layer.mlp.fc1.weight, (2 * H) ** -0.5 * f)
            normal(layer.mlp.fc2.weight, in_std)
    normal(model.visual_projection.weight, cfg.vision_config.hidden_size ** -0.5 * cfg.initializer_factor)
    normal(model.text_projection.weight, cfg.text_config.hidden_size ** -0.5 * cfg.initializer_factor)
    model.logit_scale.fill_(cfg.logit_scale_init_value)

    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()
            if perturb > 0:
                m.weight.add_(torch.randn(m.weight.shape, generator=generator) * perturb)
                m.bias.add_(torch.randn(m.bias.shape, generator=generator) * perturb)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()
            if perturb > 0:
                m.bias.add_(torch.randn(m.bias.shape, generator=generator) * perturb)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------
# safetensors (the format is tiny: u64 header length, JSON header, raw little-endian tensors)


def save_safetensors(state: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(state):
        t = state[name].detach().to(torch.float32).contiguous().cpu()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # tensors start 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path: str) -> dict[str, torch.Tensor]:
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{path}: tensor {name} is {info['dtype']}, only F32 is supported"
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(body[a:b], dtype="<f4").copy()).reshape(info["shape"])
    return out


def load_pretrained(folder: str) -> CLIPModel:
    """A CLIPModel from a Hugging Face folder holding config.json and model.safetensors (F32)."""
    model = CLIPModel(CLIPConfig.from_json_file(os.path.join(folder, "config.json")))
    state = load_safetensors(os.path.join(folder, "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}  # HF buffers, not parameters
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------------------------------------
# ONNX export wrappers (the input/output names of the Xenova/clip-vit-* folders)


class VisionExport(nn.Module):
    def __init__(self, model: CLIPModel, patch_embeds: bool = False):
        super().__init__()
        self.model = model
        self.with_patch_embeds = patch_embeds

    def forward(self, pixel_values: torch.Tensor):
        image_embeds, last_hidden_state = self.model.encode_image(pixel_values)
        if self.with_patch_embeds:
            return image_embeds, last_hidden_state, self.model.patch_embeds(last_hidden_state)
        return image_embeds, last_hidden_state


class TextExport(nn.Module):
    def __init__(self, model: CLIPModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        text_embeds, last_hidden_state = self.model.encode_text(input_ids, attention_mask)
        return text_embeds, last_hidden_state


def export_onnx(model: CLIPModel, out_dir: str, opset: int = 17, patch_embeds: bool = False) -> tuple[str, str]:
    """onnx/vision_model.onnx (pixel_values -> image_embeds, last_hidden_state) and onnx/text_model.onnx
    (input_ids, attention_mask -> text_embeds, last_hidden_state); batch (and text length) dynamic, fp32.
    patch_embeds: the vision graph also outputs `patch_embeds` [B, 1+N, E] (CLIPModel.patch_embeds), an extra
    output standard consumers ignore."""
    os.makedirs(out_dir, exist_ok=True)
    model = model.eval()
    v, t = model.config.vision_config, model.config.text_config
    vision_path = os.path.join(out_dir, "vision_model.onnx")
    text_path = os.path.join(out_dir, "text_model.onnx")
    with torch.no_grad():
        pixels = torch.zeros(2, v.num_channels, v.image_size, v.image_size)
        outs = ["image_embeds", "last_hidden_state"] + (["patch_embeds"] if patch_embeds else [])
        torch.onnx.export(VisionExport(model, patch_embeds).eval(), (pixels,), vision_path, opset_version=opset,
                          input_names=["pixel_values"], output_names=outs,
                          dynamic_axes={"pixel_values": {0: "batch_size"}, **{o: {0: "batch_size"} for o in outs[1:]},
                                        "image_embeds": {0: "batch_size"}},
                          do_constant_folding=True)
        ids = torch.tensor([[t.bos_token_id, 5, 6, t.eos_token_id], [t.bos_token_id, 7, t.eos_token_id, t.pad_token_id]])
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
        torch.onnx.export(TextExport(model).eval(), (ids, mask), text_path, opset_version=opset,
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds", "last_hidden_state"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                        "text_embeds": {0: "batch_size"},
                                        "last_hidden_state": {0: "batch_size", 1: "sequence_length"}},
                          do_constant_folding=True)
    tokens = v.num_patches + 1
    _name_output_dims(vision_path, {"image_embeds": ["batch_size", model.config.projection_dim],
                                    "last_hidden_state": ["batch_size", tokens, v.hidden_size],
                                    "patch_embeds": ["batch_size", tokens, model.config.projection_dim]})
    _name_output_dims(text_path, {"text_embeds": ["batch_size", model.config.projection_dim],
                                  "last_hidden_state": ["batch_size", "sequence_length", t.hidden_size]})
    return vision_path, text_path


def _name_output_dims(path: str, dims: dict[str, list]) -> None:
    """Write the output shapes into the graph: the exporter leaves some static dims symbolic."""
    import onnx
    m = onnx.load(path)
    for out in m.graph.output:
        for d, want in zip(out.type.tensor_type.shape.dim, dims[out.name]):
            if isinstance(want, int):
                d.dim_value = want
            else:
                d.dim_param = want
    onnx.save(m, path)


def _self_test() -> None:
    """Properties HF's CLIP has, checked on a small random model: `python3 tools/clip_model.py`."""
    import tempfile
    torch.manual_seed(0)
    cfg = CLIPConfig(CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, bos_token_id=98, eos_token_id=99, pad_token_id=99),
                     CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2), projection_dim=16)
    m = CLIPModel(cfg).eval()
    init_weights(m, torch.Generator().manual_seed(0), perturb=0.02)
    with torch.no_grad():
        e, h = m.encode_image(torch.randn(2, 3, 32, 32))
        assert e.shape == (2, 16) and h.shape == (2, 17, 32)

        # attention = torch's own multi-head attention with the same weights
        a = m.text_model.encoder.layers[0].self_attn
        ref = nn.MultiheadAttention(32, 4, batch_first=True)
        ref.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        ref.out_proj.weight.copy_(a.out_proj.weight)
        ref.out_proj.bias.copy_(a.out_proj.bias)
        x = torch.randn(3, 5, 32)
        causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
        want, _ = ref(x, x, x, attn_mask=causal, need_weights=False)
        got = a(x, text_attention_mask(None, 5, x.dtype))
        assert (got - want).abs().max() < 1e-5, "attention differs from nn.MultiheadAttention"

        # pooling at the first EOS; right padding changes nothing; causal: later tokens do not leak back
        ids = torch.tensor([[98, 3, 4, 99]])
        e1, h1 = m.encode_text(ids)
        e2, h2 = m.encode_text(torch.tensor([[98, 3, 4, 99, 99, 99]]), torch.tensor([[1, 1, 1, 1, 0, 0]]))
        assert (e1 - e2).abs().max() < 1e-5 and (h1 - h2[:, :4]).abs().max() < 1e-5, "padding leaks"
        assert (m.text_projection(h1[:, 3]) - e1).abs().max() < 1e-6, "not pooled at EOS"
        _, h3 = m.encode_text(torch.tensor([[98, 3, 7, 99]]))
        assert (h1[:, :2] - h3[:, :2]).abs().max() < 1e-6 and (h1[:, 2] - h3[:, 2]).abs().max() > 1e-3, "not causal"

        # the contrastive head: perfectly matched embeddings give the lowest loss
        lpi, lpt = m(torch.tensor([[98, 3, 99], [98, 4, 99]]), torch.randn(2, 3, 32, 32))
        assert lpi.shape == (2, 2) and torch.allclose(lpi, lpt.t()) and clip_loss(lpt).item() > 0

    with tempfile.TemporaryDirectory() as d:
        save_safetensors(m.state_dict(), os.path.join(d, "model.safetensors"))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg.to_hf_dict(), f)
        m2 = load_pretrained(d)
        for (k, v1), (_, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
            assert torch.equal(v1, v2), f"safetensors round trip changed {k}"
    print(f"clip_model self-test passed ({count_parameters(m):,} parameters)")


if __name__ == "__main__":
    _self_test()
