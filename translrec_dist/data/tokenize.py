"""Tokenizers (pretrained, or a WordPiece vocabulary trained on the data) and batched tokenization."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from translrec_dist import safe_io
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
    from translrec_dist.models.safety import refuse_remote_code

    refuse_remote_code(path, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ConfigError(f"cannot load a tokenizer from {path!r}: {e}. Pass a local directory or a hub id "
                          f"that is cached (this machine may be offline)") from None
    if not tok.is_fast:
        raise ConfigError(f"{path}: the tokenizer is not a fast (Rust) tokenizer; translrec needs one for "
                          f"batched tokenization")
    return tok


def save_tokenizer(tokenizer, directory: Path, root: Path | None = None) -> None:
    """``save_pretrained`` into a new folder, moved into ``directory`` without following a link (``safe_io``)."""
    safe_io.write_tree(directory, root or Path(directory).parent, lambda stage: tokenizer.save_pretrained(str(stage)))


def batch_encoder(tokenizer, max_length: int):
    """A ``datasets.map`` function calling the Rust tokenizer's ``encode_batch`` directly.

    Same ids as ``tokenizer(text, text_pair, truncation="longest_first")`` without the Python-side
    conversions, and no attention mask: without padding it is all ones, so the collator derives it.
    """
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # a copy: truncation is set on it
    backend.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.no_padding()
    want_types = "token_type_ids" in tokenizer.model_input_names

    def encode(batch: dict) -> dict:
        pairs = batch.get("text_pair")
        encodings = backend.encode_batch(list(zip(batch["text"], pairs, strict=True)) if pairs else batch["text"])
        out = {"input_ids": [e.ids for e in encodings]}
        if want_types:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        return out

    return encode


def text_columns(df: pd.DataFrame) -> datasets.Dataset:
    """The example columns that tokenization reads: example_id, text, label[, text_pair when any row has one]."""
    pair = "text_pair" in df and df["text_pair"].notna().any()
    cols = ["example_id", "text", "label"] + (["text_pair"] if pair else [])
    return datasets.Dataset.from_pandas(df[cols], preserve_index=False)


def tokenize_dataset(ds: datasets.Dataset, tokenizer, max_length: int, num_proc: int | None = None) -> datasets.Dataset:
    """Tokenize a text split in batches; no padding here (the collator pads each batch to its longest row)."""
    return ds.map(batch_encoder(tokenizer, max_length), batched=True, batch_size=1000, num_proc=num_proc,
                  remove_columns=[c for c in ds.column_names if c not in ("example_id", "label")], desc="tokenize",
                  load_from_cache_file=False)


def tokenize_frame(df: pd.DataFrame, tokenizer, max_length: int, num_proc: int | None = None) -> datasets.Dataset:
    return tokenize_dataset(text_columns(df), tokenizer, max_length, num_proc)


class ArrowEncoder:
    """Tokenizes an Arrow table of text rows into the columns of a pretokenized shard (raw-text streaming).

    The same ``batch_encoder`` as ``prepare``, so the ids equal the pretokenized ones. Picklable: DataLoader
    workers get a copy and build their own Rust tokenizer on first use.
    """

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self._encode = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encode": None}

    def __call__(self, table: pa.Table) -> pa.Table:
        if self._encode is None:
            self._encode = batch_encoder(self.tokenizer, self.max_length)
        texts = {"text": table.column("text").to_pylist()}
        if "text_pair" in table.column_names:
            texts["text_pair"] = table.column("text_pair").to_pylist()
        encoded = self._encode(texts)
        out = table.select(["example_id", "label"])
        for key, values in encoded.items():
            out = out.append_column(key, pa.array(values, type=pa.list_(pa.int32())))
        return out
