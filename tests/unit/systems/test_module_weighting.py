"""The client's LightningModule and its loss weighting: hooks around a real fit, weights logged for every weighting."""

import math
from collections.abc import Mapping

import pytest
import torch
from torch.utils.data import DataLoader

from mfed.federation.trainer import quiet_trainer
from mfed.models.decoder import ConvDecoder
from mfed.models.encoder import ConvEncoder
from mfed.models.multitask import ModelFactory
from mfed.systems.dwa import DWA
from mfed.systems.module import TaskSystem
from mfed.systems.weighting import Equal, PCGrad, Uncertainty, Weighting
from mfed.tasks.depth import Depth
from mfed.tasks.semseg import SemanticSegmentation


def tiny_system(weighting: Weighting | None) -> TaskSystem:
    """A client holding semseg (loss_weight 2) and depth on a one-layer encoder."""
    tasks = [SemanticSegmentation(num_classes=3, loss_weight=2.0), Depth(loss_weight=0.5)]
    model = ModelFactory(lambda: ConvEncoder(1, (4,), norm="none"), ConvDecoder, seed=0)(tasks)
    return TaskSystem(model, tasks, lambda params: torch.optim.SGD(params, lr=0.05), weighting)


def tiny_loader(n: int = 6, batch_size: int = 4) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    items = [
        {"image": torch.rand(1, 8, 8, generator=gen), "semseg": torch.randint(0, 3, (8, 8), generator=gen),
         "depth": torch.rand(1, 8, 8, generator=gen)}
        for _ in range(n)
    ]  # fmt: skip
    return DataLoader(items, batch_size=batch_size)  # type: ignore[arg-type]


class Recording(DWA):
    """DWA that writes down every hook call, with the epoch losses it was given."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__(tasks)
        self.calls: list[tuple[str, dict[str, float]]] = []

    def on_fit_start(self) -> None:
        self.calls.append(("fit_start", {}))

    def on_train_epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        self.calls.append(("epoch_end", dict(epoch_losses)))
        super().on_train_epoch_end(epoch_losses)

    def on_fit_end(self) -> None:
        self.calls.append(("fit_end", {}))


def test_the_module_calls_the_hooks_around_a_real_fit_with_the_epochs_mean_weighted_losses():
    # Prepare
    weighting = Recording(["semseg", "depth"])
    system = tiny_system(weighting)
    # Execute: two fits of three and two epochs (two rounds of one client)
    quiet_trainer(3).fit(system, tiny_loader())
    means = system.train_epoch_means()
    quiet_trainer(2).fit(system, tiny_loader())
    # Assert: the order, and the last epoch of the first fit saw its logged means times loss_weight
    assert [name for name, _ in weighting.calls] == ["fit_start", *["epoch_end"] * 3, "fit_end",
                                                     "fit_start", *["epoch_end"] * 2, "fit_end"]  # fmt: skip
    losses = [given for name, given in weighting.calls if name == "epoch_end"]
    weighted = {"semseg": 2.0 * means["semseg/task_loss"], "depth": 0.5 * means["depth/task_loss"]}
    assert losses[2] == pytest.approx(weighted)
    # the weights the second fit's last epoch trained with (and logged): from its first epoch and the first fit's last
    e = [math.exp(losses[3][t] / losses[2][t] / 2.0) for t in ("semseg", "depth")]
    expected = {"semseg": 2 * e[0] / sum(e), "depth": 2 * e[1] / sum(e)}
    logged = system.train_epoch_means()
    assert {t: logged[f"{t}/weight"] for t in expected} == pytest.approx(expected, rel=1e-5)
    assert int(weighting.epochs) == 5


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        (None, {"semseg": 1.0, "depth": 1.0}),
        (Equal(["semseg", "depth"]), {"semseg": 1.0, "depth": 1.0}),
        (PCGrad(["semseg", "depth"]), {"semseg": 1.0, "depth": 1.0}),
        (Uncertainty(["semseg", "depth"], init=0.3), dict.fromkeys(["semseg", "depth"], 1 / (2 * math.exp(0.3)))),
        (DWA(["semseg", "depth"]), {"semseg": 1.0, "depth": 1.0}),
    ],
    ids=["default", "equal", "pcgrad", "uncertainty", "dwa"],
)
def test_every_weighting_logs_each_tasks_weight(weighting, expected):
    # Prepare
    system = tiny_system(weighting)
    batch = next(iter(tiny_loader()))
    # Execute: one training step (the weights before it are the logged ones)
    system.training_step(batch, 0)
    # Assert
    means = system.train_epoch_means()
    assert set(means) == {"loss", "reg", "semseg/task_loss", "depth/task_loss", "semseg/weight", "depth/weight"}
    assert {t: means[f"{t}/weight"] for t in expected} == pytest.approx(expected, rel=1e-6)


def test_dwas_logged_weights_after_two_epochs_are_its_current_weights():
    weighting = DWA(["semseg", "depth"])
    weighting.on_train_epoch_end({"semseg": 2.0, "depth": 1.0})
    weighting.on_train_epoch_end({"semseg": 1.0, "depth": 0.9})
    system = tiny_system(weighting)
    system.training_step(next(iter(tiny_loader())), 0)
    means = system.train_epoch_means()
    assert means["depth/weight"] > 1.0 > means["semseg/weight"]
    assert {t: means[f"{t}/weight"] for t in ("semseg", "depth")} == pytest.approx(weighting.weights())
