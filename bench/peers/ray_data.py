"""Peer: what a Ray Data user writes from Ray's documentation to embed a folder of images with a
transformers model (no bench code in it; the bench times it from outside).

Ray's docs ("Working with Images", the batch inference examples) read the images with
``read_images`` (decoded with PIL in read tasks), run the model in a callable class passed to
``map_batches`` (the model loaded once per actor in ``__init__``, one batch per ``__call__``)
on a pool of actors, and write the result. The image processor is the model's own
(``AutoImageProcessor``). Output: Parquet with the path and the L2-normalised CLS vector.

On a CPU-only machine the actor pool keeps one CPU free for the read tasks: an actor pool that
reserves every CPU starves them (ray-project/ray#44687). Each actor reserves one CPU, so Ray
gives its torch one thread, as any user of these docs gets.

``python bench/peers/ray_data.py IMAGES_DIR MODEL_DIR OUT_DIR [--batch-size 32] [--device cpu]``
"""

import argparse

import numpy as np
import ray
import torch
from transformers import AutoImageProcessor, AutoModel


class EmbedImages:
    def __init__(self, model_dir: str, device: str):
        self.device = torch.device(device)
        self.processor = AutoImageProcessor.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).to(self.device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = self.processor(images=list(batch["image"]), return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(pixel_values=inputs["pixel_values"].to(self.device))
        vectors = torch.nn.functional.normalize(hidden.last_hidden_state[:, 0], dim=-1)
        return {"path": batch["path"], "embedding": vectors.float().cpu().numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    ray.init()
    if args.device == "cuda":
        actors, gpus = int(ray.cluster_resources().get("GPU", 1)), 1
    else:
        actors, gpus = max(1, int(ray.cluster_resources()["CPU"]) - 1), 0
    ds = ray.data.read_images(args.images, mode="RGB", include_paths=True)
    ds = ds.map_batches(
        EmbedImages,
        fn_constructor_args=(args.model, args.device),
        concurrency=actors,
        batch_size=args.batch_size,
        num_gpus=gpus,
    )
    ds.write_parquet(args.out)


if __name__ == "__main__":
    main()
