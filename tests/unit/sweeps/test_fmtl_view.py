"""FMTL-Bench's ΔG and ΔP in a benchmark's report, per task and overall, against hand computations."""

import json

import pytest

from mfed.sweeps.benchmark import collect_runs, summarise
from mfed.sweeps.plan import Trial
from mfed.sweeps.report import client_delta
from mfed.sweeps.results import markdown

TASKS = {"a": {"headline": "acc", "higher_is_better": {"acc": True}},
         "b": {"headline": "rmse", "higher_is_better": {"rmse": False}}}  # fmt: skip
HELD = {"a+b-0": ["a", "b"], "a-0": ["a"], "b-0": ["b"]}
# each client's headline on the global test set (G) and on its own held-out data (P), for Local and for a run
LOCAL = {"test": {"a-0": {"a": 0.50}, "b-0": {"b": 2.0}, "a+b-0": {"a": 0.40, "b": 1.6}},
         "local_test": {"a-0": {"a": 0.50}, "b-0": {"b": 2.0}, "a+b-0": {"a": 0.40, "b": 1.6}}}  # fmt: skip
RUN = {"test": {"a-0": {"a": 0.55}, "b-0": {"b": 1.5}, "a+b-0": {"a": 0.50, "b": 2.0}},
       "local_test": {"a-0": {"a": 0.60}, "b-0": {"b": 1.0}, "a+b-0": {"a": 0.44, "b": 2.0}}}  # fmt: skip
# ΔG: a-0 +10, b-0 +25, a+b-0 (+25 - 25) / 2 = 0: over clients 35 / 3; per task a (10 + 25) / 2, b (25 - 25) / 2
# ΔP: a-0 +20, b-0 +50, a+b-0 (+10 - 25) / 2 = -7.5: over clients 62.5 / 3; per task a (20 + 10) / 2, b (50 - 25) / 2
DELTA_G, DELTA_P = 35 / 3, 62.5 / 3
PER_TASK = {"test": {"a": 17.5, "b": 0.0}, "local_test": {"a": 15.0, "b": 12.5}}


def summary(values):
    final = {}
    for split, by_client in values.items():
        for cid, by_task in by_client.items():
            for task, v in by_task.items():
                final[f"client/{cid}/{task}/{split}_{TASKS[task]['headline']}"] = v
        for task, info in TASKS.items():  # the task's figure: the mean over its clients
            held = [by_task[task] for by_task in by_client.values() if task in by_task]
            final[f"{split}/{task}/{info['headline']}"] = sum(held) / len(held)
    return {"status": "completed", "tasks": TASKS, "clients": list(HELD), "client_tasks": HELD, "final": final,
            "error": None}  # fmt: skip


def test_delta_g_and_delta_p_per_task_and_overall_by_hand():
    ours, local = summary(RUN), summary(LOCAL)
    assert client_delta(ours, local) == pytest.approx(DELTA_G)
    assert client_delta(ours, local, "local_test") == pytest.approx(DELTA_P)
    for split, by_task in PER_TASK.items():
        for task, value in by_task.items():
            assert client_delta(ours, local, split, task) == pytest.approx(value)
    # withheld per-client figures (privacy=dp): task by task on the tasks' means
    # P: a (0.52 - 0.45) / 0.45, b -(1.5 - 1.8) / 1.8, averaged
    no_clients = {**ours, "final": {k: v for k, v in ours["final"].items() if not k.startswith("client/")}}
    expected = ((0.52 - 0.45) / 0.45 * 100 + (1.8 - 1.5) / 1.8 * 100) / 2
    assert client_delta(no_clients, local, "local_test") == pytest.approx(expected)


def test_a_benchmark_reports_fmtl_benchs_view_when_clients_hold_their_own_test_data(tmp_path):
    trials = []
    for strategy, values in (("local", LOCAL), ("mfed", RUN)):
        for seed in (0, 1):
            folder = tmp_path / f"{strategy}-s{seed}"
            folder.mkdir()
            shifted = {s: {c: {t: v * (1 + 0.01 * seed) for t, v in bt.items()} for c, bt in bc.items()}
                       for s, bc in values.items()}  # fmt: skip
            (folder / "summary.json").write_text(json.dumps(summary(shifted)))
            (folder / "history.json").write_text(json.dumps([{"round": 1.0}]))
            labels = {"strategy": strategy, "seed": seed, "setting": "default"}
            trials.append(Trial(folder.name, (), 3, strategy == "local", 1, labels))
    records = collect_runs(trials, tmp_path, {}, reference="local")
    mfed = records[2]
    assert mfed["delta_m"] == pytest.approx(DELTA_G) and mfed["delta_p"] == pytest.approx(DELTA_P)
    assert {k: pytest.approx(v) for k, v in PER_TASK.items()} == mfed["delta_tasks"]
    assert mfed["local_test"] == {"a/acc": pytest.approx((0.60 + 0.44) / 2), "b/rmse": pytest.approx(1.5)}
    results = summarise(records, "mfed", 0.95)
    entry = results["settings"]["default"]["strategies"]["mfed"]
    assert entry["delta_p"]["mean"] == pytest.approx(DELTA_P) and entry["delta_p"]["n"] == 2
    assert entry["delta_tasks"]["local_test"]["b"]["mean"] == pytest.approx(12.5)
    against = results["settings"]["default"]["against"]["local"]
    assert against["delta_p"]["mean"] == pytest.approx(DELTA_P)  # against Local's 0, seed by seed
    text = markdown({"benchmark": "fab", "overrides": [], "strategies": ["local", "mfed"], "seeds": [0, 1],
                     "reference": "local", "model_bytes": {}, **results, "runs": records}, images=False)  # fmt: skip
    assert "| strategy | ΔG a | ΔG b | **ΔG** | ΔP a | ΔP b | **ΔP** |" in text  # tasks in the clients' order
    assert (
        f"| mfed | 17.50 ± 0.00 | 0.00 ± 0.00 | {DELTA_G:.2f} ± 0.00 | 15.00 ± 0.00 | 12.50 ± 0.00 | 20.83 ± 0.00 |"
        in text
    )
    assert "| other | a acc ↑ | b rmse ↓ | Δm ↑ | ΔP ↑ |" in text
    # a setting whose clients hold task a only (another scenario) shows a's columns only
    only_a = [{**r, "setting": "only_a", "task_order": ["a"]} for r in records]
    both = records + only_a
    results = summarise(both, "mfed", 0.95)
    text = markdown({"benchmark": "fab", "overrides": [], "strategies": ["local", "mfed"], "seeds": [0, 1],
                     "reference": "local", "model_bytes": {}, **results, "runs": both}, images=False)  # fmt: skip
    assert text.count("| strategy | ΔG a | ΔG b | **ΔG** |") == 1 and text.count("| strategy | ΔG a | **ΔG** |") == 1
