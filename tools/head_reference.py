#!/usr/bin/python3
"""PyTorch reference of the CLIP-Decoder head and its losses (docs/method.md §1-4).

Two jobs:
  fixtures (default)  write tests/fixtures/head-*.safetensors + head-*.json: fixed weights, inputs, targets and
                      (for one case) dropout masks -> logits, attention maps, both losses, every parameter
                      gradient, and the parameters + EMA after 3 Adam + OneCycle steps. The TS tests compare
                      against these, so CI needs no Python.
  --bench             time one training step (forward, backward, Adam, OneCycle, EMA) at the benchmark shapes
                      and print one JSON line (bench/train.ts spawns this).

Run with Debian's PyTorch: /usr/bin/python3 tools/head_reference.py [--out tests/fixtures]
The decoder layer is built from the official modules (nn.MultiheadAttention, nn.LayerNorm, nn.Dropout as in
ML-Decoder's TransformerDecoderLayerOptimal). To replay dropout masks, an explicit functional copy of the same
layer multiplies by given masks; the script checks that copy against the modules before using it.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------------------
# the head


class RefHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C, E, D, H, Fd = cfg["inputDim"], cfg["queryDim"], cfg["dModel"], cfg["heads"], cfg["ffnDim"]
        p = cfg["dropout"]
        self.zsl = cfg["mode"] == "zero-shot"
        self.embed = nn.Linear(C, D)  # official: embed_standart
        if self.zsl:
            self.query_proj = nn.Linear(E, D)  # official: wordvec_proj
        else:
            K = cfg["numGroups"]
            self.register_buffer("query_embed", nn.Embedding(K, D).weight.detach().clone())  # fixed N(0, 1)
        # TransformerDecoderLayerOptimal
        self.norm1 = nn.LayerNorm(D, eps=cfg["layerNormEps"])
        self.dropout = nn.Dropout(p)
        self.dropout1 = nn.Dropout(p)
        self.dropout2 = nn.Dropout(p)
        self.dropout3 = nn.Dropout(p)
        self.attn = nn.MultiheadAttention(D, H, dropout=p)
        self.linear1 = nn.Linear(D, Fd)
        self.linear2 = nn.Linear(Fd, D)
        self.norm2 = nn.LayerNorm(D, eps=cfg["layerNormEps"])
        self.norm3 = nn.LayerNorm(D, eps=cfg["layerNormEps"])
        if self.zsl:
            self.fc_weight = nn.Parameter(torch.empty(D, 1))
            self.fc_bias = nn.Parameter(torch.empty(1))
        else:
            K, N = cfg["numGroups"], cfg["numClasses"]
            g = int(N / K + 0.999)
            self.fc_weight = nn.Parameter(torch.empty(K, D, g))
            self.fc_bias = nn.Parameter(torch.empty(N))
        nn.init.xavier_normal_(self.fc_weight)
        nn.init.constant_(self.fc_bias, 0)
        P = cfg["clipProjDim"]
        if P > 0:
            self.clip_image_proj = nn.Parameter(torch.randn(P, D))
            self.clip_text_proj = nn.Parameter(torch.randn(P, cfg["captionDim"]))
            self.clip_log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def named_for_ts(self):
        """(TS name, tensor) for every parameter and buffer, in the TS head's order."""
        out = [("embed.weight", self.embed.weight), ("embed.bias", self.embed.bias)]
        if self.zsl:
            out += [("query_proj.weight", self.query_proj.weight), ("query_proj.bias", self.query_proj.bias)]
        else:
            out += [("query_embed", self.query_embed)]
        out += [
            ("norm1.weight", self.norm1.weight), ("norm1.bias", self.norm1.bias),
            ("attn.in_proj_weight", self.attn.in_proj_weight), ("attn.in_proj_bias", self.attn.in_proj_bias),
            ("attn.out_proj.weight", self.attn.out_proj.weight), ("attn.out_proj.bias", self.attn.out_proj.bias),
            ("norm2.weight", self.norm2.weight), ("norm2.bias", self.norm2.bias),
            ("linear1.weight", self.linear1.weight), ("linear1.bias", self.linear1.bias),
            ("linear2.weight", self.linear2.weight), ("linear2.bias", self.linear2.bias),
            ("norm3.weight", self.norm3.weight), ("norm3.bias", self.norm3.bias),
            ("fc.weight", self.fc_weight), ("fc.bias", self.fc_bias),
        ]
        if self.cfg["clipProjDim"] > 0:
            out += [("clip.image_proj.weight", self.clip_image_proj), ("clip.text_proj.weight", self.clip_text_proj),
                    ("clip.log_scale", self.clip_log_scale)]
        return out

    def queries(self, q):
        if self.zsl:
            return F.relu(self.query_proj(q))  # [N, D]
        return self.query_embed  # [K, D]

    # the official layer, from the modules
    def decoder_official(self, tgt, memory):
        tgt = tgt + self.dropout1(tgt)
        tgt = self.norm1(tgt)
        tgt2, attn = self.attn(tgt, memory, memory)
        tgt = tgt + self.dropout2(tgt2)
        tgt = self.norm2(tgt)
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        tgt = tgt + self.dropout3(tgt2)
        tgt = self.norm3(tgt)
        return tgt, attn

    # the same layer written out, multiplying by given keep masks (seq-first layouts)
    def decoder_masked(self, tgt, memory, masks, p):
        s = 1.0 / (1.0 - p) if p > 0 else 1.0
        Nq, B, D = tgt.shape
        T = memory.shape[0]
        H = self.attn.num_heads
        hd = D // H
        tgt = tgt + tgt * masks["drop1"] * s
        tgt = self.norm1(tgt)
        W, b = self.attn.in_proj_weight, self.attn.in_proj_bias
        q = F.linear(tgt, W[:D], b[:D])
        k = F.linear(memory, W[D:2 * D], b[D:2 * D])
        v = F.linear(memory, W[2 * D:], b[2 * D:])
        q = q.contiguous().view(Nq, B * H, hd).transpose(0, 1)  # [B*H, Nq, hd]
        k = k.contiguous().view(T, B * H, hd).transpose(0, 1)
        v = v.contiguous().view(T, B * H, hd).transpose(0, 1)
        w = torch.softmax(torch.bmm(q / math.sqrt(hd), k.transpose(1, 2)), dim=-1)  # [B*H, Nq, T]
        wd = w * masks["attn"] * s
        o = torch.bmm(wd, v).transpose(0, 1).contiguous().view(Nq, B, D)
        tgt2 = self.attn.out_proj(o)
        tgt = tgt + tgt2 * masks["drop2"] * s
        tgt = self.norm2(tgt)
        tgt2 = self.linear2(F.relu(self.linear1(tgt)) * masks["ffn"] * s)
        tgt = tgt + tgt2 * masks["drop3"] * s
        tgt = self.norm3(tgt)
        attn = w.view(B, H, Nq, T).mean(dim=1)
        return tgt, attn

    def forward(self, x, q=None, masks=None):
        """x [B, T, C], q [N, E] -> logits [B, L], attention [B, Nq, T], pooled memory [B, D]."""
        m = F.relu(self.embed(x))  # [B, T, D]
        B = x.shape[0]
        t = self.queries(q)
        tgt = t.unsqueeze(1).expand(-1, B, -1)  # [Nq, B, D]
        mem = m.transpose(0, 1)  # [T, B, D]
        if masks is None:
            h, attn = self.decoder_official(tgt, mem)
        else:
            h, attn = self.decoder_masked(tgt, mem, masks, self.cfg["dropout"])
        h = h.transpose(0, 1)  # [B, Nq, D]
        if self.zsl:
            logits = (h @ self.fc_weight).squeeze(-1) + self.fc_bias
        else:
            K = h.shape[1]
            out = torch.stack([h[:, i, :] @ self.fc_weight[i] for i in range(K)], dim=1)  # [B, K, g]
            logits = out.flatten(1)[:, : self.cfg["numClasses"]] + self.fc_bias
        return logits, attn, m.mean(1)


