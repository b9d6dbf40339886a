"""The power figures of a benchmark's comparisons: in results.json (mfed.sweeps.summary) and the markdown table."""

import json
import math

import pytest

from mfed.sweeps.results import markdown, recompute, write_results
from mfed.sweeps.stats import detectable_effect, power_analysis, seeds_needed
from mfed.sweeps.summary import summarise

TASKS = {"seg": {"headline": "mIoU", "higher_is_better": {"mIoU": True}}}
SEG = {  # seg mIoU by seed: mfed against local differs by 1, 2, 4 (spread); against same by 0.5 each seed (none)
    "local": [20.0, 22.0, 24.0, 21.0],
    "mfed": [21.0, 24.0, 28.0, 21.0],
    "same": [20.5, 23.5, 27.5, 21.0],
}


def record(strategy, seed, value, status="completed"):
    return {
        "strategy": strategy, "seed": seed, "setting": "default", "status": status, "trial": f"{strategy}-s{seed}",
        "overrides": [], "test": {"seg/mIoU": value}, "clients": {}, "tasks": TASKS, "task_order": ["seg"],
        "delta_m": value - SEG["local"][seed], "epsilon": None,
    }  # fmt: skip


def runs():
    out = [record(s, k, SEG[s][k]) for s in SEG for k in range(3)]
    out.append(record("mfed", 3, math.nan, status="diverged"))  # seed 3: not in any comparison
    out += [record("local", 3, SEG["local"][3]), record("same", 3, SEG["same"][3])]
    return out


def results(records):
    return {
        "benchmark": "fab", "overrides": [], "strategies": list(SEG), "seeds": [0, 1, 2, 3], "reference": "local",
        "model_bytes": {}, **summarise(records, "mfed", 0.95), "runs": records,
    }  # fmt: skip


def test_each_comparison_says_what_it_could_detect_at_holms_first_level():
    section = summarise(runs(), "mfed", 0.95)["settings"]["default"]
    # the family: seg and delta_m against local and against same; against same nothing varies (no p-value)
    assert section["power"] == {"power": 0.8, "alpha": pytest.approx(0.05 / 2), "tests": 2}
    local = section["against"]["local"]
    differences = [1.0, 2.0, 4.0]  # mfed - local on seeds 0, 1, 2 (seed 3 diverged)
    expected = power_analysis(differences, 0.05 / 2)
    for key in ("seg", "delta_m"):  # delta_m here: the seg difference itself
        assert local[key]["detectable"] == pytest.approx({"difference": expected.difference, "d_z": expected.d_z})
        assert local[key]["seeds_needed"] == expected.seeds
    sd = math.sqrt(7 / 3)  # of 1, 2, 4
    assert local["seg"]["detectable"]["difference"] == pytest.approx(detectable_effect(3, 0.025) * sd)
    assert local["seg"]["seeds_needed"] == seeds_needed((7 / 3) / sd, 0.025)
    same = section["against"]["same"]["seg"]  # every difference 0.5: no spread
    assert math.isnan(same["p"]) and same["seeds_needed"] is None
    assert all(math.isnan(v) for v in same["detectable"].values())


def test_the_markdown_table_shows_the_power_figures_and_says_what_they_are(tmp_path):
    # Execute: written (NaN as null) and read back, as mfed results does
    write_results(results(runs()), tmp_path, pictures=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    text = (tmp_path / "results.md").read_text()
    # Assert
    same = saved["settings"]["default"]["against"]["same"]["seg"]
    assert same["detectable"] == {"difference": None, "d_z": None} and same["seeds_needed"] is None
    local = saved["settings"]["default"]["against"]["local"]["seg"]
    cell = f"<br>detectable {local['detectable']['difference']:.2f}; {local['seeds_needed']} seeds |"
    assert cell in text
    assert "<br>detectable - |" in text  # no spread: a dash
    assert "Power, at 0.025 (0.05 / 2 tests: the level Holm's correction asks" in text
    assert f"(d_z {detectable_effect(3, 0.025):.1f} with 3 seeds)" in text
    # mfed results: the figures again from the runs alone, the same markdown from the JSON as written
    assert recompute(saved)["settings"]["default"]["against"]["local"]["seg"] == local
    assert markdown(saved, images=False) in text.replace("\n\n![seg](curves_seg.png)", "").replace(
        "\n\n![delta_m](delta_m.png)", ""
    )


def test_results_written_before_the_power_figures_still_render():
    old = results(runs())
    for entry in old["settings"]["default"]["against"].values():
        for key in ("seg", "delta_m"):
            del entry[key]["detectable"], entry[key]["seeds_needed"]
    del old["settings"]["default"]["power"]
    text = markdown(old, images=False)
    assert "detectable" not in text and "Power, at" not in text and "<br>d_z " in text


def test_a_setting_with_no_test_has_no_power_figures():
    records = [r for r in runs() if r["strategy"] != "local"]  # mfed against same only: no spread, no p-value
    section = summarise(records, "mfed", 0.95)["settings"]["default"]
    assert section["power"]["tests"] == 0 and math.isnan(section["power"]["alpha"])
    text = markdown({**results(records), "settings": {"default": section}}, images=False)
    assert "<br>detectable -" in text and "Power, at" not in text
