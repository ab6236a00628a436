"""Peer: what a Daft user writes from Daft's documentation to embed a folder of images with a
transformers model (no bench code in it; the bench times it from outside).

Daft's docs ("Working with Images") list files, download them with ``download()``, decode them
with ``decode_image()`` and run the model in a class UDF (``@daft.cls``) that loads it once in
``__init__`` and embeds a batch per ``@daft.method.batch`` call. Daft's built-in
``embed_image`` cannot serve DINOv2 or ViT (it calls ``get_image_features``), so a user writes
the class. The image processor is the model's own (``AutoImageProcessor``), as the transformers
docs show. Output: Parquet with the path and the L2-normalised CLS vector.

``python bench/peers/daft_docs.py IMAGES_DIR MODEL_DIR OUT_DIR [--batch-size 32] [--device cpu]``
"""

import argparse

import daft
import torch
from daft import DataType, col
from daft.functions import decode_image, download
from transformers import AutoImageProcessor, AutoModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    @daft.cls(gpus=1 if args.device == "cuda" else 0)
    class EmbedImages:
        def __init__(self, model_dir: str, device: str):
            self.device = torch.device(device)
            self.processor = AutoImageProcessor.from_pretrained(model_dir)
            self.model = AutoModel.from_pretrained(model_dir).to(self.device).eval()

        @daft.method.batch(
            return_dtype=DataType.list(DataType.float32()), batch_size=args.batch_size
        )
        def __call__(self, images):  # a daft.Series of images → one vector per image
            inputs = self.processor(images=images.to_pylist(), return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(pixel_values=inputs["pixel_values"].to(self.device))
            vectors = torch.nn.functional.normalize(hidden.last_hidden_state[:, 0], dim=-1)
            return list(vectors.float().cpu().numpy())

    df = daft.from_glob_path(f"{args.images}/*")
    df = df.with_column("image", decode_image(download(col("path")), mode="RGB"))
    df = df.with_column("embedding", EmbedImages(args.model, args.device)(col("image")))
    df.select("path", "embedding").write_parquet(args.out)


if __name__ == "__main__":
    main()
