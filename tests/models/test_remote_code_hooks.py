"""Every JSON file transformers may consult in a model directory is checked for code hooks before transformers
sees it: crafted exports, one per hook, each with a module whose import writes a marker file. Refused with exit 2
naming the file and the key, with "y" waiting on stdin (transformers would ask "Do you wish to run the custom
code? [y/N]" and read it): the marker never appears."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tiny_exports import write_export
from translrec_dist.errors import ConfigError
from translrec_dist.models.safety import refuse_remote_code

EVIL = "evil.EvilClass"
# (name, {file: JSON content}, what the message names)
HOOKS = [
    ("processor_behind_tokenizer_class", {"tokenizer_config.json": {"tokenizer_class": "AutoProcessor"},
                                          "processor_config.json": {"auto_map": {"AutoProcessor": EVIL}}},
     "processor_config.json has auto_map"),
    ("feature_extractor_behind_tokenizer_class",
     {"tokenizer_config.json": {"tokenizer_class": "AutoFeatureExtractor"},
      "preprocessor_config.json": {"auto_map": {"AutoFeatureExtractor": EVIL}}},
     "preprocessor_config.json has auto_map"),
    ("image_processor", {"preprocessor_config.json": {"auto_map": {"AutoImageProcessor": EVIL}}},
     "preprocessor_config.json has auto_map"),
    ("video_processor", {"video_preprocessor_config.json": {"auto_map": {"AutoVideoProcessor": EVIL}}},
     "video_preprocessor_config.json has auto_map"),
    ("nested_processor", {"processor_config.json": {"image_processor": {"auto_map": {"AutoImageProcessor": EVIL}}}},
     "processor_config.json has image_processor.auto_map"),
    ("tokenizer_auto_map", {"tokenizer_config.json": {"auto_map": {"AutoTokenizer": [EVIL, None]}}},
     "tokenizer_config.json has auto_map"),
    ("custom_pipelines", {"config.json": {"custom_pipelines": {"evil": {"impl": "evil.EvilPipeline"}}}},
     "config.json has custom_pipelines"),
    ("generation_config", {"generation_config.json": {"auto_map": {"AutoConfig": EVIL}}},
     "generation_config.json has auto_map"),
    ("special_tokens_map", {"special_tokens_map.json": {"auto_map": {"AutoTokenizer": EVIL}}},
     "special_tokens_map.json has auto_map"),
    ("tokenizer_class_auto_model", {"tokenizer_config.json": {"tokenizer_class": "AutoModel"}},
     "tokenizer_config.json: tokenizer_class='AutoModel' is not a tokenizer class"),
    ("tokenizer_class_a_model", {"tokenizer_config.json": {"tokenizer_class": "BertModel"}},
     "tokenizer_class='BertModel' is not a tokenizer class"),
    ("tokenizer_class_in_config", {"config.json": {"tokenizer_class": "AutoProcessor"}},
     "config.json: tokenizer_class='AutoProcessor' is not a tokenizer class"),
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("clean") / "export")


def crafted(clean: Path, root: Path, files: dict) -> tuple[Path, Path]:
    export, marker = root / "export", root / "MARKER"
    shutil.copytree(clean, export)
    (export / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n"
                                    "from transformers import ProcessorMixin\nclass EvilClass(ProcessorMixin):\n"
                                    "    attributes = []\n")
    for name, content in files.items():
        path = export / name
        merged = {**json.loads(path.read_text()), **content} if path.exists() else content
        path.write_text(json.dumps(merged))
    return export, marker


@pytest.mark.parametrize(("name", "files", "names"), HOOKS, ids=[h[0] for h in HOOKS])
def test_every_hook_is_refused_naming_the_file_and_the_key(clean, tmp_path, name, files, names):
    export, marker = crafted(clean, tmp_path, files)
    with pytest.raises(ConfigError) as e:
        refuse_remote_code(export, trust_remote_code=False)
    assert names in str(e.value) and str(export) in str(e.value)
    assert not marker.exists()


def test_the_clean_export_passes_and_trust_lets_a_hook_through_but_never_an_auto_class(clean, tmp_path):
    refuse_remote_code(clean, trust_remote_code=False)
    export, _ = crafted(clean, tmp_path / "a", HOOKS[2][1])
    refuse_remote_code(export, trust_remote_code=True)  # the user's explicit choice
    export, _ = crafted(clean, tmp_path / "b", HOOKS[9][1])
    with pytest.raises(ConfigError, match="AutoModel"):  # an Auto* class is never a tokenizer, trusted or not
        refuse_remote_code(export, trust_remote_code=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["processor_behind_tokenizer_class", "feature_extractor_behind_tokenizer_class",
                                  "tokenizer_class_auto_model", "video_processor"])
def test_predict_with_y_on_stdin_exits_2_and_the_code_never_runs(clean, tmp_path, name):
    _, files, names = next(h for h in HOOKS if h[0] == name)
    export, marker = crafted(clean, tmp_path, files)
    rows = tmp_path / "rows.csv"
    rows.write_text("text,text_pair\nred apple,blue sky\n")
    cmd = [sys.executable, "-m", "translrec_dist", "predict", "--model", str(export), "--input", str(rows)]
    proc = subprocess.run(cmd, input="y\ny\ny\n", capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert names in proc.stderr and "Traceback" not in proc.stderr and "[y/N]" not in proc.stdout + proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_the_processor_hook_is_live_transformers_alone_asks_and_runs_it(clean, tmp_path):
    """Proof the crafted export is a real attack: transformers' own AutoTokenizer, with "y" on stdin, imports it."""
    export, marker = crafted(clean, tmp_path, HOOKS[0][1])
    code = "import sys; from transformers import AutoTokenizer\ntry:\n AutoTokenizer.from_pretrained(sys.argv[1])\n" \
           "except Exception as e:\n print(type(e).__name__, e)\n"
    proc = subprocess.run([sys.executable, "-c", code, str(export)], input="y\n", capture_output=True, text=True,
                          timeout=300, env={**os.environ,
                                            "HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert marker.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
