"""The GPU bench must be ready when a GPU machine is lent: check its plumbing on CPU (tiny model, 4 steps)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_script_syntax_and_cpu_dry_run():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")], check=True)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_throughput.py"), "--dry-run", "--strategies",
                           "ddp", "--seqs", "64"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:2] == ["cross", "64"]]
    assert [(r[2], r[3], r[4]) for r in rows] == [("ddp", "dynamic", "bf16"), ("ddp", "max_length", "bf16"),
                                                  ("ddp", "dynamic", "fp32")]
    tokens = [float(r[6]) for r in rows]  # tokens/s counts real tokens: every run processed some
    assert all(t > 0 for t in tokens), tokens
    sequential = [line for line in proc.stdout.splitlines() if line.startswith("sequential ")]
    assert len(sequential) == 1, proc.stdout
    assert float(sequential[0].split()[6]) > 0, sequential  # the sequential cell really trained


@pytest.mark.slow
def test_retrieval_bench_compares_exact_and_approximate_index():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "retrieval.py"), "--ann", "--items", "3000", "--dim",
                           "32", "--repeats", "1", "--hnsw-m", "16"], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
            if line.startswith(("exact ", "faiss-hnsw "))}
    assert float(rows["exact"][2]) == 1.0 and 0.7 <= float(rows["faiss-hnsw"][2]) <= 1.0
    assert all(float(v) > 0 for r in rows.values() for v in r[:2])


@pytest.mark.slow
def test_threads_bench_quick_mode_measures_every_arm():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "threads.py"), "--quick", "--setups", "after"],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in proc.stdout.splitlines()
            if line.startswith("after ")}
    assert set(rows) == {("after", "idle"), ("after", "busy")}
    assert all(float(r[0]) > 0 and float(r[1]) > 0 for r in rows.values())  # wall s, samples/s
    assert float(rows[("after", "idle")][2]) == 1.0  # the factor is against the same setup's idle run


@pytest.mark.slow
def test_scale_bench_quick_mode_prints_every_stage_with_an_exponent():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--quick"], capture_output=True,
                          text=True, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.splitlines()]
    rows = [r for r in lines if len(r) > 6 and r[2].isdigit()]
    stages = {r[0] for r in rows}
    assert stages == {"prepare", "stream", "encode", "encode2", "step_full", "step_sampled", "eval", "index_exact",
                      "index_faiss"}
    assert all(float(r[3]) > 0 and float(r[5]) > 0 for r in rows)  # units/s, peak MiB
    exponents = {r[0]: float(r[2]) for r in lines if len(r) == 3 and r[1] == "exponent"}
    assert set(exponents) == stages
    faiss = [r for r in rows if r[0] == "index_faiss"]
    assert all(float(dict(kv.split("=") for kv in r[7:])["recall@10"]) >= 0.9 for r in faiss)


SEQ_TINY = ["task=sequential", "model.sequence.hidden=16", "model.sequence.inner=32", "model.sequence.layers=1",
            "data.max_history=8", "data.synthetic.num_users=80", "data.synthetic.num_items=60",
            "train.progress_bar=false"]


@pytest.mark.slow
def test_fine_tune_profile_and_cold_calibration_run_on_a_tiny_model(tmp_path):
    import json

    from tests.conftest import TINY, run_cli

    prof = subprocess.run([sys.executable, str(REPO / "bench" / "fine_tune_profile.py"), str(TINY), *SEQ_TINY,
                           "--layers", "1", "--items", "8,all", "--steps", "2", "--out", str(tmp_path / "prof")],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert prof.returncode == 0, prof.stderr[-3000:]
    rows = json.loads((tmp_path / "prof" / "profile.json").read_text())
    assert [r["items_per_step"] for r in rows] == [8, "all"] and rows[0]["items_encoded"] == 8
    assert all(r["step_s"] > 0 and 0 <= r["encoder_share"] <= 1 for r in rows)

    run = tmp_path / "distill"
    run_cli(["train", str(TINY), *SEQ_TINY, "model.sequence.item_repr=text+id", "model.sequence.distill=1.0",
             "data.cold_item_fraction=0.2", "train.epochs=1", f"output_dir={run}", "eval.splits=[test]"])
    cal = subprocess.run([sys.executable, str(REPO / "bench" / "cold_calibration.py"), str(run), "--scales", "0,1"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert cal.returncode == 0, cal.stderr[-3000:]
    result = json.loads((run / "cold_calibration.json").read_text())
    assert set(result["rows"]) == {"0.0", "1.0"} and result["chosen_on_valid"] in (0.0, 1.0)
    assert result["test"] == result["rows"][str(result["chosen_on_valid"])]["test"]  # the test row of the pick
