"""A shared model or checkpoint never runs its own code: crafted artifacts, each with a payload that writes a
marker file, must be refused before the payload can run (exit 2, a message naming the file and the flag)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import FAST, TINY, run_cli
from tests.tiny_exports import write_export
from translrec_dist.config.loader import load_config
from translrec_dist.errors import ConfigError


def make_evil(export: Path, marker: Path) -> Path:
    """auto_map pointing at a module whose import writes ``marker``; translrec.yaml asks for trust itself."""
    (export / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n"
                                    "from transformers import BertConfig, BertModel\n"
                                    "class EvilConfig(BertConfig):\n    pass\n"
                                    "class EvilModel(BertModel):\n    config_class = EvilConfig\n")
    config = json.loads((export / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (export / "config.json").write_text(json.dumps(config))
    own = yaml.safe_load((export / "translrec.yaml").read_text())
    own["model"]["trust_remote_code"] = True
    (export / "translrec.yaml").write_text(yaml.safe_dump(own))
    return export


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    ctr = make_evil(write_export(root / "ctr"), marker)
    bi = make_evil(write_export(root / "bi", "task=retrieval", "model.pooling=mean"), marker)
    (root / "rows.csv").write_text("text,text_pair\nred apple,blue sky\n")
    return {"root": root, "marker": marker, "ctr": ctr, "bi": bi, "rows": root / "rows.csv"}


def assert_refused(message: str, evil: dict) -> None:
    assert "config.json has auto_map" in message and "evil.EvilModel" in message
    assert "--trust-remote-code" in message and "model.trust_remote_code=true" in message
    assert not evil["marker"].exists()


@pytest.mark.slow
def test_predict_refuses_an_export_that_ships_code_and_the_payload_is_real(evil):
    env = {"HF_MODULES_CACHE": str(evil["root"] / "modules")}
    proc = run_cli(["predict", "--model", str(evil["ctr"]), "--input", str(evil["rows"])], env=env, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert_refused(proc.stderr, evil)
    # The same export with the user's explicit consent does run its code: the refusal above is what stopped it.
    proc = run_cli(["predict", "--model", str(evil["ctr"]), "--input", str(evil["rows"]), "--trust-remote-code"],
                   env=env, check=False)
    assert evil["marker"].exists(), proc.stderr[-3000:]
    evil["marker"].unlink()


def test_evaluate_recommend_index_explain_and_init_from_refuse_it(evil, tmp_path, capsys):
    from translrec_dist.cli import main
    from translrec_dist.models.encoders import build_encoder
    from translrec_dist.program import evaluate_export, load_recommender, read_export

    cfg = load_config(TINY, [*FAST, f"output_dir={tmp_path}"])
    attempts = [lambda: evaluate_export(cfg, evil["ctr"]),  # evaluate: the user's config says no
                lambda: read_export(evil["ctr"]),
                lambda: load_recommender(evil["bi"], device="cpu"),  # index, recommend, explain
                lambda: build_encoder(load_config(TINY, [*FAST, f"model.init_from={evil['ctr']}"]))]
    for attempt in attempts:
        with pytest.raises(ConfigError) as e:
            attempt()
        assert_refused(str(e.value), evil)
    for command in (["index"], ["recommend", "--user", "1"], ["explain", "--user", "1", "--item", "2"]):
        assert main([*command, "--model", str(evil["bi"])]) == 2
        assert "auto_map" in capsys.readouterr().err
    assert not evil["marker"].exists()


def test_export_ignores_trust_remote_code_in_the_checkpoints_run_config(evil, tmp_path):
    """A checkpoint's config.yaml asking for trust and pointing at code is refused without --trust-remote-code."""
    from translrec_dist.program import export_checkpoint

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step_1"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    own = yaml.safe_load((evil["ctr"] / "translrec.yaml").read_text())
    own["model"].update(init_from=str(evil["ctr"]), trust_remote_code=True)
    (run / "config.yaml").write_text(yaml.safe_dump(own))
    with pytest.raises(ConfigError) as e:
        export_checkpoint(ckpt, tmp_path / "out")
    assert_refused(str(e.value), evil)


# ----------------------------------------------------------------------------- ZeRO shards


@pytest.fixture(scope="module")
def zero_runs(tmp_path_factory):
    """A one-process ZeRO-2 run (2 steps, checkpoints at steps 1 and 2): real DeepSpeed shards. The 2-process
    ZeRO-3 export is compared in tests/training/test_zero_distributed.py."""
    root = tmp_path_factory.mktemp("zero")
    small = [*FAST, "data.synthetic.num_users=30", "model.tiny.num_hidden_layers=1", "train.max_steps=2",
             "train.checkpoint_every=1", "eval.splits=[test]"]
    env = {"MASTER_PORT": "29741"}
    run_cli(["train", str(TINY), *small, "train.distributed=zero2", f"output_dir={root / 'zero2'}"], env=env)
    return root


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.slow
def test_zero_export_loads_weights_only_and_equals_deepspeeds_own_merge(zero_runs, tmp_path):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from safetensors.torch import load_file

    from translrec_dist.program import export_checkpoint
    from translrec_dist.training.consolidate import consolidated_state_dict

    stage = "zero2"
    ckpt = zero_runs / stage / "checkpoints" / "step_1"
    ours, theirs = consolidated_state_dict(ckpt), get_fp32_state_dict_from_zero_checkpoint(str(ckpt))
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # the final step's checkpoint exports to the same weights the run itself exported
    export_checkpoint(zero_runs / stage / "checkpoints" / "step_2", tmp_path / "offline")
    run_export, offline_export = zero_runs / stage / "final", tmp_path / "offline"
    online, offline = (load_file(str(d / "model.safetensors")) for d in (run_export, offline_export))
    assert online.keys() == offline.keys()
    for key in online:
        torch.testing.assert_close(offline[key], online[key], rtol=0, atol=1e-6)


@pytest.mark.slow  # the zero_runs fixture trains DeepSpeed ZeRO-2 (about 2 minutes under load)
@pytest.mark.parametrize("shard", ["model_states", "optim_states"])
def test_a_pickle_payload_in_a_zero_shard_never_runs(zero_runs, shard, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(zero_runs / "zero2", run)
    ckpt = run / "checkpoints" / "step_2"
    target = next((ckpt / "pytorch_model").glob(f"*{shard}.pt"))
    marker = tmp_path / "MARKER"
    state = torch.load(target, weights_only=False)  # our own trusted file, to wrap the payload into
    state["payload"] = Payload(marker)
    torch.save(state, target)
    if shard == "model_states":  # once through the command line: exit 2, one message, no traceback
        proc = run_cli(["export", str(ckpt), str(tmp_path / "out")], env={"MASTER_PORT": "29742"}, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        message = proc.stderr
    else:
        from translrec_dist.program import export_checkpoint

        with pytest.raises(ConfigError) as e:
            export_checkpoint(ckpt, tmp_path / "out")
        message = str(e.value)
    assert f"{target}: refusing to unpickle it: it names " in message and "pathlib.PosixPath" in message
    assert not marker.exists() and not (tmp_path / "out").exists()
    # Proof the payload is live: DeepSpeed's own loader (weights_only=False) would have run it.
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    get_fp32_state_dict_from_zero_checkpoint(str(ckpt))
    assert marker.exists()
    os.remove(marker)
