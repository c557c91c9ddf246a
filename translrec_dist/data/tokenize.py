"""Tokenizers (pretrained, or a WordPiece vocabulary trained on the data) and batched tokenization."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import datasets
import pandas as pd
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from translrec_dist.errors import ConfigError

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]


def train_wordpiece(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer built from the data, so tiny models need no download.

    The vocabulary is every character (word-initial and ``##`` continuation) plus the most frequent
    whole words, ties broken alphabetically. Deterministic on purpose: the ``tokenizers`` WordPiece
    trainer breaks frequency ties in hash order, so two runs on the same data got different ids.
    """
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = SPECIAL + chars + ["##" + c for c in chars]
    known = set(vocab)
    for word in sorted(counts, key=lambda w: (-counts[w], w)):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length, model_input_names=INPUT_NAMES)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ConfigError(f"cannot load a tokenizer from {path!r}: {e}. Pass a local directory or a hub id "
                          f"that is cached (this machine may be offline)") from None
    if not tok.is_fast:
        raise ConfigError(f"{path}: the tokenizer is not a fast (Rust) tokenizer; translrec needs one for "
                          f"batched tokenization")
    return tok


def save_tokenizer(tokenizer, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))


def tokenize_frame(df: pd.DataFrame, tokenizer, max_length: int, num_proc: int | None = None) -> datasets.Dataset:
    """Tokenize a split in batches; no padding here (the collator pads each batch to its longest row)."""
    pair = "text_pair" in df and df["text_pair"].notna().any()
    cols = ["example_id", "text", "label"] + (["text_pair"] if pair else [])
    ds = datasets.Dataset.from_pandas(df[cols], preserve_index=False)
    want_types = "token_type_ids" in tokenizer.model_input_names

    def encode(batch):
        enc = tokenizer(batch["text"], batch["text_pair"] if pair else None, truncation="longest_first",
                        max_length=max_length, return_token_type_ids=want_types)
        return dict(enc)

    ds = ds.map(encode, batched=True, batch_size=1000, num_proc=num_proc,
                remove_columns=[c for c in cols if c not in ("example_id", "label")],
                desc="tokenize", load_from_cache_file=False)
    return ds
