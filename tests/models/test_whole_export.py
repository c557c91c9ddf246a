"""An export is whole or refused: a model.safetensors with no tensors, with some missing, or with tensors of
another model loads in transformers as partly random weights (a printed report, then predictions of noise).
translrec refuses it with exit 2 naming the export and the tensors; transformers' report stays off the terminal."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import run_cli
from tests.tiny_exports import write_export
from translrec_dist.errors import ConfigError
from translrec_dist.program import read_export


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("whole") / "export")


def damaged(clean: Path, tmp_path: Path, change) -> Path:
    export = tmp_path / "export"
    shutil.copytree(clean, export)
    weights = load_file(str(export / "model.safetensors"))
    save_file(change(weights), str(export / "model.safetensors"), metadata={"format": "pt"})
    return export


def test_the_clean_export_loads(clean):
    model, *_ = read_export(clean)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_weights_with_only_metadata_are_refused_naming_the_export_and_the_tensors(clean, tmp_path):
    export = damaged(clean, tmp_path, lambda w: {})
    with pytest.raises(ConfigError) as e:
        read_export(export)
    message = str(e.value)
    assert message.startswith(f"{export}: the weights do not make the whole")
    assert "tensors missing (" in message and "embeddings.word_embeddings.weight" in message
    assert "export it again" in message


def test_one_missing_and_one_unexpected_tensor_are_both_named(clean, tmp_path):
    def change(w: dict) -> dict:
        gone = next(k for k in sorted(w) if "layer.0.attention.self.query.weight" in k)
        return {**{k: v for k, v in w.items() if k != gone}, "extra.head.weight": torch.zeros(2, 2)}

    with pytest.raises(ConfigError) as e:
        read_export(damaged(clean, tmp_path, change))
    message = str(e.value)
    assert "1 tensors missing (encoder.layer.0.attention.self.query.weight)" in message
    assert "1 tensors unexpected (extra.head.weight)" in message


def test_a_tensor_of_another_shape_is_refused(clean, tmp_path):
    def change(w: dict) -> dict:
        key = next(k for k in sorted(w) if k.endswith("word_embeddings.weight"))
        return {**w, key: torch.zeros(3, 3)}

    with pytest.raises(ConfigError, match="of another shape"):
        read_export(damaged(clean, tmp_path, change))


def test_a_weights_file_linked_to_a_device_is_refused_at_once(clean, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(clean, export)
    (export / "model.safetensors").unlink()
    os.symlink("/dev/zero", export / "model.safetensors")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        read_export(export)
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_predict_on_an_export_without_weights_exits_2_without_the_load_report(clean, tmp_path):
    export = damaged(clean, tmp_path, lambda w: {})
    rows = tmp_path / "rows.csv"
    rows.write_text("text,text_pair\nred apple,blue sky\n")
    proc = run_cli(["predict", "--model", str(export), "--input", str(rows)], check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-3000:]
    assert f"{export}: the weights do not make the whole" in proc.stderr
    assert "LOAD REPORT" not in proc.stderr and "MISSING" not in proc.stderr and "Traceback" not in proc.stderr
