"""Validation losses of autoencoder weights on the held-out training patients (model selection).

Rebuilds the validation split the training used (same data, seed and number of held-out patients,
from the weights' own metadata) and reports, on the same fixed triplets of adjacent acquired slices,
the MSE of reconstruction, of the paper's latent interpolation, of the corrected interpolation and
of linear interpolation. Model and mode are chosen on these numbers, never on the test patients.

    python benchmarks/ae_validation.py runs/ae_paper.pt runs/ae_interp.pt
"""

from __future__ import annotations

import sys

import torch

from LatentSRLib.models import registry
from LatentSRLib.synthesize.autoencoder import load_model
from LatentSRLib.training.autoencoder import validate
from LatentSRLib.training.data import fixed_validation_stacks, load_volumes, split_by_patient


def main(paths: list[str]) -> None:
    print("| weights | epochs | patches | recon | latent interp | corrected interp | linear |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    cache: dict = {}
    for path in paths:
        meta = registry.load(path, "ae")["meta"]
        training = meta["training"]
        key = (tuple(training["data"]), training["seed"], training["validation_patients"], training["patch_size"])
        if key not in cache:
            volumes = load_volumes(training["data"], training["pixel_size"], max_frames=training["max_cine_frames"],
                                   progress=False)
            _, held = split_by_patient(volumes, training["validation_patients"], training["seed"])
            cache[key] = torch.from_numpy(fixed_validation_stacks(held, training["validation_count"],
                                                                  training["patch_size"]))
        model, _ = load_model(path, torch.device("cpu"))
        scores = validate(model, cache[key])
        last = meta["history"][-1]
        print(f"| {path} | {last['epoch']} | {last['patches']} | {scores['recon']:.5f} | {scores['interp']:.5f} | "
              f"{scores['corrected']:.5f} | {scores['linear']:.5f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
