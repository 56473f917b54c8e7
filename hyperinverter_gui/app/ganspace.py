"""GANSpace for the loaded generator, as an engine job: computed, cached per generator, then sliders.

The editor offers it while no GANSpace slider fits the generator (its published PCA file has not
arrived, or there is none for it). The result goes to the per-user ``directions/computed`` folder
(``editing.library.save_computed_ganspace``); ``load_library(generator_key=...)`` turns its first
components into sliders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hyperinverter_gui.editing.library import generator_key, save_computed_ganspace

# z samples the editor uses. The PCA streams w = mapping(z) in batches of 4096; at FFHQ size (8
# mapping layers of 512, 18 ws) 50 000 samples took 2-7 s on a shared 2-core CPU (100 000: 4-14 s),
# and the job holds the engine thread meanwhile, so the editor takes half of upstream's figure; the
# first components are stable well before that. The command line keeps upstream's 100 000
# (`hyperinverter directions ganspace`).
UI_SAMPLES = 50_000
UI_COMPONENTS = 80
UI_SEED = 0


def ganspace_job(generator: str | Path, samples: int = UI_SAMPLES, components: int = UI_COMPONENTS,
                 seed: int = UI_SEED, folder: Path | None = None):
    """A job function ``run(engine, ctx) -> manifest path`` for ``app.jobs.Job``.

    Progress goes to ``ctx.progress`` once per batch; the job's token is checked between batches
    (a cancelled job writes nothing).
    """
    generator = Path(generator)
    key = generator_key(generator)

    def run(engine: Any, ctx: Any) -> Path:
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            ctx.progress(f"GANSpace: {done[0]:,} of {samples:,} samples", done[0] / samples)

        pca = engine.compute_ganspace(samples, components, seed, progress=progress, cancel=ctx.token)
        ctx.token.raise_if_cancelled()
        return save_computed_ganspace(pca, key, generator_name=generator.name, samples=samples, seed=seed,
                                      folder=folder)

    return run
