"""BERTScore (bert-score package) of generations against their reference continuations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from ..config import PACKAGE_PREFIX, resolve_asset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BertScoreSettings:
    model: str  # bert-score model name, local directory, or package:<python package shipping a model>
    num_layers: Optional[int]
    rescale: bool
    baseline_path: Optional[str]
    batch_size: int = 16


def resolve_model(model: str) -> str:
    """`package:NAME` -> the model folder inside that installed package; other values unchanged."""
    if not model.startswith(PACKAGE_PREFIX):
        return model
    folder = resolve_asset(model, ".")
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"{model}: no model folder in the package")
    return str(folder)


def settings_label(settings: BertScoreSettings) -> str:
    """The label of the scorer these settings make (`model@L<layer>[+rescaled]`), known without loading it: the
    configured layer, else bert-score's default layer of a known model name."""
    layer = settings.num_layers
    if layer is None:
        from bert_score.utils import model2layers

        layer = model2layers.get(settings.model)
    return f"{settings.model}@L{layer}{'+rescaled' if settings.rescale else ''}"


class BertScore:
    """One loaded scorer; `score` returns per-pair (precision, recall, F1)."""

    def __init__(self, settings: BertScoreSettings, device: str):
        from bert_score import BERTScorer

        self.settings = settings
        model = resolve_model(settings.model)
        kwargs = dict(model_type=model, num_layers=settings.num_layers, batch_size=settings.batch_size,
                      device=device, lang="en")
        if settings.rescale:
            kwargs.update(rescale_with_baseline=True, baseline_path=settings.baseline_path)
        self.scorer = BERTScorer(**kwargs)
        log.info("BERTScore model %s (layer %s, rescaled: %s)", model, self.scorer.num_layers, settings.rescale)

    @property
    def label(self) -> str:
        return settings_label(self.settings)

    def score(self, candidates: list[str], references: list[str]) -> list[tuple[float, float, float]]:
        """Per pair (P, R, F1). A pair with an empty side scores 0 (bert-score's own convention,
        applied here because its tokenizer call fails on empty text under transformers 5)."""
        keep = [i for i, (c, r) in enumerate(zip(candidates, references)) if c.strip() and r.strip()]
        out = [(0.0, 0.0, 0.0)] * len(candidates)
        if keep:
            p, r, f = self.scorer.score([candidates[i] for i in keep], [references[i] for i in keep], verbose=False)
            for i, scores in zip(keep, zip(p.tolist(), r.tolist(), f.tolist())):
                out[i] = scores
        return out
