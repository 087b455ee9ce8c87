"""Train pico-CLIP: a small CLIP (conv stem + ViT image tower, causal text transformer, CLIP projections and
contrastive loss) on the corpus that tools/pico-clip/corpus.ts renders, then export a Hugging Face /
transformers.js folder (config.json, preprocessor_config.json, tokenizer files, onnx/*.onnx).

    /usr/bin/python3 tools/pico-clip/train.py --corpus /tmp/pico-clip/corpus-128 --out /tmp/pico-clip/run --steps 900
    ... --device cuda --batch 512 --steps 6000 --width 256 --layers 6      # a GPU buys a bigger, longer run

The corpus must carry corpus.ts's leak-check record (index.json: pools hash, B emoji, B drawings); the trainer
checks every caption record against it again and refuses the corpus otherwise (nothing of B may be trained on).

Everything random draws from generators seeded by --seed. The output folder also gets:
    training.json       arguments, parameter counts, time, loss/validation history
    loss.svg            the loss curve (and validation scores)
    reference.json      PyTorch outputs for seeded pixels and a few prompts (tests compare onnxruntime-node to it)
Checkpoints (ckpt.pt) are written every --ckpt-minutes, so an interrupted run still exports with --export-only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import bpe  # noqa: E402
# The one AP of the Python tools (reference/clip-decoder.md §5); every validation label has a positive.
from metrics_reference import average_precision  # noqa: E402
from clip_model import (CLIP_MEAN, CLIP_STD, CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig,  # noqa: E402
                        count_parameters, export_onnx, init_weights)

# Templates captions are wrapped in during training (the evaluation picks its own on validation emoji).
SHARED_TEMPLATES = ["{}", "{}", "a photo of {}", "a picture of {}", "a drawing of {}", "a photo of a {}",
                    "a cartoon of {}", "an image of {}"]
KIND_TEMPLATES = {"emoji": ["an emoji of {}", "{} emoji", "an emoji of a {}"],
                  "icon": ["an icon of {}", "{} icon", "an icon of a {}"],
                  "scene": ["emoji of {}", "a scene with {}", "a picture with {}"]}
LATERAL = {"left", "right", "leftwards", "rightwards", "east", "west", "backward", "forward", "previous", "next",
           "undo", "redo", "rewind", "back"}


def words_of(text: str) -> list[str]:
    return [w for w in "".join(c if c.isalpha() else " " for c in text.lower()).split() if len(w) >= 2]


# ----------------------------------------------------------------------------------------------------------
# data


class CorpusError(Exception):
    """A corpus folder the trainer refuses (missing files, no leak-check record, a benchmark drawing)."""


def check_corpus(folder: str) -> dict:
    """index.json of a v2 corpus whose leak check passed, after re-checking every captions.jsonl record against
    it: no benchmark (B) emoji, alone or in a scene, and no drawing with the SVG body of a B drawing."""
    path = os.path.join(folder, "index.json")
    if not os.path.exists(path):
        raise CorpusError(f"{path}: missing; render the corpus with tools/pico-clip/corpus.ts --out {folder}")
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    if index.get("format") != "pico-clip-corpus" or index.get("version") != 2:
        raise CorpusError(f"{path}: not a v2 pico-CLIP corpus (format/version); re-render it with tools/pico-clip/corpus.ts")
    leak = index.get("leakCheck") or {}
    bench = leak.get("benchmark") or {}
    if leak.get("passed") is not True or not bench.get("emoji") or not bench.get("drawings") \
            or not (index.get("pools") or {}).get("poolsHash"):
        raise CorpusError(f"{path}: no passed leak check with the benchmark pool's emoji, drawings and pools hash")
    b_keys, b_drawings = set(bench["emoji"]), set(bench["drawings"])
    test_style = index["pools"]["testOnlyStyle"]
    with open(os.path.join(folder, "captions.jsonl"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            it = json.loads(line)
            where = f"{folder}/captions.jsonl line {n} ({it.get('id')})"
            keys = [it["key"]] if it["kind"] == "emoji" else [m["key"] for m in it.get("members", [])]
            styles = [it["set"]] + [m["style"] for m in it.get("members", [])]
            if any(k in b_keys for k in keys):
                raise CorpusError(f"{where}: shows a benchmark (B) emoji: refusing to train on it")
            if not it.get("drawings") or any(d in b_drawings for d in it["drawings"]):
                raise CorpusError(f"{where}: a drawing of a benchmark (B) emoji, or no drawing hashes to check")
            if any(s_ == test_style or "fluent" in s_ for s_ in styles):
                raise CorpusError(f"{where}: style {test_style} / Fluent is never trained on")
    return index


class Corpus:
    """Images [N, S, S, 3] uint8 (memory-mapped) and their caption fields."""

    def __init__(self, folder: str, images: str, captions: str, index: dict):
        self.index = index
        self.S = self.index["size"]
        with open(os.path.join(folder, captions), encoding="utf-8") as f:
            self.items = [json.loads(line) for line in f if line.strip()]
        path = os.path.join(folder, images)
        if not os.path.exists(path) or os.path.getsize(path) != len(self.items) * self.S * self.S * 3:
            raise CorpusError(f"{path}: missing or its size does not match {captions} ({len(self.items)} images of {self.S} px)")
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(len(self.items), self.S, self.S, 3))
        self.images = raw
        # every word an image is known by: a caption whose words are all among them fits the image
        self.word_sets = []
        for it in self.items:
            ws = set(words_of(it["name"]))
            for t in it.get("keywords", []) + it.get("words", []) + it.get("categories", []) + it.get("labels", []):
                ws.update(words_of(t))
            for m in it.get("members", []):
                ws.update(words_of(m["name"]))
                for t in m.get("words", []):
                    ws.update(words_of(t))
            self.word_sets.append(ws)

    def take(self, idx) -> torch.Tensor:
        """uint8 [B, S, S, 3] of the given rows (copied out of the memory map)."""
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(idx)]))


def bpe_texts(corpus: Corpus, val: Corpus) -> list[str]:
    """Texts the tokenizer learns from: every caption field (plus the templates). Validation emoji names and
    keywords are left out, so its words are as unseen to the tokenizer as test words."""
    texts = [t.format("x") for t in SHARED_TEMPLATES + KIND_TEMPLATES["emoji"] + KIND_TEMPLATES["icon"]]
    texts += ["a cat, a dog and an apple"] * 20  # the glue of compositional scene captions
    seen = set()
    for it in corpus.items:
        key = (it["kind"], it["key"])
        if key in seen:
            continue
        seen.add(key)
        if it["kind"] == "scene":
            continue  # its words are its members' names and words, which the emoji items carry
        texts.append(it["name"])
        texts.extend(it["keywords"])
        texts.extend(it["words"])
        texts.extend(it["categories"])
    return texts


class CaptionSampler:
    """One random caption per image, each time it is drawn: its name, some of its keywords/label words, or the
    name with keywords; wrapped in a random template. Returns the caption and the words it requires."""

    def __init__(self, rng: random.Random, p_name: float, p_words: float):
        self.rng = rng
        self.p_name = p_name
        self.p_words = p_words

    def __call__(self, it: dict) -> tuple[str, list[str]]:
        if it["kind"] == "scene":
            return self.scene(it)
        r, rng = self.rng.random(), self.rng
        pool = [w for w in it["words"]] + [k for k in it["keywords"] if len(k) <= 24]
        if it["kind"] == "icon":
            pool += it["categories"]
        if r < self.p_name or not pool:
            content = it["name"]
        elif r < self.p_name + self.p_words:
            k = min(len(pool), rng.choice([1, 1, 2, 2, 3, 4]))
            content = ", ".join(rng.sample(pool, k))
        else:
            k = min(len(pool), rng.choice([1, 2, 3, 5]))
            content = it["name"] + ", " + ", ".join(rng.sample(pool, k))
        template = rng.choice(SHARED_TEMPLATES + KIND_TEMPLATES[it["kind"]])
        return template.format(content), words_of(content)

    def scene(self, it: dict) -> tuple[str, list[str]]:
        """A P scene: its compositional caption (every member, left to right), some of its members' names, or
        some of its members' words; the words required are those of the caption content."""
        r, rng = self.rng.random(), self.rng
        members = sorted(it["members"], key=lambda m: m["box"][0])
        if r < 0.45 or len(members) == 1 and r < 0.7:
            content = it["name"]
        elif r < 0.7:
            keep = sorted(rng.sample(range(len(members)), rng.randint(1, len(members) - 1)))
            names = [("an " if m["name"][:1].lower() in "aeiou" else "a ") + m["name"].lower()
                     for m in (members[i] for i in keep)]
            content = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        else:
            pool = sorted({w for m in members for w in m["words"]})
            if not pool:
                content = it["name"]
            else:
                content = ", ".join(rng.sample(pool, min(len(pool), rng.choice([1, 2, 3, 4]))))
        template = rng.choice(SHARED_TEMPLATES + KIND_TEMPLATES["scene"])
        return template.format(content), [w for w in words_of(content) if w not in ("and",)]


