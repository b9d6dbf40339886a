"""Per-client W&B keys at scale: one histogram per metric instead of a series per client."""

import pytest

from mfed.loggers.wandb_run import WandbCallback, per_client_as_histograms

ROW = {
    "round": 2.0, "val/seg/mIoU": 30.0,
    "client/a/seg/mIoU": 10.0, "client/b/seg/mIoU": 20.0, "client/c/seg/mIoU": 60.0,
    "client/a/train_loss": 1.0, "client/c/train_loss": 3.0, "fault/c/rejected": 1.0,
}  # fmt: skip


def test_above_the_limit_per_client_keys_become_histograms_and_the_rest_stays():
    out = per_client_as_histograms(ROW, 2, sorted)
    assert out == {
        "round": 2.0, "val/seg/mIoU": 30.0, "fault/c/rejected": 1.0,
        "clients/seg/mIoU": [10.0, 20.0, 60.0], "clients/seg/mIoU/count": 3.0,
        "clients/train_loss": [1.0, 3.0], "clients/train_loss/count": 2.0,
    }  # fmt: skip
    assert per_client_as_histograms(ROW, 3, sorted) == ROW  # at the limit: every series as it is


def test_a_negative_limit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="logger.max_client_series must be >= 0, got -1"):
        WandbCallback(tmp_path, max_client_series=-1)
