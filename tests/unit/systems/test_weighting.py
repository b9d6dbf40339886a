import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from mfed.config import config_dir
from mfed.systems.weighting import Equal, PCGrad, Uncertainty, load_weighting_state, weighting_state

# --- Equal ---------------------------------------------------------------------------------------


def test_equal_sums_the_losses():
    weighting = Equal(["a", "b"])
    value = weighting.combine({"a": torch.tensor(1.5), "b": torch.tensor(-0.25)})
    assert float(value) == pytest.approx(1.25)
    assert weighting.weights() == {"a": 1.0, "b": 1.0}
    assert list(weighting.parameters()) == []


def test_equal_single_task_returns_the_loss_itself():
    x = torch.tensor(0.123456789, dtype=torch.float64, requires_grad=True) * 3
    value = Equal(["a"]).combine({"a": x})
    assert torch.equal(value, x)
    assert value.dtype == torch.float64


def test_combine_names_missing_and_extra_tasks():
    weighting = Equal(["a", "b"])
    with pytest.raises(ValueError, match=r"missing \['b'\], extra \['c'\]"):
        weighting.combine({"a": torch.tensor(1.0), "c": torch.tensor(2.0)})


# --- Uncertainty ---------------------------------------------------------------------------------


def _uncertainty(log_var: list[float]) -> Uncertainty:
    weighting = Uncertainty(["a", "b"])
    with torch.no_grad():
        weighting.log_var.copy_(torch.tensor(log_var))
    return weighting


def test_uncertainty_combines_as_the_hand_formula():
    weighting = _uncertainty([0.3, -0.7])
    value = weighting.combine({"a": torch.tensor(2.0), "b": torch.tensor(0.5)})
    expected = 2.0 / (2 * math.exp(0.3)) + 0.3 / 2 + 0.5 / (2 * math.exp(-0.7)) - 0.7 / 2
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)
    weights = weighting.weights()
    assert weights["a"] == pytest.approx(1 / (2 * math.exp(0.3)), rel=1e-6)
    assert weights["b"] == pytest.approx(1 / (2 * math.exp(-0.7)), rel=1e-6)


def test_uncertainty_gradient_of_log_var_is_the_hand_derivative():
    weighting = _uncertainty([0.3, -0.7])
    weighting.combine({"a": torch.tensor(2.0), "b": torch.tensor(0.5)}).backward()
    expected = [-2.0 / (2 * math.exp(0.3)) + 0.5, -0.5 / (2 * math.exp(-0.7)) + 0.5]
    assert weighting.log_var.grad is not None
    assert weighting.log_var.grad.tolist() == pytest.approx(expected, rel=1e-6)


def test_uncertainty_init_and_state_dict_key():
    weighting = Uncertainty(["a", "b", "c"], init=-0.5)
    assert list(weighting.state_dict()) == ["log_var"]
    assert weighting.log_var.shape == (3,)
    assert weighting.log_var.tolist() == [-0.5, -0.5, -0.5]
    assert Uncertainty(["a"]).log_var.tolist() == [0.0]


def test_one_sgd_step_moves_log_var_with_the_model():
    # Prepare: L_a = (x - 1)^2, L_b = (x + 1)^2 at x = 2: L_a = 1, L_b = 9; s = (0, 0)
    x = nn.Parameter(torch.tensor(2.0))
    weighting = Uncertainty(["a", "b"])
    lr = 0.1
    optimizer = torch.optim.SGD([x, *weighting.parameters()], lr=lr)
    # Execute
    loss = weighting.combine({"a": (x - 1) ** 2, "b": (x + 1) ** 2})
    weighting.backward(loss, {}, [])
    optimizer.step()
    # Assert: ds_t = -L_t / 2 + 1/2; dx = (2(x-1) + 2(x+1)) / 2 = 2x = 4
    assert weighting.log_var.tolist() == pytest.approx([-lr * (-1 / 2 + 0.5), -lr * (-9 / 2 + 0.5)])
    assert weighting.log_var.tolist()[1] == pytest.approx(0.4)
    assert float(x.detach()) == pytest.approx(2.0 - lr * 4.0)


