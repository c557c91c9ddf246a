"""Malformed input, one table: each case is files + the stage that reads them + the expected exit code and a
fragment of the message (the error for exit 2; the log and bad-row report for 0). Exit 2 is a UserError (one
message on stderr in the CLI); 0 means the bad rows were counted, reported with file and line, and left out.

Stages run in-process (fast): ``read`` = the source reader, ``ctr``/``retrieval``/``text_label`` = everything
before training (examples, splits, label checks), ``cli`` = ``translrec`` main() on a tiny export. A few cases
run through a real subprocess at the end (no traceback, nothing half-written)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST, TINY, run_cli
from tests.tiny_exports import write_export
from translrec_dist.config.loader import load_config
from translrec_dist.config.schema import DataConfig
from translrec_dist.errors import UserError
from translrec_dist.run_dir import RunDir

HEADER = "user_id,item_id,rating,timestamp\n"
ITEMS = "item_id,title\n" + "".join(f"i{j},Title number {j}\n" for j in range(10))


def interactions(users: int = 12, per_user: int = 6, start: int = 1_600_000_000, step: int = 60) -> str:
    """Each user rates ``per_user`` distinct items, one minute apart (ratings 1-5, varied)."""
    rows = [f"u{u},i{(u + k) % 10},{1 + (u * 7 + k) % 5},{start + (u * per_user + k) * step}\n"
            for u in range(users) for k in range(per_user)]
    return HEADER + "".join(rows)


GOOD = interactions()
LINES = GOOD.splitlines(keepends=True)  # LINES[n - 1] is line n of the file


def replace_line(text: str, n: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[n - 1] = new
    return "".join(lines)


def in_milliseconds(line: str) -> str:
    rest, seconds = line.rsplit(",", 1)
    return f"{rest},{int(seconds) * 1000}\n"


@dataclass
class Case:
    name: str
    files: dict  # file name -> str or bytes (text of interactions.csv and items.csv by default)
    stage: str = "ctr"
    args: list = field(default_factory=list)  # config overrides, or the CLI arguments of stage "cli"
    code: int = 2
    fragment: str = ""


def table(inter=GOOD, items=ITEMS, inter_name="interactions.csv", items_name="items.csv") -> dict:
    return {inter_name: inter, items_name: items}


RATE = "data.max_bad_fraction=0.05"
CASES = [
    # ---- CSV structure
    Case("unclosed quote swallowing rows: counted at the line it opened, rows re-read",
         table(replace_line(GOOD, 5, 'u0,"i3,4,1600000180\n')), args=[RATE], code=0,
         fragment="interactions.csv, line 5: a quote opened on this line is not closed: it runs to line 73"),
    Case("unclosed quote over the default budget", table(replace_line(GOOD, 5, 'u0,"i3,4,1600000180\n')),
         fragment="unclosed_quote=1"),
    Case("unclosed quote in items.csv points at the item's line",
         table(items=replace_line(ITEMS, 4, 'i2,"Title number 2\n')), args=["data.max_bad_fraction=0.2"], code=0,
         fragment="items.csv, line 4: a quote opened on this line is not closed"),
    Case("quoted multi-line title is fine", table(items=ITEMS + 'i10,"Two\nlines, one title"\n'), code=0,
         fragment="'multiline_records': 1"),
    Case("10 MB field", table(items=ITEMS + "i10," + "x" * 10_000_000 + "\n"), stage="read", code=0,
         fragment="'bad_rows': {}"),
    Case("UTF-8 BOM before the header", table(inter=b"\xef\xbb\xbf" + GOOD.encode()), stage="read", code=0,
         fragment="'bad_rows': {}"),
    Case("binary garbage", table(inter=bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))),
         fragment="interactions.csv: binary data, not a text table"),
    Case("UTF-16 export", table(inter=GOOD.encode("utf-16")), fragment="a UTF-16 export? re-save it as UTF-8"),
    Case("a JSON array inside .jsonl", table(inter=json.dumps([{"user_id": "u0"}]) + "\n",
                                              inter_name="interactions.jsonl"),
         fragment="interactions.jsonl: no line holds a JSON object (line 1 is a JSON array)"),
    Case("wrong field count", table(replace_line(GOOD, 7, "u1,i1,4\n")), fragment="wrong_field_count=1"),
    # ---- values
    Case("inf rating", table(replace_line(GOOD, 3, "u0,i1,inf,1600000060\n")),
         fragment="line 3: column rating = 'inf' is not a number"),
    Case("nan rating", table(replace_line(GOOD, 3, "u0,i1,nan,1600000060\n")), fragment="bad_rating=1"),
    Case("inf rating within the budget", table(replace_line(GOOD, 3, "u0,i1,inf,1600000060\n")), args=[RATE],
         code=0, fragment="left out 1 bad rows of 82 (bad_rating=1)"),
    Case("1e308 rating: finite, far outside the scale", table(replace_line(GOOD, 3, "u0,i1,1e308,1600000060\n")),
         args=["task=rating"], fragment="rating_out_of_scale=1. First of each kind: "),
    Case("1e308 rating names its file, line and the data's scale",
         table(replace_line(GOOD, 3, "u0,i1,1e308,1600000060\n")),
         fragment="interactions.csv, line 3: rating 1e+308 is far outside the data's scale (the other ratings lie "
                  "between 1 and 5)"),
    Case("1e308 rating within the budget is left out, never a positive",
         table(replace_line(GOOD, 3, "u0,i1,1e308,1600000060\n")),
         args=[RATE, "data.positive_threshold=4", "data.negatives_per_positive=0"], code=0,
         fragment="left out 1 bad rows of 82 (rating_out_of_scale=1)"),
    Case("a rating of 50000 on a 1-5 scale", table(replace_line(GOOD, 9, "u1,i2,50000,1600000420\n")),
         fragment="line 9: rating 50000 is far outside the data's scale"),
    Case("a 10 MB non-number rating is quoted in short", table(replace_line(GOOD, 3, "u0,i1," + "x" * 10_000_000
                                                                         + ",1600000060\n")),
         fragment="column rating = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (10000002 "
                  "characters) is not a number"),
    Case("header-less one-line items.csv of 10 MB: its line is not repeated", table(items="x" * 10_000_000 + "\n"),
         fragment="missing column(s) item_id; found " + "x" * 60 + "...;"),
    Case("inf timestamp", table(replace_line(GOOD, 3, "u0,i1,4,inf\n")), fragment="bad_timestamp=1"),
    Case("seconds and milliseconds mixed",
         table(HEADER + "".join(line if i % 2 else in_milliseconds(line) for i, line in enumerate(LINES) if i)),
         fragment="looks like milliseconds while most are seconds: the column mixes units (36 rows look like "
                  "seconds (1.6e+09 to 1.6e+09) and 36 rows look like milliseconds"),
    Case("one stray millisecond row within the budget",
         table(replace_line(GOOD, 9, "u1,i2,4,1600000000000\n")), args=[RATE], code=0,
         fragment="timestamp_unit=1"),
    # ---- splits, duplicates, labels
    Case("repeated interactions: first kept, counted", table(GOOD + "u0,i0,5,1700000000\nu0,i0,5,1700000060\n"),
         code=0, fragment="left out 2 repeated (user, item) interactions: each pair counts once, at its earliest"),
    Case("users too short for valid/test (ctr)", table(interactions(per_user=2)),
         fragment="no valid examples (needed by eval.splits/eval.every_steps): a user has valid and test items "
                  "only with at least 3 interactions (data.eval_items_per_user=1, data.min_history=1); 12 of 12"),
    Case("users too short for valid/test (retrieval)", table(interactions(per_user=2)), stage="retrieval",
         fragment="no valid examples"),
    Case("kcore removes everything", table(), args=["data.kcore=50"],
         fragment="data.kcore=50 removed all 72 interactions (12 users, 10 items; the most active user has 6"),
    Case("all labels equal (every rating a positive, no negatives)", table(),
         args=["data.positive_threshold=1", "data.negatives_per_positive=0"],
         fragment="training labels are 1: a click-through model cannot learn from one class; every rating reaches "
                  "data.positive_threshold=1"),
    Case("all labels equal (threshold above every rating)", table(), args=["data.positive_threshold=6",
                                                                            "data.negatives_per_positive=0"],
         fragment="no rating reaches data.positive_threshold=6"),
    # ---- text_label
    Case("text_label: empty labels count against the budget",
         {"d.csv": "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(40)) + "t40,\nt41,\n"},
         stage="text_label", fragment="missing_label=2"),
    Case("text_label: all labels 1", {"d.csv": "text,label\n" + "".join(f"t{i},1\n" for i in range(40))},
         stage="text_label", fragment="training labels are 1: a click-through model cannot learn from one class; "
                                      "the label column"),
    Case("text_label: too few rows for a test split", {"d.csv": "text,label\na,1\nb,0\nc,1\n"},
         stage="text_label", fragment="no valid examples"),
    # ---- commands on an export
    Case("predict: empty text", {"rows.csv": "text,text_pair\nred apple,blue sky\n,green tea\n"}, stage="cli",
         args=["predict", "--model", "{ctr}", "--input", "{dir}/rows.csv"], fragment="rows.csv, line 3: empty text"),
    Case("predict: unclosed quote in the input",
         {"rows.csv": 'text,text_pair\n"red apple,blue sky\ngreen tea,old film\n'}, stage="cli",
         args=["predict", "--model", "{ctr}", "--input", "{dir}/rows.csv"],
         fragment="rows.csv, line 2: a quote opened on this line is not closed"),
    Case("predict: a bad row names no option predict does not have",
         {"rows.csv": "text,text_pair\nred apple,blue sky\ngreen tea,old,film\n"}, stage="cli",
         args=["predict", "--model", "{ctr}", "--input", "{dir}/rows.csv"],
         fragment="Fix the input: every row must be well formed"),
    Case("predict: --output into a missing folder", {"rows.csv": "text\nred apple\n"}, stage="cli",
         args=["predict", "--model", "{ctr}", "--input", "{dir}/rows.csv", "--output", "{dir}/nope/out.jsonl"],
         fragment="nope does not exist; create it first"),
    Case("predict: --batch-size 0", {"rows.csv": "text\nred apple\n"}, stage="cli",
         args=["predict", "--model", "{ctr}", "--input", "{dir}/rows.csv", "--batch-size", "0"],
         fragment="--batch-size: must be at least 1"),
    Case("index: duplicate ids in --items", {"new.csv": "item_id,title\nn1,Red apple\nn2,Blue sky\nn1,Green tea\n"},
         stage="cli", args=["index", "--model", "{bi}", "--items", "{dir}/new.csv"],
         fragment="new.csv, line 4: item_id 'n1' appears again (first at line 2"),
]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {"ctr": write_export(root / "ctr"), "bi": write_export(root / "bi", "task=retrieval", "model.pooling=mean")}


def outcome(case: Case, src: Path, tmp_path: Path, exports: dict, caplog, capsys) -> tuple[int, str]:
    from translrec_dist.cli import main
    from translrec_dist.data.readers.source import read_source as read_files
    from translrec_dist.data.retrieval import build_retrieval_data
    from translrec_dist.data.stages import load_text_splits, read_source

    caplog.set_level("INFO")
    try:
        if case.stage == "cli":
            args = [a.format(dir=src, **exports) for a in case.args]
            code = main(args)
            return code, capsys.readouterr().err
        if case.stage == "read":
            report = read_files(DataConfig(format="interactions", path=str(src)), need_rating=True).report
            return 0, str(report)
        path = src / "d.csv" if case.stage == "text_label" else src
        fmt = "text_label" if case.stage == "text_label" else "interactions"
        task = ["task=retrieval"] if case.stage == "retrieval" else []
        cfg = load_config(TINY, [*FAST, *task, f"output_dir={tmp_path / 'run'}", f"data.format={fmt}",
                                 f"data.path={path}", *case.args])
        if case.stage == "retrieval":
            build_retrieval_data(*read_source(cfg), cfg)
            return 0, caplog.text
        report = load_text_splits(cfg).report
        return 0, caplog.text + str(report)
    except UserError as e:
        return 2, str(e)
    except SystemExit as e:  # argparse
        return int(e.code), capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input(case: Case, tmp_path, exports, caplog, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name, content in case.files.items():
        (src / name).write_bytes(content.encode() if isinstance(content, str) else content)
    code, message = outcome(case, src, tmp_path, exports, caplog, capsys)
    assert code == case.code, message[-3000:]
    assert case.fragment in message, message[-3000:]
    assert len(message) < 20_000  # a long bad value is quoted in short, never whole
    assert not (tmp_path / "run").exists()  # nothing written before the input is known to be good


def test_swallowed_rows_are_read_again(tmp_path):
    """The unclosed quote costs one row, not the 68 it swallowed."""
    from translrec_dist.data.readers.source import read_source

    (tmp_path / "interactions.csv").write_text(replace_line(GOOD, 5, 'u0,"i3,4,1600000180\n'))
    (tmp_path / "items.csv").write_text(ITEMS)
    src = read_source(DataConfig(format="interactions", path=str(tmp_path), max_bad_fraction=0.05), True)
    assert len(src.interactions) == 71 and src.report["bad_rows"] == {"unclosed_quote": 1}


def test_repeated_interactions_never_put_a_test_target_in_its_own_history(tmp_path):
    """Every user re-rates their first item last: kept, each test target would be in its own history."""
    from translrec_dist.data.stages import load_text_splits

    repeats = "".join(f"u{u},i{u % 10},5,{1_700_000_000 + u}\n" for u in range(12))
    (tmp_path / "interactions.csv").write_text(GOOD + repeats)
    (tmp_path / "items.csv").write_text(ITEMS)
    cfg = load_config(TINY, [*FAST, f"output_dir={tmp_path / 'run'}", "data.format=interactions",
                             f"data.path={tmp_path}", "data.history_length=10"])
    texts = load_text_splits(cfg)
    assert texts.report["repeated_interactions"] == 12
    test = texts.frames["test"]
    positives = test[test["label"] == 1]
    assert len(positives) == 12
    for history, target in zip(positives["text"], positives["text_pair"], strict=True):
        assert target not in history.split(cfg.data.history_separator)


@pytest.mark.slow
def test_through_the_command_line_exit_2_no_traceback_nothing_written(tmp_path):
    """prepare with a swallowing quote, train with all-equal labels: exit 2 before anything is written."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "interactions.csv").write_text(replace_line(GOOD, 5, 'u0,"i3,4,1600000180\n'))
    (src / "items.csv").write_text(ITEMS)
    common = [*FAST, "data.format=interactions", f"data.path={src}"]
    proc = run_cli(["prepare", str(TINY), *common, f"output_dir={tmp_path / 'a'}"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "interactions.csv, line 5: a quote opened on this line is not closed" in proc.stderr
    assert not list((tmp_path / "a").glob("prepared/*/manifest.json"))
    (src / "interactions.csv").write_text(GOOD)
    proc = run_cli(["train", str(TINY), *common, "data.positive_threshold=1", "data.negatives_per_positive=0",
                    f"output_dir={tmp_path / 'b'}"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "a click-through model cannot learn from one class" in proc.stderr
    assert not RunDir(tmp_path / "b").metrics.exists() and not (tmp_path / "b" / "checkpoints").exists()
