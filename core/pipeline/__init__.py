"""The analysis stages and their order: lungs -> nodules -> malignancy -> tumour -> emphysema."""