def asl_loss(x, y, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8):
    """The official AsymmetricLoss (disable_torch_grad_focal_loss=True)."""
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + clip).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    with torch.no_grad():
        pt = xs_pos * y + xs_neg * (1 - y)
        w = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -(loss * w).sum()


def l2n(z):
    return z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)


def clip_loss(head, pooled, captions):
    zi = l2n(F.linear(pooled, head.clip_image_proj))
    zj = l2n(F.linear(captions, head.clip_text_proj))
    logits = torch.exp(head.clip_log_scale) * zi @ zj.t()
    labels = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def make_optimizer(head, lr, wd, total_steps, pct_start):
    decay = [p for n, p in head.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in head.named_parameters() if p.ndim < 2]
    opt = torch.optim.Adam([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": wd}], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=pct_start)
    return opt, sched


# ---------------------------------------------------------------------------------------------------------
# safetensors (written by hand: 8-byte little-endian header length, JSON header, raw little-endian data)


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            dtype, raw = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.uint8:
            dtype, raw = "U8", t.numpy().tobytes()
        else:
            raise ValueError(f"unsupported dtype {t.dtype} for {name}")
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------------------
# fixtures


SMALL = dict(B=3, T=5, C=12, E=8, D=16, H=2, F=24, N=7, P=6)


def small_cfg(mode, dropout):
    s = SMALL
    cfg = {
        "mode": mode, "inputDim": s["C"], "queryDim": s["E"], "dModel": s["D"], "heads": s["H"], "ffnDim": s["F"],
        "dropout": dropout, "layerNormEps": 1e-5, "numClasses": 0, "numGroups": 0, "clipProjDim": s["P"],
        "captionDim": s["E"],
    }
    if mode == "closed-set":
        cfg["numClasses"] = s["N"]
        cfg["numGroups"] = 3
    return cfg


def perturb(head, gen):
    """Move the parameters PyTorch initialises to constants (LayerNorm 1/0, zero biases) off those values, so
    the fixtures also test how each one enters the computation."""
    with torch.no_grad():
        for name, t in head.named_for_ts():
            if name in ("norm1.weight", "norm2.weight", "norm3.weight"):
                t.add_(0.2 * torch.randn(t.shape, generator=gen))
            elif name in ("norm1.bias", "norm2.bias", "norm3.bias", "attn.in_proj_bias", "attn.out_proj.bias", "fc.bias"):
                t.add_(0.1 * torch.randn(t.shape, generator=gen))


def check_masked_equals_official(head, x, q):
    """With all-ones masks and dropout off, the functional copy must equal the modules."""
    B, T = x.shape[0], x.shape[1]
    Nq = q.shape[0] if head.zsl else head.cfg["numGroups"]
    D, H, Fd = head.cfg["dModel"], head.cfg["heads"], head.cfg["ffnDim"]
    ones = {"drop1": torch.ones(Nq, B, D), "attn": torch.ones(B * H, Nq, T), "drop2": torch.ones(Nq, B, D),
            "ffn": torch.ones(Nq, B, Fd), "drop3": torch.ones(Nq, B, D)}
    p = head.cfg["dropout"]
    head.cfg["dropout"] = 0.0
    head.eval()
    with torch.no_grad():
        a, attn_a, _ = head(x, q)
        b, attn_b, _ = head(x, q, ones)
    head.cfg["dropout"] = p
    head.train()
    err = (a - b).abs().max().item()
    err_attn = (attn_a - attn_b).abs().max().item()
    assert err < 1e-5 and err_attn < 1e-6, f"functional layer differs from the modules: {err}, {err_attn}"


def ts_masks_to_torch(m, B, Nq, T, H):
    """TS layouts ([B, Nq, ·] and [H, B, Nq, T]) -> the seq-first layouts of the PyTorch layer."""
    return {
        "drop1": m["drop1"].permute(1, 0, 2).float(),
        "attn": m["attn"].permute(1, 0, 2, 3).reshape(B * H, Nq, T).float(),
        "drop2": m["drop2"].permute(1, 0, 2).float(),
        "ffn": m["ffn"].permute(1, 0, 2).float(),
        "drop3": m["drop3"].permute(1, 0, 2).float(),
    }


def write_case(out_dir, name, mode, dropout, seed, steps):
    s = SMALL
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    cfg = small_cfg(mode, dropout)
    head = RefHead(cfg)
    perturb(head, gen)
    B, T, C, E, N, D, H, Fd = s["B"], s["T"], s["C"], s["E"], s["N"], s["D"], s["H"], s["F"]
    x = torch.randn(B, T, C, generator=gen)
    q = torch.randn(N, E, generator=gen)
    captions = torch.randn(B, E, generator=gen)
    L = N
    targets = (torch.rand(B, L, generator=gen) < 0.35).float()
    targets[0, 0] = 1.0
    Nq = N if mode == "zero-shot" else cfg["numGroups"]
    alpha, beta = 0.5, 1.0
    check_masked_equals_official(head, x, q)

    tensors = {}
    for n, t in head.named_for_ts():
        tensors["param." + n] = t.detach().clone()
    tensors["input.features"] = x
    tensors["input.targets"] = targets
    tensors["input.captions"] = captions
    if mode == "zero-shot":
        tensors["input.queries"] = q

    masks_torch = None
    if dropout > 0:
        mg = torch.Generator().manual_seed(seed + 2)
        ts_masks = {
            "drop1": torch.rand(B, Nq, D, generator=mg) >= dropout,
            "attn": torch.rand(H, B, Nq, T, generator=mg) >= dropout,
            "drop2": torch.rand(B, Nq, D, generator=mg) >= dropout,
            "ffn": torch.rand(B, Nq, Fd, generator=mg) >= dropout,
            "drop3": torch.rand(B, Nq, D, generator=mg) >= dropout,
        }
        for k, v in ts_masks.items():
            tensors["mask." + k] = v.to(torch.uint8)
        masks_torch = ts_masks_to_torch(ts_masks, B, Nq, T, H)

    # forward + backward at the initial weights
    head.train()
    if dropout == 0:
        head.eval()  # identical to train() at p = 0; also what inference runs
    logits, attn, pooled = head(x, q, masks_torch)
    l_asl = asl_loss(logits, targets)
    l_clip = clip_loss(head, pooled, captions)
    loss = beta * l_asl + alpha * l_clip
    head.zero_grad()
    loss.backward()
    tensors["out.logits"] = logits.detach()
    tensors["out.attention"] = attn.detach()  # [B, Nq, T], averaged over heads
    for n, t in head.named_for_ts():
        if t.requires_grad:
            tensors["grad." + n] = t.grad.detach().clone()
    meta = {"config": cfg, "alpha": alpha, "beta": beta, "loss": loss.item(), "asl": l_asl.item(), "clip": l_clip.item()}

    if steps > 0:
        assert dropout == 0, "the training-steps fixture runs without dropout"
        lr, wd, total, pct, ema_decay = 3e-3, 1e-2, 10, 0.2, 0.9
        opt, sched = make_optimizer(head, lr, wd, total, pct)
        ema = {n: t.detach().clone() for n, t in head.named_for_ts()}
        hist = []
        for step in range(steps):
            group = opt.param_groups[0]
            logits, _, pooled = head(x, q)
            l_asl = asl_loss(logits, targets)
            l_clip = clip_loss(head, pooled, captions)
            loss = beta * l_asl + alpha * l_clip
            opt.zero_grad()
            loss.backward()
            hist.append({"lr": group["lr"], "beta1": group["betas"][0], "loss": loss.item()})
            opt.step()
            sched.step()
            with torch.no_grad():
                for n, t in head.named_for_ts():
                    ema[n].mul_(ema_decay).add_(t.detach(), alpha=1 - ema_decay)
        for n, t in head.named_for_ts():
            tensors[f"step{steps}." + n] = t.detach().clone()
            tensors[f"ema{steps}." + n] = ema[n]
        meta["train"] = {"steps": steps, "maxLr": lr, "weightDecay": wd, "totalSteps": total, "pctStart": pct,
                         "emaDecay": ema_decay, "history": hist}

    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, name + ".safetensors"), tensors, {"torch": torch.__version__})
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {name}: loss {meta['loss']:.6f} (asl {meta['asl']:.6f}, clip {meta['clip']:.6f})")


