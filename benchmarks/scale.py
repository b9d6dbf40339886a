"""Wall time and peak memory of one `mfed train` run, its whole process tree included (Ray's too).

Usage: python benchmarks/scale.py [mfed train overrides...]
e.g.   python benchmarks/scale.py federation.clients_per_task=334 backend.clients_per_actor=auto \
           federation.fraction=0.1 federation.rounds=2 federation.eval_every=2 \
           data.pool.length=10020 data.test=null logger=none
Prints the run's last lines, then `SCALE rc=<exit> wall=<s> peak=<GB>`.
"""

import sys
import time

from round_overhead import run_sampled


def main() -> None:
    start = time.monotonic()
    code, out, peak = run_sampled([sys.executable, "-m", "mfed.cli", "train", *sys.argv[1:]], every_s=0.5)
    print(out[-3000:])
    print(f"SCALE rc={code} wall={time.monotonic() - start:.0f}s peak={peak / 2**30:.2f}GB")


if __name__ == "__main__":
    main()
