"""Model cards: Hugging Face front matter and the facts a clinician's site needs."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

from lungai.weights.cards import NOT_FOR_CLINICAL_USE, write_card
from lungai.weights.manifest import Manifest


def test_card_front_matter_and_body(tmp_path: Path, manifest: Manifest) -> None:
    entry = manifest.get("nodule_cnn2d")
    card = ModelCard.load(write_card(entry, tmp_path))
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["LIDC-IDRI"]
    assert card.data.metrics == ["roc_auc", "sensitivity"]
    assert card.data.library_name == "lungai"
    text = card.text
    assert NOT_FOR_CLINICAL_USE in text and "Not for clinical use without validation." in text
    assert entry.intended_use in text and "Random weights." in text
    assert "| roc_auc | 0.87 |" in text and entry.metrics_command in text
    assert entry.revision in text and entry.sha256 in text and entry.files["config.json"].sha256 in text
