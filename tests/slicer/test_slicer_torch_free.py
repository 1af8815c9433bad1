"""Reviewing and re-measuring in Slicer never import torch (a Slicer without the PyTorch extension can review)."""

import subprocess
import sys


def test_review_and_remeasure_modules_do_not_import_torch():
    code = ("import sys\n"
            "import lungai.slicer.remeasure, lungai.slicer.review, lungai.slicer.report\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr
