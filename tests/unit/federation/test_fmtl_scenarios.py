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
    "fmtl_niid6_ubcdmt": [(MT, "", 795), (("parts", "normals"), "shapes", 4998)],
    "fmtl_niid7_ubcdst": [
        *((t, "", n) for t, n in zip(ST, (199, 199, 199, 198), strict=True)),
        (("parts",), "shapes", 2499), (("normals",), "shapes", 2499),
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
    "federation.domains.shapes.pool.length=90", "federation.domains.shapes.test.length=10",
    "federation.domains.shapes.pool.size=32", "federation.domains.shapes.min_per_client=4",
    "model.encoder.widths=[8,16]", "model.decoder.hidden=8", "federation.rounds=1", "federation.batch_size=8",
)  # fmt: skip


def test_a_domains_clients_draw_and_score_only_their_own_data_set(tmp_path, fashion_root, monkeypatch):
    monkeypatch.setenv(FASHION_ENV, str(fashion_root))
    cfg = scenario("fmtl_niid7_ubcdst", *TINY_DOMAINS, tmp_path=tmp_path / "run")
    driver = build(cfg)
    pool, test = driver.setup.dataset, driver.setup.test_dataset
    assert isinstance(pool, Joined) and len(pool) == 60 + 90 and len(test) == 8 + 10
    own_pool, other_pool = pool.parts
    other = [s for s in driver.specs if s.domain == "shapes"]
    assert [s.client_id for s in other] == ["parts@shapes-0", "normals@shapes-0"]
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
    both = [final[f"client/{c}/normals/test_mErr"] for c in ("normals-0", "normals@shapes-0")]
    assert final["test/normals/mErr"] == pytest.approx(sum(both) / 2) and both[0] != both[1]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["federation.groups.5.data=elsewhere"], r"federation.groups\[5\].data=elsewhere: not a domain of this run"),
        (["federation.domains.shapes.channels=3"], r"federation.domains.shapes.channels=3 but data.channels=1"),
        (["federation.domains.shapes.num_parts=5"], r"tasks.parts.num_classes is 3 with data but 5 with federation"),
        (
            ["federation.groups=[{tasks: [semseg, normals, edges, depth, parts], count: 2}]"],
            r"federation.domains.shapes is held by no group",
        ),
        (["data=shapes"], r"federation.domains.shapes draws the same examples as data"),
    ],
)
def test_domains_that_cannot_share_the_encoder_or_a_task_are_refused_before_anything_starts(overrides, message):
    with pytest.raises(ValueError, match=message):
        plan(scenario("fmtl_niid7_ubcdst", *overrides))