class BatchSampler:
    """Batches mixing emoji, P scenes and icons at fixed shares. Emoji are drawn by emoji (one random style or
    skin of each, no emoji twice in a batch), so the styles of one emoji never compete as negatives."""

    def __init__(self, corpus: Corpus, emoji_share: float, scene_share: float, rng: random.Random):
        self.rng = rng
        self.share = emoji_share
        self.scene_share = scene_share
        self.by_emoji: dict[str, list[int]] = {}
        self.icons: list[int] = []
        self.scenes: list[int] = []
        for i, it in enumerate(corpus.items):
            if it["kind"] == "emoji":
                self.by_emoji.setdefault(it["key"], []).append(i)
            elif it["kind"] == "scene":
                self.scenes.append(i)
            else:
                self.icons.append(i)
        self.emoji_keys = sorted(self.by_emoji)

    def __call__(self, B: int) -> list[int]:
        n_scene = min(len(self.scenes), round(B * self.scene_share))
        n_emoji = min(len(self.emoji_keys), round(B * self.share)) if self.icons else min(B - n_scene, len(self.emoji_keys))
        keys = self.rng.sample(self.emoji_keys, n_emoji)
        idx = [self.rng.choice(self.by_emoji[k]) for k in keys]
        idx += self.rng.sample(self.scenes, n_scene)
        if B > len(idx) and self.icons:
            idx += self.rng.sample(self.icons, B - len(idx))
        return idx


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B, S, S, 3] or float [B, 3, S, S] in 0..1 -> CLIP-normalised float [B, 3, S, S]."""
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, icon: torch.Tensor, no_flip: torch.Tensor, g: torch.Generator, S: int,
            strength: float, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [B, S0, S0, 3] -> float [B, 3, S, S] in 0..1: random scale/rotation/shift (white fill), mirror
    (not for left/right captions), icons recoloured (black line art -> a random colour), brightness/contrast.
    `fixed` [B] bool: no geometric change (scenes: their member boxes and left-to-right captions stay true)."""
    B = images.shape[0]
    x = images.permute(0, 3, 1, 2).float() / 255.0  # [B, 3, S0, S0]
    # icons: ink (1 - x) painted in a random colour half of the time
    colour = torch.rand(B, 3, 1, 1, generator=g) * 0.8
    recolour = (icon & (torch.rand(B, generator=g) < 0.5)).reshape(B, 1, 1, 1)
    x = torch.where(recolour, 1 - (1 - x) * (1 - colour), x)
    # affine: zoom 0.75..1.1 of the frame, rotation +-12 deg, shift +-8 %, mirror
    s = 1 / (1 + strength * (torch.rand(B, generator=g) * 0.35 - 0.1))
    a = strength * (torch.rand(B, generator=g) * 2 - 1) * math.radians(12)
    t = strength * (torch.rand(B, 2, generator=g) * 2 - 1) * 0.08
    flip = ((torch.rand(B, generator=g) < 0.5) & ~no_flip).float() * -2 + 1
    if fixed is not None:
        s, a = torch.where(fixed, torch.ones_like(s), s), torch.where(fixed, torch.zeros_like(a), a)
        t, flip = torch.where(fixed[:, None], torch.zeros_like(t), t), torch.where(fixed, torch.ones_like(flip), flip)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = s * torch.cos(a) * flip
    theta[:, 0, 1] = -s * torch.sin(a)
    theta[:, 1, 0] = s * torch.sin(a) * flip
    theta[:, 1, 1] = s * torch.cos(a)
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, [B, 3, S, S], align_corners=False)
    x = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # white outside
    # photometric: brightness and contrast, +-10 %
    bright = 1 + strength * (torch.rand(B, 1, 1, 1, generator=g) * 0.2 - 0.1)
    contrast = 1 + strength * (torch.rand(B, 1, 1, 1, generator=g) * 0.2 - 0.1)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * contrast + m * bright).clamp(0, 1)


