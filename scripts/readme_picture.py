"""The README's picture: the first rows of the evaluate stage's original/virtual grid, made smaller.

    python scripts/readme_picture.py plots/evaluate/identity_grid.png docs/virtual-faces.png --rows 4 --cell 64

The grid (plots/evaluate/identity_grid.png, written by `dvc repro evaluate`) has one test person per row:
two of their photos, then the virtual faces of both under that person's key.
"""
import argparse
from pathlib import Path

from PIL import Image

PAD = 2  # torchvision's make_grid padding in ivfg.evaluation.figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cell", type=int, default=64, help="size of one face in the output, in pixels")
    args = parser.parse_args()
    with Image.open(args.grid) as grid:
        grid = grid.convert("RGB")
    tile = 128 + PAD  # the canonical 128x128 frame plus one padding
    rows = min(args.rows, (grid.height - PAD) // tile)
    top = grid.crop((0, 0, grid.width, PAD + rows * tile))
    scale = args.cell / 128
    small = top.resize((round(top.width * scale), round(top.height * scale)), Image.Resampling.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours: a third of the bytes, no visible loss at this size
    small.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"{args.out}: {rows} rows, {small.width}x{small.height}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
