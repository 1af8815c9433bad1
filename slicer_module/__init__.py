"""The 3D Slicer side of LungAI that needs no Qt: process runner, progress parsing, MRML loading.

The scripted module in ``LungAI/`` is a thin Qt layer over these modules:

- :mod:`lungai.slicer.command`: the ``python -m lungai.cli run ... --progress jsonl`` command line.
- :mod:`lungai.slicer.run_folder`: where one run's exported scan and outputs live.
- :mod:`lungai.slicer.progress`: parsing the JSON progress lines.
- :mod:`lungai.slicer.process`: a child process in its own process group, read without blocking.
- :mod:`lungai.slicer.runner`: the run protocol (start, poll, cancel, one-line outcome).
- :mod:`lungai.slicer.job`: one analysis: the run, then loading its outputs or cleaning up.
- :mod:`lungai.slicer.results`: the output files and the rows shown for nodules and emphysema.
- :mod:`lungai.slicer.review`: the review's state: the operating point shown, decisions, edits.
- :mod:`lungai.slicer.mrml`: loading a run's outputs into an MRML scene passed in, and showing the review.
- :mod:`lungai.slicer.scene_images`: the CT and the segments of the scene on LungAI's LPS grid.
- :mod:`lungai.slicer.remeasure`: measuring an edited segment again with the pipeline's code.
- :mod:`lungai.slicer.report`: saving the reviewed report where the user chooses.
- :mod:`lungai.slicer.follow_up`: a follow-up against the prior: its command, loading its outputs (the
  registered prior in linked side-by-side views, the follow-up table columns), centring both views on a row.

Nothing here imports Qt or Slicer's application, and only re-measuring imports torch (through
:mod:`lungai.pipeline.nodules`). :mod:`lungai.slicer.mrml` and the modules after it need VTK and
work with the MRML classes of 3D Slicer or of the ``slicer-core`` package.
"""
