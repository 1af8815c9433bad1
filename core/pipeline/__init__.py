"""The analysis stages and their order: lungs -> nodules (and masses) -> malignancy -> emphysema."""
