"""FMTL-Bench's seven scenarios as federation configs, and cross-domain federations (federation.domains)."""

from __future__ import annotations

import pytest
import torch

from mfed.config import load_config
from mfed.data.domains import Joined
from mfed.data.fashion import ENV_VAR as FASHION_ENV
from mfed.federation.client import Client
from mfed.plan import plan
from mfed.run import build

ST = [("semseg",), ("normals",), ("edges",), ("depth",)]
MT = ("semseg", "normals", "edges", "depth")
# Each scenario's clients: (task set, domain, examples before the 9:1 local split), in client order, from
# FMTL-Bench's configs (nyud_mt_4c, nyud_st_1c, NystAndNymt_1c, *_niid, p2n4mt_1c, p2n4st_1c) on NYUD-v2's
# 795 and PASCAL-Context's 4998 training images. NIID-3's multi-task client there shares the single-task
# clients' images; here the pool is doubled so that every client's images are its own (1:1:1:1:4 of 1590).
PAPER = {
    "fmtl_iid1_sdmt": [(MT, "", n) for n in (199, 199, 199, 198)],
    "fmtl_niid2_sdst": [(t, "", n) for t, n in zip(ST, (199, 199, 199, 198), strict=True)],
    "fmtl_niid3_sdht": [*((t, "", 198) for t in ST), (MT, "", 792)],
    "fmtl_niid4_ubsdmt": [(MT, "", n) for n in (79, 158, 237, 316)],
    "fmtl_niid5_ubsdst": [(t, "", n) for t, n in zip(ST, (79, 158, 237, 316), strict=True)],
    "fmtl_niid6_ubcdmt": [(MT, "", 795), (("parts", "normals"), "second", 4998)],
    "fmtl_niid7_ubcdst": [
        *((t, "", n) for t, n in zip(ST, (199, 199, 199, 198), strict=True)),
        (("parts",), "second", 2499), (("normals",), "second", 2499),
    ],
}  # fmt: skip


def scenario(name, *overrides, tmp_path="/tmp/unused"):
    return load_config([f"federation={name}", "backend=serial", "logger=none", f"out_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("name", list(PAPER))
def test_each_scenario_has_the_papers_clients_task_sets_and_volumes(name):
    from mfed.run import build_data

    cfg = scenario(name)
    specs, pool, test = build_data(cfg, plan(cfg).roster)
    got = [(s.tasks, s.domain, len(s.train_indices) + len(s.val_indices) + len(s.local_test_indices)) for s in specs]
    assert got == PAPER[name]
    for s in specs:
        n = len(s.train_indices) + len(s.val_indices) + len(s.local_test_indices)
        assert len(s.local_test_indices) == n - int(0.9 * n)  # FMTL-Bench's 9:1 local split
    all_indices = [i for s in specs for i in (*s.train_indices, *s.val_indices, *s.local_test_indices)]
    assert len(all_indices) == len(set(all_indices))  # no example in two clients
    assert len(test) == 654 + (5105 if name in ("fmtl_niid6_ubcdmt", "fmtl_niid7_ubcdst") else 0)


TINY_DOMAINS = (
    "data.pool.length=60", "data.test.length=8", "data.pool.size=32", "data.min_per_client=4",
    "federation.domains.second.pool.length=90", "federation.domains.second.test.length=10",
    "federation.domains.second.pool.size=32", "federation.domains.second.min_per_client=4",
    "model.encoder.widths=[8,16]", "model.decoder.hidden=8", "federation.rounds=1", "federation.batch_size=8",
)  # fmt: skip


def test_a_domains_clients_draw_and_score_only_their_own_data_set(tmp_path, fashion_root, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(fashion_root))
    cfg = scenario("fmtl_niid7_ubcdst", *TINY_DOMAINS, tmp_path=tmp_path / "run")
    driver = build(cfg)
    pool, test = driver.setup.dataset, driver.setup.test_dataset
    assert isinstance(pool, Joined) and len(pool) == 60 + 90 and len(test) == 8 + 10
    own_pool, other_pool = pool.parts
    other = [s for s in driver.specs if s.domain == "second"]
    assert [s.client_id for s in other] == ["parts@second-0", "normals@second-0"]
    for spec in driver.specs:
        indices = (*spec.train_indices, *spec.val_indices, *spec.local_test_indices)
        start, stop = (60, 150) if spec.domain else (0, 60)
        assert all(start <= i < stop for i in indices)
        assert spec.test_span == ((8, 18) if spec.domain else (0, 8))
    i = other[0].train_indices[0]
    assert torch.equal(pool[i]["image"], other_pool[i - 60]["image"])
    driver.run()
    final = driver.history[-1]
    # parts is held in the second domain only: its test figure is that client scoring the second domain's test split
    spec = other[0]
    alone = Client(spec.__class__(spec.client_id, spec.tasks, spec.train_indices, spec.val_indices, spec.seed),
                   *driver.setup.client_args(spec, (pool, test.parts[1]))[1:])  # fmt: skip
    scored = alone.evaluate(driver.state, "test")
    assert final["test/parts/mIoU"] == pytest.approx(scored.metrics["parts"]["mIoU"])
    # normals is held in both: the mean of its two clients' figures, each on its own domain's test split
    both = [final[f"client/{c}/normals/test_mErr"] for c in ("normals-0", "normals@second-0")]
    assert final["test/normals/mErr"] == pytest.approx(sum(both) / 2) and both[0] != both[1]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["federation.groups.5.data=elsewhere"], r"federation.groups\[5\].data=elsewhere: not a domain of this run"),
        (["federation.domains.second.channels=3"], r"federation.domains.second.channels=3 but data.channels=1"),
        (
            ["federation.groups.5.tasks=[normals,depth]", "federation.domains.second.depth_offset=3.0"],
            r"tasks.depth.offset is 8.0 with data but 3.0 with federation.domains.second: a task held in two domains",
        ),
        (
            ["federation.groups=[{tasks: [semseg, normals, edges, depth, parts], count: 2}]"],
            r"federation.domains.second is held by no group",
        ),
        (["data=shapes"], r"federation.domains.second draws the same examples as data"),
    ],
)
def test_domains_that_cannot_share_the_encoder_or_a_task_are_refused_before_anything_starts(overrides, message):
    with pytest.raises(ValueError, match=message):
        plan(scenario("fmtl_niid7_ubcdst", *overrides))


