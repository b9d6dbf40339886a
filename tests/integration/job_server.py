"""A Ray head with a job server on 127.0.0.1, in this process; ends when stdin closes.

Run as a subprocess by the job-submission test: prints ``DASHBOARD http://127.0.0.1:<port>``
once the job server answers, then waits. With the argument ``gcs``: no job server, and it prints
``GCS <host:port>`` (for the tests that join a head). ``ray.shutdown()`` ends every process it started, so
no ``ray stop`` (which would kill every Ray process on the machine) is needed.
"""

import socket
import sys
import time
import urllib.request

import ray
from ray._private import parameter


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ray.init has no option for the dashboard agent's HTTP port, which is what `ray job submit` talks
# to: its fixed default (52365) is taken by any other Ray on the machine (a benchmark, a user's
# cluster), and the head then answers "No available agent to submit job" for ever. A free port.
_init_params = parameter.RayParams.__init__


def _with_free_agent_port(self, *args, **kwargs):
    kwargs.setdefault("dashboard_agent_listen_port", free_port())
    _init_params(self, *args, **kwargs)


parameter.RayParams.__init__ = _with_free_agent_port


def main() -> None:
    if sys.argv[1:] == ["gcs"]:
        ctx = ray.init(address="local", num_cpus=1, include_dashboard=False)
        print(f"GCS {ctx.address_info['gcs_address']}", flush=True)
        sys.stdin.read()
        ray.shutdown()
        return
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=0)
    url = f"http://{ctx.dashboard_url}"
    deadline = time.time() + 60
    while True:  # the job server may need a few seconds after init
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    print(f"DASHBOARD {url}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    ray.shutdown()


if __name__ == "__main__":
    main()
