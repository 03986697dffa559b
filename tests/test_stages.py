"""cnnlab.experiments.stages: where a long command's time and memory went."""

from __future__ import annotations

from cnnlab.experiments.stages import Stage, StageLog
from process_helpers import json_from_a_fresh_process, needs_proc_status


@needs_proc_status
def test_the_peak_rises_by_what_a_stage_touched():
    # A fresh process: in this one, earlier tests may have peaked higher than anything added here.
    code = ("import json, time\nimport numpy as np\nfrom cnnlab.experiments.stages import StageLog\n"
            "log = StageLog()\nlog.finish('nothing')\n"
            "block = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, every page written\n"
            "time.sleep(0.01)\nlog.finish('a 300 MB array')\ndel block\nlog.finish('after')\n"
            "print(json.dumps(log.to_list()))\n")
    nothing, allocated, after = json_from_a_fresh_process(code)
    assert allocated["peak_resident_mb"] - nothing["peak_resident_mb"] >= 250
    assert after["peak_resident_mb"] - nothing["peak_resident_mb"] >= 250  # a peak, not the current size
    assert allocated["seconds"] >= 0.01 and allocated["seconds"] > nothing["seconds"]


def test_the_table_marks_the_stages_that_raised_the_peak_and_the_reused_ones():
    log = StageLog([Stage("survey and caches", 35.2, 700.0), Stage("train and evaluate mlp", 130.0, 1800.0),
                    Stage("train and evaluate conv1", 67.0, 1810.0, reused=True), Stage("baseline majority", 0.1, None)])
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")[1:]]
            for line in log.markdown().splitlines() if line.startswith("| ") and "stage" not in line}
    assert rows["survey and caches"] == ["00:35", "0.68 GB"]
    assert rows["train and evaluate mlp"] == ["02:10", "1.76 GB (rose)"]
    assert rows["train and evaluate conv1"] == ["reused", "1.77 GB"]  # within 5%: not a rise worth naming
    assert rows["baseline majority"] == ["00:00", "-"]
    assert [stage["name"] for stage in log.to_list()][-1] == "baseline majority"