def test_uncertainty_rejects_non_finite_init():
    with pytest.raises(ValueError, match="weighting.init"):
        Uncertainty(["a"], init=float("nan"))
    with pytest.raises(ValueError, match="weighting.init"):
        Uncertainty(["a"], init="0.1")  # type: ignore[arg-type]


# --- PCGrad --------------------------------------------------------------------------------------

G1 = torch.tensor([1.0, 0.0])


def _conflicting(w: nn.Parameter) -> dict[str, torch.Tensor]:
    """g_1 = (1, 0), g_2 = (-1, 1) on w: g_1 . g_2 = -1 < 0."""
    return {"a": w @ G1, "b": w @ torch.tensor([-1.0, 1.0])}


# By hand: g_1' = g_1 - (-1)/||g_2||^2 g_2 = (1, 0) + (-1, 1)/2 = (0.5, 0.5);
#          g_2' = g_2 - (-1)/||g_1||^2 g_1 = (-1, 1) + (1, 0) = (0, 1); sum (0.5, 1.5), plain sum (0, 1).
PROJECTED = [0.5, 1.5]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])  # either order of the other task: the same for two tasks
def test_pcgrad_projects_conflicting_gradients(seed):
    torch.manual_seed(seed)
    w = nn.Parameter(torch.tensor([2.0, 5.0]))
    weighting = PCGrad(["a", "b"])
    losses = _conflicting(w)
    weighting.backward(weighting.combine(losses), losses, [w])
    assert w.grad is not None
    assert w.grad.tolist() == pytest.approx(PROJECTED)


def test_pcgrad_keeps_the_plain_sum_without_conflict():
    w = nn.Parameter(torch.tensor([2.0, 5.0]))
    weighting = PCGrad(["a", "b"])
    losses = {"a": w @ G1, "b": w @ torch.tensor([1.0, 1.0])}  # g_1 . g_2 = 1 > 0
    weighting.backward(weighting.combine(losses), losses, [w])
    assert w.grad is not None
    assert w.grad.tolist() == pytest.approx([2.0, 1.0])


def test_pcgrad_task_specific_parameters_keep_their_own_gradient():
    # L_a = a * w_0 (a = 1: g_1 = (1, 0)), L_b = -w_0 + w_1 + 3 b: dL_a/da = w_0 = 2, dL_b/db = 3
    w = nn.Parameter(torch.tensor([2.0, 5.0]))
    a, b = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(0.0))
    losses = {"a": a * w[0], "b": -w[0] + w[1] + 3 * b}
    weighting = PCGrad(["a", "b"])
    weighting.backward(weighting.combine(losses), losses, [w])
    assert w.grad is not None and a.grad is not None and b.grad is not None
    assert w.grad.tolist() == pytest.approx(PROJECTED)
    assert float(a.grad) == pytest.approx(2.0)
    assert float(b.grad) == pytest.approx(3.0)


def test_pcgrad_keeps_an_extra_terms_gradient_on_the_shared_parameter():
    w = nn.Parameter(torch.tensor([2.0, 5.0]))
    weighting = PCGrad(["a", "b"])
    losses = _conflicting(w)
    loss = weighting.combine(losses) + 0.5 * (w**2).sum()  # its gradient: w = (2, 5)
    weighting.backward(loss, losses, [w])
    assert w.grad is not None
    assert w.grad.tolist() == pytest.approx([0.5 + 2.0, 1.5 + 5.0])


