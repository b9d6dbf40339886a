import pytest
import torch
from torch import nn

from mfed.systems.regularisers import proximal_term


def test_gradient_equals_mu_times_distance_to_global_decoder():
    # Prepare
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))
    reference = {k: v.detach() + torch.randn_like(v) for k, v in decoder.named_parameters()}
    mu = 0.3
    # Execute
    proximal_term(decoder.named_parameters(), reference, mu).backward()
    # Assert
    for name, param in decoder.named_parameters():
        torch.testing.assert_close(param.grad, mu * (param.detach() - reference[name]))


def test_value_is_half_mu_squared_distance():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    value = proximal_term([("p", p)], {"p": torch.tensor([0.0, 0.0])}, mu=2.0)
    assert float(value.detach()) == pytest.approx(5.0)  # 2/2 * (1 + 4)


def test_missing_reference_and_negative_mu():
    p = nn.Parameter(torch.zeros(1))
    with pytest.raises(KeyError, match="no global reference"):
        proximal_term([("p", p)], {}, mu=1.0)
    with pytest.raises(ValueError, match="mu must be >= 0"):
        proximal_term([("p", p)], {"p": torch.zeros(1)}, mu=-0.1)
