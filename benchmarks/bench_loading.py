"""Time loading model files from their original formats and from the safetensors cache.

    python benchmarks/bench_loading.py GENERATOR.pkl CHECKPOINT.pt [--repeats 3]

The first cached load converts and writes the cache (in a temporary folder);
later loads read it. Prints median times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hyperinverter_gui.catalog.cache import load_generator_cached, load_hyperinverter_cached
from hyperinverter_gui.formats import loading


def _median(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", type=Path)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        g = loading.load_generator(args.generator)
        t_g = _median(lambda: loading.load_generator(args.generator), args.repeats)
        t_hi = _median(lambda: loading.load_hyperinverter(args.checkpoint, g), args.repeats)
        t = time.perf_counter()
        gc = load_generator_cached(args.generator, cache)
        load_hyperinverter_cached(args.checkpoint, gc, None, cache)
        t_convert = time.perf_counter() - t
        t_gc = _median(lambda: load_generator_cached(args.generator, cache), args.repeats)
        t_hic = _median(lambda: load_hyperinverter_cached(args.checkpoint, gc, None, cache), args.repeats)
    print(f"generator   {args.generator.name}: original {t_g:.3f} s, cached {t_gc:.3f} s")
    print(f"checkpoint  {args.checkpoint.name}: original {t_hi:.3f} s, cached {t_hic:.3f} s")
    print(f"first load with conversion (incl. sha256 of the sources): {t_convert:.1f} s")


if __name__ == "__main__":
    main()
