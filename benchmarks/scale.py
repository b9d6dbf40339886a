"""Wall time and peak memory of one `mfed train` run, its whole process tree included (Ray's too).

Usage: python benchmarks/scale.py [mfed train overrides...]
e.g.   python benchmarks/scale.py federation.clients_per_task=334 backend.clients_per_actor=auto \
           federation.fraction=0.1 federation.rounds=2 federation.eval_every=2 \
           data.pool.length=10020 data.test=null logger=none
Prints the run's last lines, then `SCALE rc=<exit> wall=<s> peak=<GB>`.
"""

import subprocess
import sys
import threading
import time

from round_overhead import tree_rss


def main() -> None:
    command = [sys.executable, "-m", "mfed.cli", "train", *sys.argv[1:]]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    print(out[-3000:])
    print(f"SCALE rc={proc.returncode} wall={time.monotonic() - start:.0f}s peak={peak[0] / 2**30:.2f}GB")


if __name__ == "__main__":
    main()
