"""The embedded Ray's start-up: its token is owner-only from its first byte, and a SIGTERM during it is a stop."""

import signal
import stat
import sys

import pytest

from mfed.federation import local_ray
from mfed.interrupts import StopRequested


class FakeRay:
    """Stands in for ``ray``: records the modes when ``init`` runs, or exits as Ray's SIGTERM handler does."""

    def __init__(self, token, exit_with=None):
        self.token, self.exit_with, self.seen = token, exit_with, None

    def init(self, **kwargs):
        self.seen = stat.S_IMODE(self.token.stat().st_mode), stat.S_IMODE(self.token.parent.stat().st_mode)
        if self.exit_with is not None:
            sys.exit(self.exit_with)  # Ray's core: sigterm_handler -> sys.exit(signum)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv(local_ray.AUTH_MODE_ENV, "token")
    return tmp_path


def test_the_token_exists_owner_only_before_ray_starts(home, monkeypatch):
    fake = FakeRay(home / ".ray" / "auth_token")
    monkeypatch.setitem(sys.modules, "ray", fake)
    local_ray.init_local_ray(num_cpus=1)
    assert fake.seen == (0o600, 0o700)  # the token and ~/.ray, when Ray first reads them
    token = (home / ".ray" / "auth_token").read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # Ray's format: 256 bits as hex


def test_an_existing_token_is_kept_and_restricted(home, monkeypatch):
    (home / ".ray").mkdir()
    path = home / ".ray" / "auth_token"
    path.write_text("f" * 64)
    path.chmod(0o644)
    monkeypatch.setitem(sys.modules, "ray", FakeRay(path))
    local_ray.init_local_ray(num_cpus=1)
    assert path.read_text() == "f" * 64 and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_sigterm_while_ray_starts_is_a_stop_not_an_exit(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", FakeRay(home / ".ray" / "auth_token", exit_with=signal.SIGTERM))
    with pytest.raises(StopRequested) as stop:
        local_ray.init_local_ray(num_cpus=1)
    assert stop.value.signum == signal.SIGTERM
    monkeypatch.setitem(sys.modules, "ray", FakeRay(home / ".ray" / "auth_token", exit_with=3))
    with pytest.raises(SystemExit):  # any other exit is Ray's own
        local_ray.init_local_ray(num_cpus=1)
