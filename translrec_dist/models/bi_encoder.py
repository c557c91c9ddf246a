"""Bi-encoder for next-item retrieval: a user tower over the history text, an item tower over item text.

Both towers are Hugging Face encoders (shared weights by default). The score is the cosine similarity
(or dot product) of the pooled vectors; training is softmax cross-entropy over in-batch negatives, with
in-batch copies of the positive item masked out (they are not negatives).

Export format (``final/``): the (user) encoder in plain Hugging Face format plus tokenizer files,
``translrec.yaml``, ``item_encoder/`` when the towers are separate, and ``bi_encoder.safetensors`` for
the optional item-id embeddings. ``AutoModel.from_pretrained(final)`` loads the encoder alone.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from translrec_dist.config import RunConfig
from translrec_dist.errors import ConfigError
from translrec_dist.models.cross_encoder import CONFIG_FILE, build_encoder, load_pretrained_encoder, pool
from translrec_dist.models.transfer import apply_transfer_knobs, merged_encoder

EXTRA_FILE = "bi_encoder.safetensors"
ITEM_ENCODER_DIR = "item_encoder"


class BiEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, item_encoder: nn.Module | None = None, *, pooling: str = "cls",
                 similarity: str = "cosine", temperature: float = 0.05, gather_negatives: bool = False,
                 num_items: int = 0):
        super().__init__()
        self.encoder = encoder
        self.item_encoder = item_encoder  # None: the towers share ``encoder``
        self.pooling, self.similarity, self.temperature = pooling, similarity, temperature
        self.gather_negatives = gather_negatives
        # Row 0 is "no id" (items added after training): the text alone represents them.
        self.item_ids = nn.Embedding(num_items + 1, encoder.config.hidden_size, padding_idx=0) if num_items else None
        if self.item_ids is not None:
            nn.init.zeros_(self.item_ids.weight)

    def _embed(self, encoder, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return pool(hidden, attention_mask, self.pooling).float()

    def _finish(self, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(vectors, dim=-1) if self.similarity == "cosine" else vectors

    def encode_users(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self._finish(self._embed(self.encoder, input_ids, attention_mask, token_type_ids))

    def encode_items(self, input_ids, attention_mask, token_type_ids=None, item_index=None) -> torch.Tensor:
        vectors = self._embed(self.item_encoder or self.encoder, input_ids, attention_mask, token_type_ids)
        if self.item_ids is not None and item_index is not None:
            known = (item_index >= 0) & (item_index < self.item_ids.num_embeddings - 1)
            ids = self.item_ids(torch.where(known, item_index + 1, torch.zeros_like(item_index)))
            vectors = vectors + ids * known.unsqueeze(-1).to(ids.dtype)
        return self._finish(vectors)

    def forward(self, input_ids, attention_mask, token_type_ids=None, item_input_ids=None,
                item_attention_mask=None, item_token_type_ids=None, item_index=None, encode: str | None = None,
                **_unused) -> torch.Tensor:
        """Training: the in-batch loss. ``encode="users"|"items"``: embeddings (evaluation goes through
        the wrapped model's forward, so DDP and DeepSpeed hooks see every call)."""
        if encode == "users":
            return self.encode_users(input_ids, attention_mask, token_type_ids)
        if encode == "items":
            return self.encode_items(input_ids, attention_mask, token_type_ids, item_index)
        users = self.encode_users(input_ids, attention_mask, token_type_ids)
        items = self.encode_items(item_input_ids, item_attention_mask, item_token_type_ids, item_index)
        return in_batch_loss(users, items, item_index, self.scale(), self.gather_negatives)

    def scale(self) -> float:
        return 1.0 / self.temperature if self.similarity == "cosine" else 1.0


def in_batch_loss(users: torch.Tensor, items: torch.Tensor, item_index: torch.Tensor, scale: float,
                  gather: bool) -> torch.Tensor:
    """Mean softmax cross-entropy of each user against every item in the (global) batch.

    With ``gather``, item embeddings of all ranks join the negatives. ``torch.distributed.nn.all_gather``
    keeps the graph: the local slice carries its gradient, and the backward pass sends each rank the
    gradient of the other ranks' losses with respect to its items, so the summed gradient equals that of
    one process holding the concatenated batch.
    """
    offset = 0
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        offset = dist.get_rank() * len(users)
        items = torch.cat(all_gather(items.contiguous()))
        all_index = [torch.empty_like(item_index) for _ in range(dist.get_world_size())]
        dist.all_gather(all_index, item_index.contiguous())
        item_index_all = torch.cat(all_index)
    else:
        item_index_all = item_index
    logits = users @ items.T * scale
    target = torch.arange(len(users), device=users.device) + offset
    duplicate = item_index.unsqueeze(1) == item_index_all.unsqueeze(0)
    duplicate[torch.arange(len(users)), target] = False
    logits = logits.masked_fill(duplicate, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, target)


def build_bi_encoder(cfg: RunConfig, tokenizer, num_items: int = 0) -> BiEncoder:
    m = cfg.model
    encoder = build_encoder(cfg, vocab_size=len(tokenizer))
    item_encoder = None if m.share_towers else copy.deepcopy(encoder)
    if m.init_from and not m.share_towers and (Path(m.init_from) / ITEM_ENCODER_DIR).is_dir():
        item_encoder = load_pretrained_encoder(str(Path(m.init_from) / ITEM_ENCODER_DIR), m.attn_implementation,
                                               m.trust_remote_code)
    encoder = apply_transfer_knobs(encoder, cfg)
    item_encoder = apply_transfer_knobs(item_encoder, cfg) if item_encoder is not None else None
    return BiEncoder(encoder, item_encoder, pooling=m.pooling, similarity=m.similarity, temperature=m.temperature,
                     gather_negatives=cfg.train.gather_negatives,
                     num_items=num_items if m.item_id_embeddings else 0)


def save_bi_export(out_dir: Path, state_dict: dict, model: BiEncoder, tokenizer, cfg: RunConfig) -> None:
    """Write the export from a full (consolidated) state dict. Call on the main process only."""
    from translrec_dist.config import dump_config, export_config
    from translrec_dist.models.interop import write_interop_files

    out_dir.mkdir(parents=True, exist_ok=True)
    for prefix, module, target in (("encoder.", model.encoder, out_dir),
                                   ("item_encoder.", model.item_encoder, out_dir / ITEM_ENCODER_DIR)):
        if module is None:
            continue
        state = {k[len(prefix):]: v.contiguous() for k, v in state_dict.items() if k.startswith(prefix)}
        if not state or any(v.numel() == 0 for v in state.values()):
            raise RuntimeError("refusing to write an empty export: the state dict has no encoder weights "
                               "(under ZeRO-3 set stage3_gather_16bit_weights_on_model_save)")
        plain, state = merged_encoder(module, state)
        plain.save_pretrained(str(target), state_dict=state, safe_serialization=True)
    extra = {k: v.contiguous() for k, v in state_dict.items() if k.startswith("item_ids.")}
    if extra:
        save_file(extra, str(out_dir / EXTRA_FILE))
    tokenizer.save_pretrained(str(out_dir))
    dump_config(export_config(cfg), out_dir / CONFIG_FILE)
    write_interop_files(out_dir, cfg)  # ecosystem: files other tools load + model card


def load_bi_export(model_dir: str | Path):
    """(model, tokenizer, cfg) from a retrieval export directory."""
    from translrec_dist.config import load_config
    from translrec_dist.data.tokenize import load_tokenizer

    model_dir = Path(model_dir)
    for f in ("config.json", CONFIG_FILE):
        if not (model_dir / f).is_file():
            raise ConfigError(f"{model_dir} is not a translrec export (missing {f}); pass RUN_DIR/final")
    cfg = load_config(model_dir / CONFIG_FILE)
    if cfg.task != "retrieval":
        raise ConfigError(f"{model_dir} was trained with task={cfg.task}; retrieval commands need a model "
                          f"trained with task=retrieval")
    m = cfg.model
    tokenizer = load_tokenizer(str(model_dir), m.trust_remote_code)
    encoder = load_pretrained_encoder(str(model_dir), m.attn_implementation, m.trust_remote_code)
    item_encoder = None
    if (model_dir / ITEM_ENCODER_DIR).is_dir():
        item_encoder = load_pretrained_encoder(str(model_dir / ITEM_ENCODER_DIR), m.attn_implementation,
                                               m.trust_remote_code)
    extra = load_file(str(model_dir / EXTRA_FILE)) if (model_dir / EXTRA_FILE).is_file() else {}
    num_items = extra["item_ids.weight"].shape[0] - 1 if extra else 0
    model = BiEncoder(encoder, item_encoder, pooling=m.pooling, similarity=m.similarity,
                      temperature=m.temperature, num_items=num_items)
    if extra:
        model.item_ids.load_state_dict({"weight": extra["item_ids.weight"]})
    return model.eval(), tokenizer, cfg