def positives(captions_words: list[list[str]], idx: list[int], corpus: Corpus) -> torch.Tensor:
    """[B, B] bool: caption i fits image j when all its words are among image j's words (diagonal always)."""
    B = len(idx)
    sets = [corpus.word_sets[j] for j in idx]
    rows = []
    for i, words in enumerate(captions_words):
        ws = set(words)
        rows.append([i == j or (bool(ws) and ws <= sets[j]) for j in range(B)])  # set inclusion: C speed
    return torch.tensor(rows, dtype=torch.bool)


def soft_clip_loss(logits_per_text: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE with every fitting pair a positive (targets spread evenly over them), so two
    images that both fit "a photo of a face" are not pushed apart. With P = identity it is clip_loss."""
    Pf = P.float()
    t2i = -(F.log_softmax(logits_per_text, dim=1) * (Pf / Pf.sum(1, keepdim=True))).sum(1).mean()
    i2t = -(F.log_softmax(logits_per_text.t(), dim=1) * (Pf.t() / Pf.t().sum(1, keepdim=True))).sum(1).mean()
    return 0.5 * (t2i + i2t)


def encode_texts_by_length(model: CLIPModel, tok: "bpe.ClipBpeTokenizer", texts: list[str], device: str,
                           groups: int = 4) -> torch.Tensor:
    """text_embeds [N, E] in the order of `texts`, encoded in groups of similar length: a batch padded to its
    longest caption (a 4-member scene's) spends most of the text tower on padding."""
    seqs = [tok.encode(t, 32) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(seqs[i]))
    out = [None] * len(texts)
    size = -(-len(texts) // groups)
    for g0 in range(0, len(order), size):
        chunk = order[g0:g0 + size]
        width = max(len(seqs[i]) for i in chunk)
        ids = torch.tensor([seqs[i] + [tok.pad_id] * (width - len(seqs[i])) for i in chunk], device=device)
        mask = torch.tensor([[1] * len(seqs[i]) + [0] * (width - len(seqs[i])) for i in chunk], device=device)
        emb = model.encode_text(ids, mask)[0]
        for r, i in enumerate(chunk):
            out[i] = emb[r]
    return torch.stack(out)


def region_masks(members: list[list[list[float]]], G: int) -> torch.Tensor:
    """[M, G*G] float: for each member box [x, y, side] (fractions), the patches whose centre lies inside it
    (at least the patch under the box centre), normalised to sum 1 (mean pooling)."""
    c = (torch.arange(G, dtype=torch.float32) + 0.5) / G
    rows = []
    for boxes in members:
        for x, y, side in boxes:
            inside = ((c[None, :] >= x) & (c[None, :] <= x + side) & (c[:, None] >= y) & (c[:, None] <= y + side)).float()
            if inside.sum() == 0:
                inside[min(G - 1, int((y + side / 2) * G)), min(G - 1, int((x + side / 2) * G))] = 1
            rows.append(inside.reshape(-1) / inside.sum())
    return torch.stack(rows) if rows else torch.zeros(0, G * G)


def region_loss(model: CLIPModel, hidden: torch.Tensor, scene_rows: list[int], members: list[list[dict]],
                tok: "bpe.ClipBpeTokenizer", rng: random.Random, G: int, device: str) -> torch.Tensor:
    """Grounding on P scenes: each member's patch tokens (through the CLS token's head, mean-pooled over its
    box) against the names of all members in the batch, symmetric InfoNCE; members of one name are positives
    of each other. Teaches patch tokens what is where, which the CLS-only CLIP loss does not ask for."""
    emb = model.patch_embeds(hidden[scene_rows][:, 1:])  # [Bs, G*G, E]
    masks = region_masks([[m["box"] for m in ms] for ms in members], G).to(device)  # [M, G*G]
    owner = torch.tensor([i for i, ms in enumerate(members) for _ in ms], device=device)
    regions = F.normalize(torch.einsum("mt,mte->me", masks, emb[owner]), dim=-1)  # [M, E]
    names = [m["name"].lower() for ms in members for m in ms]
    texts = [rng.choice(["{}", "a photo of {}", "an emoji of {}", "a {}"]).format(n) for n in names]
    ids, mask = tok.batch(texts, max_length=32)
    te = F.normalize(model.encode_text(torch.tensor(ids, device=device), torch.tensor(mask, device=device))[0], dim=-1)
    logits = model.logit_scale.exp() * te @ regions.t()  # [M, M]
    P = torch.tensor([[a == b for b in names] for a in names], device=device)
    return soft_clip_loss(logits, P)


# ----------------------------------------------------------------------------------------------------------
# validation: the EmojiTags protocol on validation emoji (name retrieval, label mAP)


@torch.no_grad()
def validate(model: CLIPModel, tok: bpe.ClipBpeTokenizer, val: Corpus, S: int, unseen: list[str], device: str) -> dict:
    """Plain-CLIP scores on EmojiScenes' B *validation* part (never test): name retrieval among the validation
    emoji's names and label mAP on single emoji; label mAP (all labels, and the unseen ones) on scenes; and how
    often a scene member's best-matching patch (patch_embeds vs its name) lies in its box, against chance."""
    model.eval()
    x = torch.from_numpy(np.array(val.images))  # a writable copy of the memory map
    if x.shape[1] != S:
        x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(S, S), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    embs, hids = [], []
    for i in range(0, len(x), 128):
        e, h = model.encode_image(normalise(x[i:i + 128]).to(device))
        embs.append(F.normalize(e, dim=-1).cpu())
        hids.append(F.normalize(model.patch_embeds(h)[:, 1:], dim=-1).cpu())
    img, patches = torch.cat(embs).numpy(), torch.cat(hids)

    def embed(texts):
        out = []
        for i in range(0, len(texts), 256):
            ids, mask = tok.batch(texts[i:i + 256], max_length=32)
            out.append(model.encode_text(torch.tensor(ids, device=device), torch.tensor(mask, device=device))[0].cpu())
        return F.normalize(torch.cat(out), dim=-1).numpy()

    single = np.array([it["kind"] == "single" for it in val.items])
    res = {}
    names = sorted({it["name"] for it in val.items if it["kind"] == "single"})
    name_idx = np.array([names.index(it["name"]) for it in val.items if it["kind"] == "single"])
    for tpl in ("{}", "an emoji of {}"):
        sim = img[single] @ embed([tpl.format(n) for n in names]).T  # [N, names]
        rank = (sim > sim[np.arange(len(sim)), name_idx][:, None]).sum(1)
        res[f"R@1 {tpl}"] = float((rank < 1).mean() * 100)
        res[f"R@5 {tpl}"] = float((rank < 5).mean() * 100)
    labels = sorted({l for it in val.items for l in it["labels"]})
    tpl = "a photo of {}"
    lab = embed([tpl.format(l) for l in labels])
    Y = np.array([[l in it["labels"] for l in labels] for it in val.items], dtype=np.float64)
    for part, sel in (("single", single), ("scene", ~single)):
        sim = img[sel] @ lab.T
        cols = [j for j in range(len(labels)) if Y[sel, j].sum() > 0]
        aps = {labels[j]: average_precision(sim[:, j], Y[sel, j]) for j in cols}
        res[f"mAP {part}"] = float(np.mean(list(aps.values())) * 100)
        u = [aps[l] for l in unseen if l in aps]
        res[f"mAP-unseen {part}"] = float(np.mean(u) * 100) if u else float("nan")
    # localisation on validation scenes: boxes are in corpus pixels; patches on a G x G grid
    G = int(round(patches.shape[1] ** 0.5))
    c = (np.arange(G) + 0.5) / G
    hit = rand = n = 0
    member_names = sorted({m["name"] for it in val.items for m in it.get("members", [])})
    name_emb = torch.from_numpy(embed([f"a photo of {m.lower()}" for m in member_names]))
    for i, it in enumerate(val.items):
        for m in it.get("members", []):
            bx, by, bw = (v / val.S for v in m["box"][:3])
            inside = ((c[None, :] >= bx) & (c[None, :] <= bx + bw) & (c[:, None] >= by) & (c[:, None] <= by + bw)).reshape(-1)
            best = int((patches[i] @ name_emb[member_names.index(m["name"])]).argmax())
            hit += bool(inside[best])
            rand += inside.mean()
            n += 1
    res["loc"] = 100 * hit / max(n, 1)
    res["loc random"] = 100 * rand / max(n, 1)
    res["chance R@1"] = 100 / len(names)
    model.train()
    return res


# ----------------------------------------------------------------------------------------------------------
# outputs


def loss_svg(history: list[dict], val_history: list[dict], path: str, title: str) -> None:
    """A dependency-free SVG: training loss (smoothed) against step, validation scores on a second axis."""
    W, H, L, R, T, Bm = 720, 360, 60, 60, 30, 40
    steps = [h["step"] for h in history]
    loss = [h["loss"] for h in history]
    sm, acc = [], None
    for v in loss:
        acc = v if acc is None else 0.95 * acc + 0.05 * v
        sm.append(acc)
    xmax = max(steps) if steps else 1
    ymax = max(loss) * 1.05 if loss else 1
    X = lambda s: L + (W - L - R) * s / max(xmax, 1)  # noqa: E731
    Y = lambda v: T + (H - T - Bm) * (1 - v / ymax)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
           f'<line x1="{L}" y1="{H - Bm}" x2="{W - R}" y2="{H - Bm}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - Bm}" stroke="black"/>']
    for k in range(6):
        v = ymax * k / 5
        out.append(f'<text x="{L - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        s = xmax * k / 5
        out.append(f'<text x="{X(s):.1f}" y="{H - Bm + 15}" text-anchor="middle">{int(s)}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">step</text>')
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in zip(steps, loss))
    out.append(f'<polyline points="{pts}" fill="none" stroke="#bbb" stroke-width="1"/>')
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in zip(steps, sm))
    out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    ly, lx = T + 14, W / 2  # legend, upper right (the loss falls away from it)
    out.append(f'<text x="{lx}" y="{ly}" fill="#1f77b4">training loss (EMA 0.95), left axis</text>')
    if val_history:
        V = lambda v: T + (H - T - Bm) * (1 - v / 50)  # noqa: E731  right axis: 0..50 (%)
        for k in range(6):
            out.append(f'<text x="{W - R + 5}" y="{V(k * 10) + 4:.1f}">{k * 10}</text>')
        for j, (col, key, name) in enumerate((("#d62728", "mAP scene", "val scene label mAP"),
                                              ("#2ca02c", "R@1 {}", "val name R@1 %"),
                                              ("#9467bd", "loc", "val localisation %")), start=1):
            pts = " ".join(f"{X(h['step']):.1f},{V(h[key]):.1f}" for h in val_history)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="2"/>')
            out.extend(f'<circle cx="{X(h["step"]):.1f}" cy="{V(h[key]):.1f}" r="3" fill="{col}"/>' for h in val_history)
            out.append(f'<text x="{lx}" y="{ly + 14 * j}" fill="{col}">{name}, right axis</text>')
    out.append("</svg>")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    os.replace(path + ".tmp", path)


def write_json(path: str, obj, indent: int | None = 2) -> None:
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")
    os.replace(path + ".tmp", path)


def flat(t: torch.Tensor) -> dict:
    data = t.detach().reshape(-1).tolist()
    if t.is_floating_point():
        data = [float(f"{x:.9g}") for x in data]
    return {"shape": list(t.shape), "data": data}


REFERENCE_TEXTS = ["a photo of dog", "an emoji of a red heart", "xylophone", ""]


def export_folder(model: CLIPModel, tok_dir: str, out: str, S: int, seed: int) -> None:
    from importlib import import_module
    make_clip = import_module("make_clip")
    model = model.eval()
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    write_json(os.path.join(out, "config.json"), model.config.to_hf_dict())
    write_json(os.path.join(out, "preprocessor_config.json"), make_clip.preprocessor_config(S, S))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        if os.path.abspath(tok_dir) != os.path.abspath(out):
            with open(os.path.join(tok_dir, name), "rb") as f:
                data = f.read()
            with open(os.path.join(out, name) + ".tmp", "wb") as f:
                f.write(data)
            os.replace(os.path.join(out, name) + ".tmp", os.path.join(out, name))
    export_onnx(model, os.path.join(out, "onnx"), patch_embeds=True)
    model.eval()  # the exporter restores its wrapper's mode (training, for a fresh module): BatchNorm must be in eval
    # reference outputs for the onnxruntime-node check: seeded pixels and a few prompts
    tok = bpe.ClipBpeTokenizer.from_dir(tok_dir)
    g = torch.Generator().manual_seed(seed + 1)
    pixels = torch.randn(2, 3, S, S, generator=g)
    ids, mask = tok.batch(REFERENCE_TEXTS)
    with torch.no_grad():
        ie, vh = model.encode_image(pixels)
        te, _ = model.encode_text(torch.tensor(ids), torch.tensor(mask))
    write_json(os.path.join(out, "reference.json"), {
        "about": "PyTorch (tools/pico-clip/train.py) outputs of this model, for tests/pico-clip-model.test.ts",
        "torch_version": torch.__version__,
        "vision": {"pixel_values": flat(pixels), "image_embeds": flat(ie),
                   "last_hidden_state_first_rows": flat(vh[:, :3])},
        "text": {"texts": REFERENCE_TEXTS, "input_ids": flat(torch.tensor(ids)), "text_embeds": flat(te)},
    }, indent=None)


# ----------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="folder written by tools/pico-clip/corpus.ts")
    ap.add_argument("--out", required=True, help="run folder: checkpoints, log, exported model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=30, help="training time budget (wall clock)")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: as many as --minutes allow)")
    ap.add_argument("--max-minutes", type=float, default=0, help="with --steps: stop early after this long (0: never)")
    ap.add_argument("--image-size", type=int, default=0, help="input size (default: the corpus render size)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--emoji-share", type=float, default=0.6, help="share of each batch drawn from single emoji")
    ap.add_argument("--scene-share", type=float, default=0.25, help="share of each batch drawn from P scenes")
    ap.add_argument("--region-weight", type=float, default=0.5,
                    help="weight of the grounding loss on P scene members' patch tokens (0: plain CLIP loss)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (nothing requires a GPU)")
    ap.add_argument("--p-name", type=float, default=0.35)
    ap.add_argument("--p-words", type=float, default=0.4)
    ap.add_argument("--augment", type=float, default=1.0, help="augmentation strength (0 = none)")
    ap.add_argument("--soft", type=int, default=1, help="1: captions that fit several images count them all positive")
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--text-width", type=int, default=128)
    ap.add_argument("--text-layers", type=int, default=3)
    ap.add_argument("--proj", type=int, default=128)
    ap.add_argument("--stem", default="24,48,96", help="conv stem channels (empty: plain ViT patchify)")
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=20, help="steps between progress lines")
    ap.add_argument("--val-every", type=float, default=5.0, help="minutes between validations")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--export-only", action="store_true", help="export the last checkpoint and stop")
    args = ap.parse_args()
    bad = lambda flag, want: ap.error(f"{flag} must be {want}")  # noqa: E731
    if not 0 <= args.emoji_share <= 1 or not 0 <= args.scene_share <= 1 or args.emoji_share + args.scene_share > 1:
        bad("--emoji-share + --scene-share", "shares in 0..1 summing to at most 1")
    if args.region_weight < 0:
        bad("--region-weight", ">= 0")
    if args.batch < 2 or args.steps < 0 or args.threads < 1 or args.minutes <= 0:
        bad("--batch/--steps/--threads/--minutes", "positive (batch >= 2)")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        bad("--device", "cpu or cuda[:N]")
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (run with --device cpu)")
    dev = args.device

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    try:
        index = check_corpus(args.corpus)  # refuses a corpus that fails the leak check
        corpus = Corpus(args.corpus, "images.u8", "captions.jsonl", index)
        val = Corpus(args.corpus, "val.u8", "val.jsonl", index)
    except CorpusError as e:
        sys.exit(f"train.py: --corpus {e}")
    S = args.image_size or corpus.S
    unseen = corpus.index["labels"]["unseen"]

    tok_dir = os.path.join(args.out, "model")
    os.makedirs(tok_dir, exist_ok=True)
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")) or not args.export_only:
        texts = bpe_texts(corpus, val)
        vocab, merges = bpe.learn_bpe(texts, args.vocab, 2)
        bpe.write_hf_tokenizer(tok_dir, vocab, merges)
    tok = bpe.ClipBpeTokenizer.from_dir(tok_dir)
    print(f"tokenizer: {len(tok.vocab)} tokens ({time.time() - t_start:.0f} s)", flush=True)

    stem = [int(c) for c in args.stem.split(",") if c]
    cfg = CLIPConfig(
        text_config=CLIPTextConfig(vocab_size=len(tok.vocab), hidden_size=args.text_width,
                                   intermediate_size=4 * args.text_width, num_hidden_layers=args.text_layers,
                                   num_attention_heads=max(1, args.text_width // 64), max_position_embeddings=77,
                                   bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id),
        vision_config=CLIPVisionConfig(image_size=S, patch_size=args.patch, hidden_size=args.width,
                                       intermediate_size=4 * args.width, num_hidden_layers=args.layers,
                                       num_attention_heads=max(1, args.width // 64), stem_channels=stem),
        projection_dim=args.proj)
    if S % args.patch:
        ap.error(f"--image-size {S} is not a multiple of --patch {args.patch}")
    model = CLIPModel(cfg)
    init_weights(model, torch.Generator().manual_seed(args.seed))
    model.to(dev)
    n_params = count_parameters(model)
    print(f"model: {n_params:,} parameters (vision {count_parameters(model.vision_model):,}, "
          f"text {count_parameters(model.text_model):,}); {S} px, {(S // args.patch) ** 2} tokens", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    history, val_history, step, trained_s = [], [], 0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        history, val_history, step, trained_s = ck["history"], ck["val_history"], ck["step"], ck["trained_s"]
        rng.setstate(ck["rng"])
        g.set_state(ck["g"])
        print(f"resumed at step {step} ({trained_s / 60:.1f} min trained)", flush=True)

    def save_ckpt():
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "history": history, "val_history": val_history,
                    "step": step, "trained_s": trained_s, "rng": rng.getstate(), "g": g.get_state(), "args": vars(args)},
                   ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    def finish():
        model.cpu().eval()  # export and reference outputs on the CPU, whatever trained it
        export_folder(model, tok_dir, tok_dir, S, args.seed)
        info = {"args": vars(args), "parameters": n_params, "vision_parameters": count_parameters(model.vision_model),
                "text_parameters": count_parameters(model.text_model), "steps": step,
                "train_minutes": round(trained_s / 60, 1), "samples_seen": step * args.batch,
                "corpus": corpus.index, "tokenizer_tokens": len(tok.vocab), "torch": torch.__version__,
                "threads": args.threads, "history": history, "validation": val_history}
        write_json(os.path.join(args.out, "training.json"), info)
        loss_svg(history, val_history, os.path.join(args.out, "loss.svg"),
                 f"pico-CLIP: {n_params / 1e6:.1f} M parameters, {S} px, {step} steps x {args.batch}, "
                 f"{trained_s / 60:.0f} min on " + (args.device if dev != "cpu" else
                                                     f"{args.threads} CPU thread{'s' if args.threads > 1 else ''}"))
        print(f"exported {tok_dir}", flush=True)

    if args.export_only:
        finish()
        return

    # SIGTERM (kill PID): save a checkpoint at the end of the current step and stop; the same command resumes.
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    sampler = BatchSampler(corpus, args.emoji_share, args.scene_share, rng)
    captioner = CaptionSampler(rng, args.p_name, args.p_words)
    if S != corpus.S:  # resample the corpus once (antialiased bicubic, as the preprocessor resizes test images)
        corpus.images = torch.cat([F.interpolate(torch.from_numpy(np.array(corpus.images[i:i + 1024])).permute(0, 3, 1, 2).float(),
                                                 size=(S, S), mode="bicubic", antialias=True, align_corners=False)
                                   .clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
                                   for i in range(0, len(corpus.images), 1024)]).numpy()
        print(f"corpus resampled to {S} px ({time.time() - t_start:.0f} s)", flush=True)
    is_icon = torch.tensor([it["kind"] == "icon" for it in corpus.items])
    is_scene = torch.tensor([it["kind"] == "scene" for it in corpus.items])
    G = S // args.patch
    budget_s = args.minutes * 60
    est_steps = args.steps or None
    t_last_ckpt = t_last_val = time.time()
    warmup = 100
    model.train()
    t_loop = time.time()
    trained_at_loop = trained_s
    while True:
        elapsed = trained_at_loop + (time.time() - t_loop)
        if args.steps and (step >= args.steps or (args.max_minutes and elapsed >= args.max_minutes * 60)):
            break
        if not args.steps and elapsed >= budget_s:
            break
        # schedule: linear warmup, cosine to 0 over the budget (steps, or time when training by minutes)
        frac = step / args.steps if args.steps else elapsed / budget_s
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = sampler(args.batch)
        caps = [captioner(corpus.items[i]) for i in idx]
        texts = [c[0] for c in caps]
        no_flip = torch.tensor([bool(LATERAL & set(words_of(t))) for t in texts])
        ii = torch.tensor(idx)
        pix = normalise(augment(corpus.take(idx), is_icon[ii], no_flip, g, S, args.augment, is_scene[ii])).to(dev)
        image_embeds, hidden = model.encode_image(pix)
        text_embeds = encode_texts_by_length(model, tok, texts, dev)
        logits_per_text = model.logit_scale.exp() * F.normalize(text_embeds, dim=-1) @ F.normalize(image_embeds, dim=-1).t()
        P = positives([c[1] for c in caps], idx, corpus) if args.soft else torch.eye(len(idx), dtype=torch.bool)
        clip_l = soft_clip_loss(logits_per_text, P.to(dev))
        loss = clip_l
        scene_rows = [r for r, i in enumerate(idx) if is_scene[i]]
        region_l = torch.zeros(())
        if args.region_weight > 0 and scene_rows:
            region_l = region_loss(model, hidden, scene_rows, [corpus.items[idx[r]]["members"] for r in scene_rows],
                                   tok, rng, G, dev)
            loss = clip_l + args.region_weight * region_l
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        trained_s = trained_at_loop + (time.time() - t_loop)
        history.append({"step": step, "loss": round(loss.item(), 4), "clip": round(clip_l.item(), 4),
                        "region": round(region_l.item(), 4), "lr": lr, "t": round(trained_s, 1)})
        if step % args.log_every == 0:
            print(f"step {step} loss {loss.item():.3f} (clip {clip_l.item():.3f} region {region_l.item():.3f}) lr {lr:.2e} scale {model.logit_scale.exp().item():.1f} "
                  f"{trained_s / step:.2f} s/step {trained_s / 60:.1f} min", flush=True)
        if time.time() - t_last_val >= args.val_every * 60:
            v = validate(model, tok, val, S, unseen, dev)
            val_history.append({"step": step, **{k: round(x, 2) for k, x in v.items()}})
            print("val", json.dumps(val_history[-1]), flush=True)
            t_last_val = time.time()
        if time.time() - t_last_ckpt >= args.ckpt_minutes * 60:
            save_ckpt()
            t_last_ckpt = time.time()
        if stop:
            save_ckpt()
            print(f"stopped by SIGTERM at step {step}: checkpoint saved, rerun the same command to resume", flush=True)
            return
    del est_steps
    v = validate(model, tok, val, S, unseen, dev)
    val_history.append({"step": step, **{k: round(x, 2) for k, x in v.items()}})
    print("val", json.dumps(val_history[-1]), flush=True)
    save_ckpt()
    finish()
    print(f"done in {(time.time() - t_start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
