"""Scene generation throughput, and what an .npz cache of the same scenes would save.

Usage: python benchmarks/scene_generation.py [--n 1000] [--size 64]
Prints scenes per second for procedural shapes and Fashion-MNIST items, and the time to load the
same scenes back from a compressed and an uncompressed .npz, side by side.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mfed.data.fashion import FashionMNISTItems
from mfed.data.items import ShapeItems
from mfed.data.scene_dataset import SceneDataset

KEYS = ["semseg", "depth", "edges", "normals", "saliency", "parts"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    sources = {"shapes": ShapeItems()}
    try:
        items = FashionMNISTItems()
        items.arrays("train")  # load once, outside the timing
        sources["fashion"] = items
    except FileNotFoundError as err:
        print(f"fashion: skipped ({err})")
    print(f"{'items':10s} {'generate':>12s} {'scenes/s':>10s} {'npz load':>10s} {'npz.gz load':>12s} {'npz MB':>8s}")
    for name, source in sources.items():
        pool = SceneDataset(source, length=args.n, size=args.size)
        data, gen_s = timed(lambda pool=pool: pool.materialize(range(args.n), KEYS))
        arrays = {k: v.numpy() for k, v in data.tensors.items()}
        with tempfile.TemporaryDirectory() as tmp:
            plain, packed = Path(tmp) / "plain.npz", Path(tmp) / "packed.npz"
            np.savez(plain, **arrays)
            np.savez_compressed(packed, **arrays)
            _, load_s = timed(lambda plain=plain: {k: v for k, v in np.load(plain).items()})
            _, packed_s = timed(lambda packed=packed: {k: v for k, v in np.load(packed).items()})
            mb = plain.stat().st_size / 2**20
        print(f"{name:10s} {gen_s:11.2f}s {args.n / gen_s:10.0f} {load_s:9.2f}s {packed_s:11.2f}s {mb:8.1f}")


if __name__ == "__main__":
    main()