# ---------------------------------------------------------------------------------------------------------
# benchmark


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {"mode": "zero-shot", "inputDim": args.C, "queryDim": args.E, "dModel": args.D, "heads": args.heads,
           "ffnDim": args.F, "dropout": 0.1, "layerNormEps": 1e-5, "numClasses": 0, "numGroups": 0,
           "clipProjDim": args.P, "captionDim": args.E}
    head = RefHead(cfg)
    head.train()
    x = torch.randn(args.B, args.T, args.C)
    q = torch.randn(args.N, args.E)
    captions = torch.randn(args.B, args.E)
    targets = (torch.rand(args.B, args.N) < 0.05).float()
    opt, sched = make_optimizer(head, 1e-4, 1e-2, args.warmup + args.steps + 1, 0.2)
    ema = {n: t.detach().clone() for n, t in head.named_for_ts()}

    def step():
        logits, _, pooled = head(x, q)
        loss = asl_loss(logits, targets) + 1.0 * clip_loss(head, pooled, captions)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for n, t in head.named_for_ts():
                ema[n].mul_(0.9997).add_(t.detach(), alpha=1 - 0.9997)
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    cfgs = torch.__config__.show()
    blas = "unknown"
    for part in cfgs.split(","):
        if "BLAS_INFO" in part:
            blas = part.split("=")[1].strip()
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "blas_info": blas,
                      "median_ms": 1000 * times[len(times) // 2], "min_ms": 1000 * times[0], "steps": args.steps}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    for k, v in dict(B=32, T=49, C=768, E=512, D=768, N=80, F=2048, P=512).items():
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--heads", type=int, default=8)
    args = ap.parse_args()
    if args.bench:
        bench(args)
        return
    torch.set_num_threads(1)
    write_case(args.out, "head-zsl", "zero-shot", 0.0, seed=1, steps=3)
    write_case(args.out, "head-zsl-dropout", "zero-shot", 0.1, seed=2, steps=0)
    write_case(args.out, "head-closed", "closed-set", 0.0, seed=3, steps=3)
    write_case(args.out, "head-closed-dropout", "closed-set", 0.1, seed=4, steps=0)


if __name__ == "__main__":
    sys.exit(main())
