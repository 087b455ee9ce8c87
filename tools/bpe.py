"""CLIP-style byte-level BPE: learn merges from a list of texts, encode text exactly as Hugging Face's
CLIPTokenizerFast does, and write the tokenizer files of a Hugging Face CLIP folder.

The pipeline (the same one `openai/clip-vit-base-patch32`'s tokenizer.json describes):
  normalise   NFC, every whitespace run -> " ", lower-case
  pre-split   CLIP's regex  's|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+  (matches kept, rest dropped)
  byte-level  each word's UTF-8 bytes mapped to printable characters (GPT-2's table), so no word is ever unknown
  BPE         last character of a word carries the suffix "</w>"; merges applied lowest rank first
  specials    <|startoftext|> ... <|endoftext|> around the ids; pad = <|endoftext|>

Vocabulary layout (as CLIP's): 256 byte characters, the same 256 with "</w>", merged tokens in merge order,
then <|startoftext|>, <|endoftext|>. The specials are last, so EOS has the highest id and HF's pooling rule
(argmax of input_ids) finds it.

Standard library only: Debian's python3 has no `regex` module, so the \\p{L}/\\p{N} classes are written as a
small scanner over unicodedata categories.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata
from collections import Counter
from typing import Iterable

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
SUFFIX = "</w>"
MODEL_MAX_LENGTH = 77
SPLIT_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_WHITESPACE = re.compile(r"\s+")
_SPECIALS = re.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")


def byte_alphabet() -> list[tuple[int, str]]:
    """GPT-2's reversible byte -> printable character table, in CLIP's vocabulary order:
    printable Latin-1 bytes keep their own character, the other 68 bytes map to U+0100 onwards."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = [(b, chr(b)) for b in printable]
    n = 0
    for b in range(256):
        if b not in printable:
            table.append((b, chr(256 + n)))
            n += 1
    return table


BYTE_TO_CHAR = dict(byte_alphabet())


def normalize(text: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).lower()


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] == "L"


def _is_number(c: str) -> bool:
    return unicodedata.category(c)[0] == "N"


