"""Write a tiny random-weight (seeded) SigLIP as a transformers.js model folder, and PyTorch's outputs for it.

    /usr/bin/python3 tools/make_siglip.py --out tests/fixtures/tiny-siglip

SigLIP (Zhai et al. 2023) in plain PyTorch, computing exactly what Hugging Face's SiglipModel computes, with
its parameter names (model.safetensors loads into `transformers.SiglipModel`):

    vision: patch conv (bias) + position (no [CLS]) -> pre-LN encoder -> post_layernorm
            last_hidden_state                                              [B, N, C]
            pooler_output = MAP head: a learned probe attends over the tokens (nn.MultiheadAttention math),
                            then probe + MLP(LN(probe))                    [B, C]
    text:   token + position -> pre-LN encoder (no causal mask) -> final_layer_norm
            last_hidden_state                                              [B, L, C]
            pooler_output = head(last_hidden_state[:, -1])  (the last position: texts are padded to L)
    encoder layer: x + MHA(LN1(x)), then x + MLP(LN2(x)), MLP = fc2(gelu_tanh(fc1(.)))
    logits_per_image = exp(logit_scale) * cos(image, text) + logit_bias;  probability = sigmoid(logit)

The folder: config.json (model_type "siglip"), preprocessor_config.json (SiglipImageProcessor: squash resize,
mean/std 0.5), tokenizer.json (a small SentencePiece-style Unigram with Metaspace, "</s>" appended),
tokenizer_config.json, special_tokens_map.json, onnx/vision_model.onnx, onnx/text_model.onnx, their _fp16
and _quantized variants, and onnx/model.onnx (both towers + the logit scale and bias, as transformers.js repos
carry it); model.safetensors with --safetensors. tests/fixtures/tiny-siglip-reference.json holds inputs and outputs for tests/clip-siglip.test.ts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CFG = dict(
    image_size=32, patch_size=8, num_channels=3,
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    text_max_length=16, layer_norm_eps=1e-6,
)

# Unigram vocabulary: specials, whole words (with the "▁" word-start marker), a few sub-words, then every
# letter alone and with the marker so that any lowercase text has a segmentation. Scores are log-probabilities,
# all distinct so the best segmentation is unique.
SPECIALS = ["<pad>", "</s>", "<unk>"]
WORDS = ["a", "photo", "of", "the", "dog", "cat", "beach", "sunset", "food", "pizza", "car", "tree", "house",
         "picture", "an", "on", "in", "with", "and", "red", "blue", "sea", "sky", "sun", "bird", "music"]
PIECES = ["ing", "er", "ed", "es", "s", "ly", "at", "on", "an", "ar", "or", "in", "ch", "sh", "th", "qu"]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
TOKENIZER_CASES = ["a photo of a dog", "a photo of the beach at sunset", "zebras", "quixotic bunnies", "", "a  cat"]
REFERENCE_TEXTS = ["a photo of a dog", "a photo of a cat", "sunset on the beach", "quixotic"]


def vocab_list() -> list[tuple[str, float]]:
    v: list[tuple[str, float]] = [(s, 0.0) for s in SPECIALS]
    v.append(("\u2581", -3.0))
    for i, w in enumerate(WORDS):
        v.append(("\u2581" + w, -4.0 - 0.01 * i))
    for i, p in enumerate(PIECES):
        v.append((p, -6.0 - 0.01 * i))
    for i, c in enumerate(LETTERS):
        v.append(("\u2581" + c, -9.0 - 0.01 * i))
        v.append((c, -10.0 - 0.01 * i))
    seen: set[str] = set()
    unique = []
    for p, s in v:  # a piece listed twice (a one-letter word, "▁a") keeps its first score
        if p not in seen:
            seen.add(p)
            unique.append((p, s))
    return unique


def unigram_encode(text: str, vocab: list[tuple[str, float]]) -> list[int]:
    """SentencePiece Unigram: Metaspace pre-tokenisation (spaces -> "▁", prepended), then per word the Viterbi
    segmentation of highest total score; unknown characters become <unk> (runs fused); "</s>" appended."""
    index = {p: i for i, (p, _) in enumerate(vocab) if p not in SPECIALS}
    ids: list[int] = []
    words = ["\u2581" + w for w in text.split(" ")] if text else []
    for w in words:
        if w == "\u2581":
            # an empty word from a double space: just the marker token
            ids.append(index["\u2581"])
            continue
        n = len(w)
        best = [(-math.inf, -1, -1)] * (n + 1)  # (score, start, id)
        best[0] = (0.0, -1, -1)
        for end in range(1, n + 1):
            for start in range(max(0, end - 12), end):
                piece = w[start:end]
                if piece in index and best[start][0] > -math.inf:
                    s = best[start][0] + vocab[index[piece]][1]
                    if s > best[end][0]:
                        best[end] = (s, start, index[piece])
        assert best[n][0] > -math.inf, f"no segmentation of {w!r}"
        seq, end = [], n
        while end > 0:
            _, start, i = best[end]
            seq.append(i)
            end = start
        ids.extend(reversed(seq))
    return ids + [1]


def tokenizer_json(vocab: list[tuple[str, float]]) -> dict:
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(SPECIALS)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}},
        },
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": [[p, s] for p, s in vocab], "byte_fallback": False},
    }


# ----------------------------------------------------------------------------------------------------------
# the model (HF SiglipModel's math and parameter names)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # HF's "gelu_pytorch_tanh", written out so every exporter version emits the same formula.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads, self.hd = heads, c // heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, C = x.shape
        q = self.q_proj(x).view(B, L, self.heads, self.hd).transpose(1, 2)  # [B, H, L, hd]
        k = self.k_proj(x).view(B, L, self.heads, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.heads, self.hd).transpose(1, 2)
        a = (q @ k.transpose(-1, -2)) * self.hd ** -0.5  # [B, H, L, L]
        if mask is not None:
            a = a + mask
        a = F.softmax(a, dim=-1, dtype=torch.float32)
        return self.out_proj((a @ v).transpose(1, 2).reshape(B, L, C))


class MLP(nn.Module):
    def __init__(self, c: int, inner: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, inner), nn.Linear(inner, c)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, c: int, inner: int, heads: int, eps: float):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(c, eps=eps), nn.LayerNorm(c, eps=eps)
        self.self_attn, self.mlp = Attention(c, heads), MLP(c, inner)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, n: int, *a):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(*a) for _ in range(n))

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class PoolingHead(nn.Module):
    """SiglipMultiheadAttentionPoolingHead: nn.MultiheadAttention(probe, x, x) with its packed in_proj."""

    def __init__(self, c: int, inner: int, heads: int, eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, c))
        self.attention = nn.Module()
        self.attention.in_proj_weight = nn.Parameter(torch.zeros(3 * c, c))
        self.attention.in_proj_bias = nn.Parameter(torch.zeros(3 * c))
        self.attention.out_proj = nn.Linear(c, c)
        self.layernorm, self.mlp = nn.LayerNorm(c, eps=eps), MLP(c, inner)
        self.heads, self.hd = heads, c // heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        q = F.linear(self.probe.expand(B, 1, C), w[:C], b[:C]).view(B, 1, self.heads, self.hd).transpose(1, 2)
        k = F.linear(x, w[C:2 * C], b[C:2 * C]).view(B, N, self.heads, self.hd).transpose(1, 2)
        v = F.linear(x, w[2 * C:], b[2 * C:]).view(B, N, self.heads, self.hd).transpose(1, 2)
        a = F.softmax((q @ k.transpose(-1, -2)) * self.hd ** -0.5, dim=-1)  # [B, H, 1, N]
        h = self.attention.out_proj((a @ v).transpose(1, 2).reshape(B, 1, C))
        h = h + self.mlp(self.layernorm(h))
        return h[:, 0]


class VisionEmbeddings(nn.Module):
    def __init__(self, c, patch, size, ch):
        super().__init__()
        self.patch_embedding = nn.Conv2d(ch, c, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Embedding((size // patch) ** 2, c)

    def forward(self, pixels):
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [B, N, C]
        return x + self.position_embedding.weight[None]


class VisionTransformer(nn.Module):
    def __init__(self, k):
        super().__init__()
        c, eps = k["hidden_size"], k["layer_norm_eps"]
        self.embeddings = VisionEmbeddings(c, k["patch_size"], k["image_size"], k["num_channels"])
        self.encoder = Encoder(k["num_hidden_layers"], c, k["intermediate_size"], k["num_attention_heads"], eps)
        self.post_layernorm = nn.LayerNorm(c, eps=eps)
        self.head = PoolingHead(c, k["intermediate_size"], k["num_attention_heads"], eps)

    def forward(self, pixels):
        h = self.post_layernorm(self.encoder(self.embeddings(pixels)))
        return h, self.head(h)


class TextEmbeddings(nn.Module):
    def __init__(self, vocab, c, length):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, c)
        self.position_embedding = nn.Embedding(length, c)

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding.weight[None, : ids.shape[1]]


class TextTransformer(nn.Module):
    def __init__(self, k, vocab):
        super().__init__()
        c, eps = k["hidden_size"], k["layer_norm_eps"]
        self.embeddings = TextEmbeddings(vocab, c, k["text_max_length"])
        self.encoder = Encoder(k["num_hidden_layers"], c, k["intermediate_size"], k["num_attention_heads"], eps)
        self.final_layer_norm = nn.LayerNorm(c, eps=eps)
        self.head = nn.Linear(c, c)

    def forward(self, ids):
        h = self.final_layer_norm(self.encoder(self.embeddings(ids)))
        return h, self.head(h[:, -1])


class SiglipModel(nn.Module):
    def __init__(self, k, vocab):
        super().__init__()
        self.vision_model = VisionTransformer(k)
        self.text_model = TextTransformer(k, vocab)
        self.logit_scale = nn.Parameter(torch.zeros(1))
        self.logit_bias = nn.Parameter(torch.zeros(1))

    def forward(self, ids, pixels):
        _, img = self.vision_model(pixels)
        _, txt = self.text_model(ids)
        img = img / img.norm(p=2, dim=-1, keepdim=True)
        txt = txt / txt.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = txt @ img.t() * self.logit_scale.exp() + self.logit_bias
        return logits_per_text.t(), logits_per_text, txt, img


class VisionExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m.vision_model

    def forward(self, pixel_values):
        return self.m(pixel_values)


class TextExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m.text_model

    def forward(self, input_ids):
        return self.m(input_ids)


def init(model: nn.Module, seed: int) -> None:
    """Random weights from one seeded generator, sized so activations stay O(1) (LN weights near 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name == "logit_scale":
                p.fill_(math.log(10.0))  # HF's initial values: scale 10, bias -10; then perturbed
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            elif name == "logit_bias":
                p.fill_(-2.0)
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                if p.dim() == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                std = 1.0 / math.sqrt(fan_in) if p.dim() > 1 else 0.5
                if "embedding" in name or name.endswith("probe"):
                    std = 0.5
                p.copy_(std * torch.randn(p.shape, generator=g))


def hf_state_dict(model: SiglipModel) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in model.state_dict().items():
        sd[k] = v
    # HF registers position_ids buffers; they are not parameters and not needed to load.
    return sd


def save_safetensors(state: dict[str, torch.Tensor], path: str) -> None:
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(state):
        data = state[name].detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(state[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def variants(path: str) -> list[str]:
    """The _fp16 and _quantized files transformers.js folders carry beside an fp32 graph, made here without
    onnxconverter or onnxruntime's quantiser (neither is packaged for Debian):
      _fp16       weights stored as float16 (Cast back to float32 inside), float inputs and outputs float16;
      _quantized  weight matrices stored as int8 with a per-tensor scale (QuantizeLinear/DequantizeLinear
                  format), float32 inputs and outputs."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    out = []
    for kind in ("fp16", "quantized"):
        m = onnx.load(path)
        g = m.graph
        new_inits, pre = [], []
        for init in g.initializer:
            a = numpy_helper.to_array(init)
            if init.data_type != TensorProto.FLOAT or a.size < 16:
                new_inits.append(init)
                continue
            if kind == "fp16":
                new_inits.append(numpy_helper.from_array(a.astype(np.float16), init.name + "_f16"))
                pre.append(helper.make_node("Cast", [init.name + "_f16"], [init.name], to=TensorProto.FLOAT))
            else:
                scale = np.float32(max(float(np.abs(a).max()), 1e-8) / 127.0)
                q = np.clip(np.round(a / scale), -127, 127).astype(np.int8)
                new_inits += [numpy_helper.from_array(q, init.name + "_q"),
                              numpy_helper.from_array(np.array(scale, np.float32), init.name + "_scale"),
                              numpy_helper.from_array(np.array(0, np.int8), init.name + "_zero")]
                pre.append(helper.make_node("DequantizeLinear", [init.name + "_q", init.name + "_scale", init.name + "_zero"], [init.name]))
        del g.initializer[:]
        g.initializer.extend(new_inits)
        nodes = list(g.node)
        if kind == "fp16":
            for vi in list(g.input):
                if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                    inner = vi.name + "_f32"
                    for n in nodes:
                        n.input[:] = [inner if x == vi.name else x for x in n.input]
                    pre.append(helper.make_node("Cast", [vi.name], [inner], to=TensorProto.FLOAT))
                    vi.type.tensor_type.elem_type = TensorProto.FLOAT16
            post = []
            for vi in g.output:
                if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
                    inner = vi.name + "_f32"
                    for n in nodes:  # the producer and any consumer inside the graph
                        n.output[:] = [inner if x == vi.name else x for x in n.output]
                        n.input[:] = [inner if x == vi.name else x for x in n.input]
                    post.append(helper.make_node("Cast", [inner], [vi.name], to=TensorProto.FLOAT16))
                    vi.type.tensor_type.elem_type = TensorProto.FLOAT16
            nodes += post
        del g.node[:]
        g.node.extend(pre + nodes)
        target = path.replace(".onnx", f"_{kind}.onnx")
        onnx.checker.check_model(m)
        onnx.save(m, target)
        out.append(target)
    return out


def write_json(path: str, obj, indent: int | None = 2) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def flat(t: torch.Tensor) -> dict:
    data = t.detach().reshape(-1).tolist()
    if t.is_floating_point():
        data = [float(f"{x:.9g}") for x in data]
    return {"shape": list(t.shape), "data": data}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "tiny-siglip"))
    ap.add_argument("--reference", default=os.path.join(REPO, "tests", "fixtures", "tiny-siglip-reference.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--safetensors", action="store_true",
                    help="also write model.safetensors (HF names; left out of the fixture to keep it small)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    k = CFG
    vocab = vocab_list()
    L = k["text_max_length"]
    model = SiglipModel(k, len(vocab)).eval()
    init(model, args.seed)

    out = args.out
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    common = dict(hidden_size=k["hidden_size"], intermediate_size=k["intermediate_size"],
                  num_hidden_layers=k["num_hidden_layers"], num_attention_heads=k["num_attention_heads"],
                  layer_norm_eps=k["layer_norm_eps"], hidden_act="gelu_pytorch_tanh", attention_dropout=0.0)
    write_json(os.path.join(out, "config.json"), {
        "architectures": ["SiglipModel"], "model_type": "siglip", "initializer_factor": 1.0,
        "text_config": {**common, "model_type": "siglip_text_model", "vocab_size": len(vocab),
                        "max_position_embeddings": L, "projection_size": k["hidden_size"],
                        "pad_token_id": 1, "bos_token_id": 49406, "eos_token_id": 1},
        "vision_config": {**common, "model_type": "siglip_vision_model", "image_size": k["image_size"],
                          "patch_size": k["patch_size"], "num_channels": k["num_channels"]},
        "torch_dtype": "float32",
    })
    write_json(os.path.join(out, "preprocessor_config.json"), {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": 1 / 255, "size": {"height": k["image_size"], "width": k["image_size"]},
    })
    write_json(os.path.join(out, "tokenizer.json"), tokenizer_json(vocab), indent=None)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for i, s in enumerate(SPECIALS)},
        "clean_up_tokenization_spaces": True, "do_lower_case": True, "eos_token": "</s>", "model_max_length": L,
        "pad_token": "</s>", "unk_token": "<unk>", "tokenizer_class": "SiglipTokenizer",
    })
    write_json(os.path.join(out, "special_tokens_map.json"), {"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"})
    if args.safetensors:
        save_safetensors(hf_state_dict(model), os.path.join(out, "model.safetensors"))

    S = k["image_size"]
    with torch.no_grad():
        pixels = torch.zeros(2, 3, S, S)
        ids = torch.ones(2, L, dtype=torch.int64)
        torch.onnx.export(VisionExport(model), (pixels,), os.path.join(out, "onnx", "vision_model.onnx"),
                          opset_version=args.opset, input_names=["pixel_values"],
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes={"pixel_values": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"},
                                        "pooler_output": {0: "batch_size"}}, do_constant_folding=True)
        torch.onnx.export(TextExport(model), (ids,), os.path.join(out, "onnx", "text_model.onnx"),
                          opset_version=args.opset, input_names=["input_ids"],
                          output_names=["last_hidden_state", "pooler_output"],
                          dynamic_axes={"input_ids": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"},
                                        "pooler_output": {0: "batch_size"}}, do_constant_folding=True)
        torch.onnx.export(model, (ids, pixels), os.path.join(out, "onnx", "model.onnx"), opset_version=args.opset,
                          input_names=["input_ids", "pixel_values"],
                          output_names=["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"],
                          dynamic_axes={"input_ids": {0: "text_batch_size"}, "pixel_values": {0: "image_batch_size"},
                                        "logits_per_image": {0: "image_batch_size", 1: "text_batch_size"},
                                        "logits_per_text": {0: "text_batch_size", 1: "image_batch_size"},
                                        "text_embeds": {0: "text_batch_size"}, "image_embeds": {0: "image_batch_size"}},
                          do_constant_folding=True)

        for name in ("vision_model", "text_model"):
            variants(os.path.join(out, "onnx", f"{name}.onnx"))

        # reference inputs and outputs
        g = torch.Generator().manual_seed(args.seed + 1)
        ref_pixels = torch.randn(2, 3, S, S, generator=g)
        rows = [unigram_encode(t, vocab)[:L] for t in REFERENCE_TEXTS]
        ref_ids = torch.tensor([r + [1] * (L - len(r)) for r in rows])  # padded with "</s>" to max length
        v_hidden, v_pool = model.vision_model(ref_pixels)
        t_hidden, t_pool = model.text_model(ref_ids)
        logits_per_image, _, _, _ = model(ref_ids, ref_pixels)
    write_json(args.reference, {
        "about": "Outputs of tools/make_siglip.py (PyTorch, HF SiglipModel math) for tests/fixtures/tiny-siglip; "
                 "regenerate with the command below, never by hand.",
        "command": "/usr/bin/python3 tools/make_siglip.py",
        "torch_version": torch.__version__,
        "seed": args.seed,
        "logit_scale": float(model.logit_scale.exp()),
        "logit_bias": float(model.logit_bias),
        "tokenizer_cases": [{"text": t, "ids": unigram_encode(t, vocab)} for t in TOKENIZER_CASES],
        "vision": {"pixel_values": flat(ref_pixels), "last_hidden_state": flat(v_hidden), "pooler_output": flat(v_pool)},
        "text": {"texts": REFERENCE_TEXTS, "input_ids": flat(ref_ids), "last_hidden_state": flat(t_hidden),
                 "pooler_output": flat(t_pool)},
        "logits_per_image": flat(logits_per_image),
        "probabilities": flat(torch.sigmoid(logits_per_image)),
    }, indent=None)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"{out}: {sum(p.numel() for p in model.parameters()):,} parameters, {len(vocab)} tokens, {total:,} bytes; "
          f"logit scale {float(model.logit_scale.exp()):.4f}, bias {float(model.logit_bias):.4f}")
    for t in TOKENIZER_CASES:
        print(f"  {t!r} -> {unigram_encode(t, vocab)}")
    print(f"  probabilities: {torch.sigmoid(logits_per_image).tolist()}")


if __name__ == "__main__":
    main()