def test_pcgrad_single_task_or_no_shared_parameter_is_plain_backward():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    twin = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    twin.load_state_dict(net.state_dict())
    x = torch.randn(5, 3)
    net(x).pow(2).mean().backward()
    weighting = PCGrad(["a"])
    losses = {"a": twin(x).pow(2).mean()}
    weighting.backward(weighting.combine(losses), losses, list(twin[0].parameters()))
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.equal(p.grad, q.grad)
    # two tasks, but the shared parameter is frozen: plain backward too
    w = nn.Parameter(torch.tensor([2.0, 5.0]), requires_grad=False)
    d = nn.Parameter(torch.tensor([1.0, 1.0]))
    losses = {"a": (w * d) @ G1, "b": (w * d) @ torch.tensor([-1.0, 1.0])}
    PCGrad(["a", "b"]).backward(losses["a"] + losses["b"], losses, [w])
    assert d.grad is not None
    assert d.grad.tolist() == pytest.approx([0.0, 5.0])


def test_pcgrad_with_seeded_torch_is_deterministic():
    def run() -> list[float]:
        torch.manual_seed(7)
        w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
        vectors = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 1.0], [0.3, 0.2, -2.0]])
        losses = {t: w @ v for t, v in zip("abc", vectors, strict=True)}
        weighting = PCGrad(list("abc"))
        weighting.backward(weighting.combine(losses), losses, [w])
        assert w.grad is not None
        return w.grad.tolist()

    assert run() == run()


# --- state ---------------------------------------------------------------------------------------


def test_weighting_state_round_trip():
    source = _uncertainty([0.3, -0.7])
    state = weighting_state(source)
    assert list(state) == ["weighting.log_var"]
    assert state["weighting.log_var"].device.type == "cpu" and not state["weighting.log_var"].requires_grad
    target = Uncertainty(["a", "b"])
    load_weighting_state(target, {**state, "encoder.weight": torch.zeros(3)})  # other keys ignored
    assert torch.equal(target.log_var.detach(), torch.tensor([0.3, -0.7]))
    # the state is a copy: training on does not change it
    with torch.no_grad():
        source.log_var.add_(1.0)
    assert state["weighting.log_var"].tolist() == pytest.approx([0.3, -0.7])
    assert weighting_state(Equal(["a"])) == {} and weighting_state(PCGrad(["a", "b"])) == {}


def test_load_weighting_state_with_nothing_selected_leaves_it_unchanged():
    weighting = _uncertainty([0.3, -0.7])
    load_weighting_state(weighting, {"encoder.weight": torch.zeros(3)})
    assert weighting.log_var.tolist() == pytest.approx([0.3, -0.7])
    load_weighting_state(Equal(["a"]), {})


def test_load_weighting_state_names_bad_keys_and_shapes():
    with pytest.raises(ValueError, match=r"missing keys \['weighting.log_var'\].*unexpected keys \['weighting.s'\]"):
        load_weighting_state(Uncertainty(["a"]), {"weighting.s": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys \['weighting.log_var'\]"):
        load_weighting_state(Equal(["a"]), {"weighting.log_var": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"weighting.log_var has shape \(3,\).*expects \(2,\)"):
        load_weighting_state(Uncertainty(["a", "b"]), {"weighting.log_var": torch.zeros(3)})


# --- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Equal, Uncertainty, PCGrad])
def test_constructor_errors(cls):
    with pytest.raises(ValueError, match="weighting.tasks must name at least one task"):
        cls([])
    with pytest.raises(ValueError, match="weighting.tasks names task 'a' more than once"):
        cls(["a", "b", "a"])
    with pytest.raises(ValueError, match="not the string 'ab'"):
        cls("ab")
    with pytest.raises(ValueError, match="non-empty task names, got ''"):
        cls(["a", ""])


@pytest.mark.parametrize(("option", "cls"), [("equal", Equal), ("uncertainty", Uncertainty), ("pcgrad", PCGrad)])
def test_configs_instantiate_as_partials(option, cls):
    factory = instantiate(OmegaConf.load(config_dir() / "weighting" / f"{option}.yaml"))
    weighting = factory(tasks=["semseg", "depth"])
    assert type(weighting) is cls
    assert weighting.tasks == ("semseg", "depth")