def pre_tokenize(text: str) -> list[str]:
    """CLIP's split regex applied to normalised text, leftmost-first like a regex engine."""
    words, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        contraction = next((t for t in CONTRACTIONS if text.startswith(t, i)), None)
        if contraction is not None:
            words.append(contraction)
            i += len(contraction)
        elif _is_letter(c):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
            words.append(text[i:j])
            i = j
        elif _is_number(c):
            words.append(c)  # numbers split digit by digit
            i += 1
        elif c.isspace():
            i += 1
        else:
            j = i + 1
            while j < n and not (text[j].isspace() or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
            words.append(text[i:j])
            i = j
    return words


def word_symbols(word: str) -> list[str]:
    """A pre-token as BPE's starting symbols: one printable character per UTF-8 byte, suffix on the last."""
    chars = [BYTE_TO_CHAR[b] for b in word.encode("utf-8")]
    chars[-1] += SUFFIX
    return chars


# ----------------------------------------------------------------------------------------------------------
# learning


def learn_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn merges until the vocabulary (bytes + merged tokens + 2 specials) reaches vocab_size or no pair
    occurs min_frequency times. Ties in pair count go to the lexicographically smallest pair, so the result
    depends on the texts only. Returns (vocab token -> id, merges in rank order)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pre_tokenize(normalize(text)))
    words = [word_symbols(w) for w in sorted(counts)]
    freqs = [counts[w] for w in sorted(counts)]

    vocab_list = [ch for _, ch in byte_alphabet()]
    vocab_list += [ch + SUFFIX for ch in vocab_list]
    known = set(vocab_list)
    merges: list[tuple[str, str]] = []

    # pair -> total count, pair -> words holding it; a heap of (-count, pair) with stale entries skipped
    pair_count: Counter[tuple[str, str]] = Counter()
    pair_words: dict[tuple[str, str], set[int]] = {}
    for wi, (syms, f) in enumerate(zip(words, freqs)):
        for p in zip(syms, syms[1:]):
            pair_count[p] += f
            pair_words.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    while len(vocab_list) + 2 < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue  # stale entry
        if -neg < min_frequency:
            break
        a, b = pair
        merged = a + b
        merges.append(pair)
        if merged not in known:  # two merge paths can spell the same token; it gets one id
            known.add(merged)
            vocab_list.append(merged)
        changed: set[tuple[str, str]] = set()
        for wi in sorted(pair_words.pop(pair, ())):
            syms, f = words[wi], freqs[wi]
            for p in zip(syms, syms[1:]):
                pair_count[p] -= f
                changed.add(p)
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                pair_words.setdefault(p, set()).add(wi)
                changed.add(p)
        for p in changed:
            c = pair_count[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_count[p]
                pair_words.pop(p, None)

    vocab_list += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


# ----------------------------------------------------------------------------------------------------------
# encoding


class ClipBpeTokenizer:
    """Encodes like Hugging Face's CLIPTokenizerFast / transformers.js on a tokenizer.json written below."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.bos_id = vocab[BOS]
        self.eos_id = vocab[EOS]
        self.pad_id = self.eos_id
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_dir(cls, path: str) -> "ClipBpeTokenizer":
        with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
            model = json.load(f)["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return cls(model["vocab"], merges)

    def bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        syms = word_symbols(word)
        while len(syms) > 1:
            # the lowest-ranked adjacent pair is merged everywhere it occurs, left to right
            best = min(zip(syms, syms[1:]), key=lambda p: self.ranks.get(p, 1 << 62))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        self._cache[word] = syms
        return syms

    def tokenize(self, text: str) -> list[str]:
        """Sub-word tokens of text, without the specials. Literal <|startoftext|>/<|endoftext|> in the text
        become those tokens, as HF's added-token extraction does."""
        tokens: list[str] = []
        for part in _SPECIALS.split(text):
            if part in (BOS, EOS):
                tokens.append(part)
                continue
            for w in pre_tokenize(normalize(part)):
                tokens.extend(self.bpe(w))
        return tokens

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """[BOS] ids [EOS]; with max_length, the content is truncated so the whole fits (EOS kept)."""
        ids = [self.vocab[t] for t in self.tokenize(text)]  # every byte symbol is in the vocab: no unknowns
        if max_length is not None:
            ids = ids[: max(0, max_length - 2)]
        return [self.bos_id] + ids + [self.eos_id]

    def batch(self, texts: list[str], max_length: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
        """Ids padded with EOS to the longest, and the attention mask (1 = real token)."""
        seqs = [self.encode(t, max_length) for t in texts]
        width = max(len(s) for s in seqs)
        ids = [s + [self.pad_id] * (width - len(s)) for s in seqs]
        mask = [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
        return ids, mask


# ----------------------------------------------------------------------------------------------------------
# Hugging Face files


def _added_token(content: str) -> dict:
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True}


def tokenizer_json(vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict:
    bos_id, eos_id = vocab[BOS], vocab[EOS]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, **_added_token(t), "special": True} for t, i in ((BOS, bos_id), (EOS, eos_id))],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
                {"type": "Lowercase"},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": [EOS, eos_id],
            "cls": [BOS, bos_id],
            "trim_offsets": False,
            "add_prefix_space": False,
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": EOS,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": SUFFIX,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def write_hf_tokenizer(out_dir: str, vocab: dict[str, int], merges: list[tuple[str, str]],
                       model_max_length: int = MODEL_MAX_LENGTH) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt."""
    os.makedirs(out_dir, exist_ok=True)
    for a, b in merges:
        assert " " not in a + b, "byte-level tokens never hold a space"
    bos_id, eos_id = vocab[BOS], vocab[EOS]
    assert eos_id == max(vocab.values()), "EOS must have the highest id (HF pools text at argmax(input_ids))"

    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): {**_added_token(t), "special": True} for t, i in ((BOS, bos_id), (EOS, eos_id))},
        "bos_token": BOS,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": EOS,
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": EOS,
    }
    special = {"bos_token": _added_token(BOS), "eos_token": _added_token(EOS), "pad_token": EOS,
               "unk_token": _added_token(EOS)}
    _write_json(os.path.join(out_dir, "tokenizer.json"), tokenizer_json(vocab, merges), indent=None)
    _write_json(os.path.join(out_dir, "tokenizer_config.json"), config)
    _write_json(os.path.join(out_dir, "special_tokens_map.json"), special)
    _write_json(os.path.join(out_dir, "vocab.json"), vocab, indent=None)
    _write_text(os.path.join(out_dir, "merges.txt"), "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def _write_json(path: str, obj, indent: int | None = 2) -> None:
    _write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic: never a half-written file


if __name__ == "__main__":
    import sys
    tok = ClipBpeTokenizer.from_dir(sys.argv[1])
    for t in sys.argv[2:]:
        print(json.dumps(t), tok.tokenize(t), tok.encode(t))
