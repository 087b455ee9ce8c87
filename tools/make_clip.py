"""Write a random-weight (seeded) CLIP as a Hugging Face / transformers.js model folder.

    /usr/bin/python3 tools/make_clip.py --size tiny --out tests/fixtures/tiny-clip
    /usr/bin/python3 tools/make_clip.py --size vit-b-32 --out bench/models/vit-b-32-random

The folder (the layout of the public Xenova/clip-vit-* repos):
    config.json                 HF CLIPConfig
    preprocessor_config.json    HF CLIPImageProcessor (resize shortest edge, centre crop, rescale, CLIP mean/std)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt
                                a CLIP byte-level BPE learned here from emoji names and keywords (tools/bpe.py)
    onnx/vision_model.onnx      pixel_values [B,3,S,S] -> image_embeds [B,E], last_hidden_state [B,1+N,Cv]
    onnx/text_model.onnx        input_ids, attention_mask int64 [B,L] -> text_embeds [B,E], last_hidden_state [B,L,Ct]
    model.safetensors           the PyTorch weights under HF's names (tiny only, unless --safetensors)

For `tiny` it also writes tests/fixtures/tiny-clip-reference.json: inputs and the outputs PyTorch computes
for them, which tests/fixture-tiny-clip.test.ts compares with onnxruntime-node and transformers.js.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from clip_model import (CLIP_MEAN, CLIP_STD, CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig,  # noqa: E402
                        count_parameters, export_onnx, init_weights, save_safetensors)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMOJIBASE = os.path.join(REPO, "node_modules", "emojibase-data", "en", "data.json")
EMOJILIB = os.path.join(REPO, "node_modules", "emojilib", "dist", "emoji-en-US.json")

# Prompt words, so the templates the project uses become whole tokens.
PROMPT_TEXTS = [
    "a photo of a", "a photo of the", "a picture of a", "an image of a", "a drawing of a", "an emoji of a",
    "an icon of a", "a cartoon of a", "this is a photo of", "there is a", "in the", "with a", "and",
]

# Texts whose ids the fixture pins. The last group holds words absent from the BPE training texts:
# they must come out as sub-words, never as unknowns.
TOKENIZER_CASES = [
    "a photo of a dog",
    "A Photo   of\tthe CAT.",
    "",
    "it's 2024: 3 dogs & 12 cats!!",
    "café crème brûlée 🐶🍰",
    "a photo of a xylophone zebra",
    "quixotic flummoxed bureaucracy",
    "zyzzyva kvetch",
]
UNSEEN_WORDS = ["xylophone", "quixotic", "flummoxed", "bureaucracy", "zyzzyva", "kvetch"]
REFERENCE_TEXTS = ["a photo of a dog", "a photo of a xylophone zebra", "", "it's a CAFÉ, with 3 cats!"]


SIZES = {
    # vocab_size: tokenizer target (tiny: exactly the embedding rows); embedding rows for vit-b-32
    "tiny": dict(
        image_size=32, patch_size=8, crop=32, shortest_edge=36,
        vision=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        text=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16, vocab_size=1000, min_frequency=2, corpus=("emojibase",), safetensors=True),
    "vit-b-32": dict(
        image_size=224, patch_size=32, crop=224, shortest_edge=224,
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512, vocab_size=49408, min_frequency=1, corpus=("emojibase", "emojilib"), safetensors=False),
}


def corpus_texts(sources: tuple[str, ...]) -> list[str]:
    """Training texts for the BPE, in a fixed order: emoji names + CLDR keywords (+ emojilib keywords)."""
    texts = list(PROMPT_TEXTS)
    if "emojibase" in sources:
        if not os.path.exists(EMOJIBASE):
            sys.exit(f"make_clip: {EMOJIBASE} is missing; run `npm ci` in {REPO} first (emojibase-data is a devDependency)")
        with open(EMOJIBASE, encoding="utf-8") as f:
            for e in json.load(f):
                texts.append(e["label"])
                texts.extend(e.get("tags", []))
    if "emojilib" in sources:
        if not os.path.exists(EMOJILIB):
            sys.exit(f"make_clip: {EMOJILIB} is missing; run `npm ci` in {REPO} first (emojilib is a devDependency)")
        with open(EMOJILIB, encoding="utf-8") as f:
            for keywords in json.load(f).values():
                texts.extend(k.replace("_", " ") for k in keywords)
    return texts


def preprocessor_config(shortest_edge: int, crop: int) -> dict:
    return {
        "crop_size": {"height": crop, "width": crop},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD,
        "resample": 3,  # bicubic
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": shortest_edge},
    }


def write_json(path: str, obj, indent: int | None = 2) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")
    os.replace(tmp, path)


def flat(t: torch.Tensor) -> dict:
    """A tensor as {shape, data}, floats printed with 9 significant digits (exact for float32)."""
    data = t.detach().reshape(-1).tolist()
    if t.is_floating_point():
        data = [float(f"{x:.9g}") for x in data]
    return {"shape": list(t.shape), "data": data}


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def reference_outputs(model: CLIPModel, tok: bpe.ClipBpeTokenizer, cfg: CLIPConfig, seed: int, argv: list[str]) -> dict:
    v = cfg.vision_config
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn(2, v.num_channels, v.image_size, v.image_size, generator=g)  # [2, 3, S, S]
    ids, mask = tok.batch(REFERENCE_TEXTS)
    ids_t, mask_t = torch.tensor(ids), torch.tensor(mask)
    with torch.no_grad():
        image_embeds, vision_hidden = model.encode_image(pixels)
        text_embeds, text_hidden = model.encode_text(ids_t, mask_t)
    return {
        "about": "Outputs of tools/clip_model.py (PyTorch) for the model in tests/fixtures/tiny-clip; "
                 "regenerate with the command below, never by hand.",
        "command": "/usr/bin/python3 tools/make_clip.py " + " ".join(argv),
        "torch_version": torch.__version__,
        "seed": seed,
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "tokenizer_cases": [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CASES],
        "vision": {
            "pixel_values": flat(pixels),
            "image_embeds": flat(image_embeds),
            "last_hidden_state": flat(vision_hidden),
        },
        "text": {
            "texts": REFERENCE_TEXTS,
            "input_ids": flat(ids_t),
            "attention_mask": flat(mask_t),
            "text_embeds": flat(text_embeds),
            "last_hidden_state": flat(text_hidden),
        },
    }


def check_onnx(paths: list[str]) -> None:
    """Structural check with the onnx package; a numeric one with onnxruntime if Python has it."""
    try:
        import onnx
    except ImportError:
        print("  onnx (Python) not installed: skipped the structural check")
        return
    for p in paths:
        onnx.checker.check_model(p)  # a path, so models over 2 GB would also work
        m = onnx.load(p, load_external_data=False)

        def dims(vi):
            return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        ins = ", ".join(f"{i.name}{dims(i)}" for i in m.graph.input)
        outs = ", ".join(f"{o.name}{dims(o)}" for o in m.graph.output)
        print(f"  {os.path.basename(p)}: opset {m.opset_import[0].version}, {ins} -> {outs}")
    try:
        import onnxruntime  # noqa: F401
        print("  onnxruntime (Python) is available, but the numeric check lives in tests/fixture-tiny-clip.test.ts")
    except ImportError:
        print("  onnxruntime (Python) not installed: numeric check is tests/fixture-tiny-clip.test.ts (onnxruntime-node)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--out", required=True, help="model folder to write (created; existing files replaced)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random draw (weights, reference inputs)")
    ap.add_argument("--reference", default=None,
                    help="reference outputs JSON (default: tests/fixtures/tiny-clip-reference.json when --out is "
                         "tests/fixtures/tiny-clip, else none)")
    ap.add_argument("--safetensors", action=argparse.BooleanOptionalAction, default=None,
                    help="also write model.safetensors (default: tiny yes, vit-b-32 no)")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()
    spec = SIZES[args.size]
    reference = args.reference
    if reference is None:  # only the committed fixture gets its reference by default
        fixture = os.path.join(REPO, "tests", "fixtures", "tiny-clip")
        is_fixture = args.size == "tiny" and os.path.abspath(args.out) == fixture
        reference = os.path.join(REPO, "tests", "fixtures", "tiny-clip-reference.json") if is_fixture else ""
    write_st = spec["safetensors"] if args.safetensors is None else args.safetensors
    t0 = time.time()
    torch.manual_seed(args.seed)  # nothing should draw from the global generator; this pins it if anything does

    # tokenizer
    texts = corpus_texts(spec["corpus"])
    vocab, merges = bpe.learn_bpe(texts, spec["vocab_size"], spec["min_frequency"])
    tok = bpe.ClipBpeTokenizer(vocab, merges)
    seen = {w for t in texts for w in bpe.pre_tokenize(bpe.normalize(t))}
    for w in UNSEEN_WORDS:
        assert w not in seen, f"'{w}' occurs in the BPE training texts; pick another unseen word"
    t_tok = time.time() - t0

    # model
    vocab_rows = len(vocab) if args.size == "tiny" else max(spec["vocab_size"], len(vocab))
    cfg = CLIPConfig(
        text_config=CLIPTextConfig(vocab_size=vocab_rows, max_position_embeddings=bpe.MODEL_MAX_LENGTH,
                                   bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
                                   **spec["text"]),
        vision_config=CLIPVisionConfig(image_size=spec["image_size"], patch_size=spec["patch_size"], **spec["vision"]),
        projection_dim=spec["projection_dim"])
    model = CLIPModel(cfg).eval()
    init_weights(model, torch.Generator().manual_seed(args.seed), perturb=0.02)

    out = args.out
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    write_json(os.path.join(out, "config.json"), cfg.to_hf_dict())
    write_json(os.path.join(out, "preprocessor_config.json"), preprocessor_config(spec["shortest_edge"], spec["crop"]))
    bpe.write_hf_tokenizer(out, vocab, merges)
    if write_st:
        save_safetensors(model.state_dict(), os.path.join(out, "model.safetensors"))
    t1 = time.time()
    paths = export_onnx(model, os.path.join(out, "onnx"), opset=args.opset)
    t_export = time.time() - t1

    if reference:
        write_json(reference, reference_outputs(model, tok, cfg, args.seed, sys.argv[1:]), indent=None)

    # summary
    print(f"{args.size}: {out}")
    print(f"  parameters: {count_parameters(model):,} (vision {count_parameters(model.vision_model):,}, "
          f"text {count_parameters(model.text_model):,})")
    print(f"  tokenizer: {len(vocab)} tokens ({len(merges)} merges from {len(texts)} texts), "
          f"bos {tok.bos_id}, eos {tok.eos_id}; embedding rows {vocab_rows}")
    for t in TOKENIZER_CASES[-3:]:
        print(f"  {t!r} -> {tok.tokenize(t)}")
    check_onnx(list(paths))
    for name in sorted(os.listdir(out)) + [os.path.join("onnx", n) for n in sorted(os.listdir(os.path.join(out, "onnx")))]:
        p = os.path.join(out, name)
        if os.path.isfile(p):
            print(f"  {name:28s} {os.path.getsize(p):>12,} bytes")
    print(f"  total {folder_size(out) / 1e6:.2f} MB; tokenizer {t_tok:.1f} s, onnx export {t_export:.1f} s, "
          f"all {time.time() - t0:.1f} s")
    if reference:
        print(f"  reference: {reference} ({os.path.getsize(reference):,} bytes)")


if __name__ == "__main__":
    main()
