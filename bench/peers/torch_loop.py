"""Peer: a plain PyTorch loop embedding a folder of images with a transformers model (no bench
code in it; the bench times it from outside).

What the transformers and PyTorch docs lead to: a ``Dataset`` that opens each image with PIL and
applies the model's own processor (``AutoImageProcessor``), a ``DataLoader`` with worker
processes (one per CPU) batching them, the model in eval and inference mode, and the vectors
written to Parquet with pyarrow at the end. Output: the path and the L2-normalised CLS vector.

``python bench/peers/torch_loop.py IMAGES_DIR MODEL_DIR OUT_DIR [--batch-size 32] [--device cpu]``
"""

import argparse
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from transformers import AutoImageProcessor, AutoModel, BaseImageProcessor


class Images(Dataset):
    def __init__(self, paths: list[Path], processor: BaseImageProcessor):
        self.paths = paths
        self.processor = processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = Image.open(self.paths[index]).convert("RGB")
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    paths = sorted(p for p in Path(args.images).iterdir() if p.is_file())
    processor = AutoImageProcessor.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).to(device).eval()
    loader = DataLoader(
        Images(paths, processor),
        batch_size=args.batch_size,
        num_workers=len(os.sched_getaffinity(0)),
        pin_memory=device.type == "cuda",
    )
    vectors = []
    with torch.inference_mode():
        for pixels in loader:
            hidden = model(pixel_values=pixels.to(device, non_blocking=True)).last_hidden_state
            vectors.append(torch.nn.functional.normalize(hidden[:, 0], dim=-1).float().cpu())
    table = pa.table(
        {
            "path": [str(p) for p in paths],
            "embedding": list(torch.cat(vectors).numpy()),
        }
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, Path(args.out) / "embeddings.parquet")


if __name__ == "__main__":
    main()
