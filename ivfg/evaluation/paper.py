"""The paper's published figures (docs/design.md, "Metric definitions"; LFW test set with a SphereFace
evaluator, CelebA with ArcFace) and the table that sets a run's figures beside them."""
from __future__ import annotations

from typing import Any

# (row label, path into the evaluate stage's metrics, the paper's value or None, what it rests on)
LFW_ROWS: list[tuple[str, str, str | None, str]] = [
    ("Original EER", "original.eer", "0.024", "original.pairs"),
    ("Original AUC", "original.auc", "0.998", "original.pairs"),
    ("Original at the generator's resolution: EER", "original_lowres.eer", None, "original_lowres.pairs"),
    ("Original at the generator's resolution: AUC", "original_lowres.auc", None, "original_lowres.pairs"),
    ("Set-A EER", "set_a.eer", "0.018 ± 0.005", "set_a.pairs"),
    ("Set-A AUC", "set_a.auc", "0.999", "set_a.pairs"),
    ("Set-B EER", "set_b.eer", "0.103 ± 0.009", "set_b.pairs"),
    ("Set-B AUC", "set_b.auc", "0.963", "set_b.pairs"),
    ("Set-A genuine accepted at τ", "set_a.genuine_accepted", None, "set_a.genuine"),
    ("Set-A impostors rejected at τ", "set_a.impostor_rejected", None, "set_a.pairs"),
    ("Set-B impostors rejected at τ", "set_b.impostor_rejected", None, "set_b.pairs"),
    ("Set-A genuine accepted at τ_v", "set_a.genuine_accepted_v", None, "set_a.genuine"),
    ("Set-A impostors rejected at τ_v", "set_a.impostor_rejected_v", None, "set_a.pairs"),
    ("Set-B impostors rejected at τ_v", "set_b.impostor_rejected_v", None, "set_b.pairs"),
    ("Set-B genuine accepted at τ_1 (Set-B's own threshold)", "set_b.genuine_accepted_1", None, "set_b.genuine"),
    ("Set-B impostors rejected at τ_1 (Set-B's own threshold)", "set_b.impostor_rejected_1", None, "set_b.pairs"),
    ("Spread of P's latents (of G's random ones)", "latent_spread.ratio", None, None),
    ("Protection rate", "protection.rate", "0.988 ± 0.005", "protection.pairs"),
    ("Diversity", "diversity.rate", "0.750 ± 0.013", "diversity.pairs"),
    ("Recoverability (lower is better)", "recoverability.rate", "0 ± 0.001", "recoverability.pairs"),
    ("Detection rate (MTCNN)", "detection.rate", "1.0", "detection.images"),
    ("FID 192-d", "fid_virtual.fid192", "6.170 ± 0.050", None),
    ("FID 2048-d", "fid_virtual.fid2048", None, None),
    ("Original at the generator's resolution: FID 192-d", "fid_lowres.fid192", None, None),
    ("Pixelization: detection", "baselines.pixelization.detection", None, "detection.images"),
    ("Pixelization: FID 192-d", "baselines.pixelization.fid192", "44.451", None),
    ("Pixelization: protection", "baselines.pixelization.protection", None, "protection.pairs"),
    ("Blur: detection", "baselines.blur.detection", None, "detection.images"),
    ("Blur: FID 192-d", "baselines.blur.fid192", "62.786", None),
    ("Blur: protection", "baselines.blur.protection", None, "protection.pairs"),
    ("Linkage across keys: AUC", "linkage.auc", None, "linkage.pairs"),
    ("Linkage across keys: genuine accepted at τ", "linkage.genuine_accepted", None, "linkage.genuine"),
    ("Key search: key recovered", "key_search.key_recovered", None, "key_search.targets"),
    ("Key search: photo linked at τ", "key_search.linked", None, "key_search.targets"),
]
# 128-bit keys, the paper's other LFW result.
LFW_128_BITS = {"set_a.eer": "0.016", "set_b.eer": "0.112"}
CELEBA_ROWS: list[tuple[str, str, str | None, str]] = [
    ("Original EER", "original.eer", "0.048", "original.pairs"),
    ("Set-A EER", "set_a.eer", "0.035 ± 0.002", "set_a.pairs"),
    ("Set-B EER", "set_b.eer", "0.196", "set_b.pairs"),
    ("Protection rate", "protection.rate", None, "protection.pairs"),
    ("Diversity", "diversity.rate", None, "diversity.pairs"),
]


def lookup(figures: dict, path: str) -> Any:
    node: Any = figures
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _format(figures: dict, path: str) -> str:
    value = lookup(figures, path)
    if value is None:
        return "—"
    std = lookup(figures, path + "_std")
    return f"{value:.3f} ± {std:.3f}" if std is not None else f"{value:.3f}"


def comparison_table(figures: dict, rows: list[tuple[str, str, str | None, str]], key_bits: int,
                     repeats: int, heading: str) -> str:
    """A Markdown table: each figure, the paper's value, and the pairs (or images) behind it."""
    paper_128 = LFW_128_BITS if key_bits == 128 and rows is LFW_ROWS else {}
    lines = [f"## {heading}", "",
             f"Mean ± std over {repeats} draws of keys ({key_bits}-bit) where a key is involved.", "",
             "| Figure | This run | Paper | Pairs / images |", "|---|---|---|---|"]
    for label, path, paper, count in rows:
        paper = paper_128.get(path, paper)
        n = lookup(figures, count) if count else None
        # Counts that vary between draws (pairs whose two keys differ) are shown as their mean.
        lines.append(f"| {label} | {_format(figures, path)} | {paper or '—'} | {'—' if n is None else f'{n:,.0f}'} |")
    return "\n".join(lines) + "\n"