def test_real_data_sets_in_two_domains_load_only_the_tasks_their_clients_hold(tmp_path, monkeypatch):
    from mfed.run import build_data
    from tests.unit.data.fixtures_benchmarks import write_nyud, write_pascal_mt

    monkeypatch.setenv("MFED_NYUD_ROOT", str(write_nyud(tmp_path / "nyud").root))
    monkeypatch.setenv("MFED_PASCAL_ROOT", str(write_pascal_mt(tmp_path / "pascal").root))
    groups = "[{tasks: [semseg, depth], count: 1}, {tasks: [parts, normals], count: 1, data: second}]"
    cfg = scenario("fmtl_niid6_ubcdmt", "data=nyud", "data@federation.domains.second=pascal_context",
                   f"federation.groups={groups}", "federation.volume=0.0004", "data.min_per_client=1",
                   "federation.domains.second.min_per_client=1", "data.val_fraction=0", "data.local_test_fraction=0",
                   "federation.domains.second.val_fraction=0", "federation.domains.second.local_test_fraction=0",
                   "~tasks.edges")  # fmt: skip
    specs, pool, test = build_data(cfg, plan(cfg).roster)
    nyud, pascal = pool.parts
    assert nyud.tasks == ("semseg", "depth") and pascal.tasks == ("normals", "parts")
    assert [type(t).__name__ for t in test.parts] == ["NYUDv2", "PascalContextMT"] and test.parts[
        1
    ].tasks == pascal.tasks
    assert [len(p) for p in pool.parts] == [1, 2]  # volume 0.0004 of 795 and 4998 (at least 1)
    assert set(pool[specs[1].train_indices[0]]) == {"image", "normals", "parts"}


@pytest.mark.parametrize("name", ["fmtl_quick", "fmtl"])
def test_the_fmtl_benchmarks_plan_every_scenario_for_every_strategy(name, fashion_root, monkeypatch):
    from mfed.sweeps.benchmark import plan_benchmark

    monkeypatch.setenv(FASHION_ENV, str(fashion_root))
    bench = load_config([f"benchmark={name}"]).benchmark
    trials = plan_benchmark(bench, [])  # every (scenario, strategy) built once: bad settings fail here
    scenarios = {t.labels["setting"] for t in trials}
    assert scenarios == {f"federation-{s}" for s in PAPER}
    assert len(trials) == len(PAPER) * len(bench.strategies) * len(bench.seeds)
    assert {t.clients for t in trials if t.labels["setting"] == "federation-fmtl_niid7_ubcdst"} == {6}


def test_a_task_held_in_one_other_domain_is_built_from_that_data_set():
    # parts is held by the second domain only: its classes are that data set's, not the run's own
    p = plan(scenario("fmtl_niid7_ubcdst", "federation.domains.second.num_parts=5"))
    assert p.tasks["parts"].num_classes == 5 and p.tasks["semseg"].num_classes == 11
    assert p.model.state_dict()["decoders.parts.head.weight"].shape[0] == 5
