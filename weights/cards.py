"""Model cards: a Hugging Face ``README.md`` per model, rendered from its manifest entry.

The YAML front matter is written by ``huggingface_hub.ModelCardData`` so the Hub reads it
as it reads any model card; the body states the intended use, the limitations, the training
data, the evaluation numbers with the command that produced them, and the checksums.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import ModelCardData

from lungai.weights.manifest import MODEL_FILES, ModelEntry

CARD_FILE = "README.md"
NOT_FOR_CLINICAL_USE = "Not for clinical use without validation."


def render_card(entry: ModelEntry) -> str:
    """The model card of a manifest entry.

    Args:
        entry: the model.

    Returns:
        Markdown with Hugging Face YAML front matter (licence, data sets, metrics, tags).
    """
    metadata = ModelCardData(
        license=entry.license,
        library_name="lungai",
        datasets=list(entry.training_data),
        metrics=list(entry.metrics),
        tags=["medical-imaging", "computed-tomography", "lung", "safetensors", entry.architecture],
    )
    metrics = "\n".join(f"| {name} | {value:g} |" for name, value in entry.metrics.items())
    limitations = "\n".join(f"- {item}" for item in (*entry.limitations, NOT_FOR_CLINICAL_USE))
    files = "\n".join(f"| `{name}` | {entry.files[name].size} | `{entry.files[name].sha256}` |" for name in MODEL_FILES)
    return f"""---
{metadata.to_yaml()}
---

# LungAI `{entry.name}`

**{NOT_FOR_CLINICAL_USE}** Research software: every site must validate it on its own scans
before any use near patients.

Architecture `{entry.architecture}` (see `lungai.models`), weights stored as {entry.dtype}.

## Intended use

{entry.intended_use}

## Limitations

{limitations}

## Training data

{chr(10).join(f"- {item}" for item in entry.training_data)}

## Evaluation

On {entry.evaluation_data}:

| metric | value |
|---|---|
{metrics}

Produced by:

```
{entry.metrics_command}
```

## Files

{_where(entry)}

| file | bytes | sha256 |
|---|---|---|
{files}

## Use

```
lungai weights fetch {entry.name}      # or, offline: lungai weights import bundle.zip
```

LungAI checks both files against these checksums before loading them; nothing is unpickled.
"""


def _where(entry: ModelEntry) -> str:
    if entry.published:
        return f"Revision `{entry.revision}` of `{entry.repo_id}`."
    return (f"Bundled with the LungAI package; to be published as `{entry.repo_id}` "
            "(not on the Hugging Face Hub yet, so no revision is pinned).")


def write_card(entry: ModelEntry, folder: str | os.PathLike[str]) -> Path:
    """Write ``README.md`` for a model into its folder.

    Args:
        entry: the model.
        folder: the model's folder (bundled folder or Hugging Face repository checkout).

    Returns:
        The card's path.
    """
    path = Path(folder) / CARD_FILE
    path.write_text(render_card(entry), encoding="utf-8")
    return path
