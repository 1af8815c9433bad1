"""LungAI in 3D Slicer: a thin Qt layer over ``lungai.slicer``.

The analysis runs as ``python -m lungai.cli run ... --progress jsonl`` in a background
process; a timer reads its progress, and the results are loaded into the scene as a
segmentation, a nodule table, nodule points and an emphysema table. The results are then
reviewed here: the operating point filters them live, each finding can be accepted, rejected,
or edited in the Segment Editor and re-measured, and *Save report* writes what the panel shows.
The run protocol, the progress parser, the loader and the review live in ``lungai.slicer``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import qt
import slicer
from LungAILib import dependencies
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


class LungAI(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LungAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["LungAI developers"]
        self.parent.helpText = (
            "Segments and measures the lungs, lung nodules and masses, and emphysema in a chest CT. "
            "Choose the CT and the tasks, then Apply; the results appear as a segmentation, a nodule "
            "table with points, and lung and emphysema figures. Review them: move the operating point, "
            "accept or reject each finding, edit its segment and re-measure it, then save the reviewed "
            "report. With a prior scan (a volume or a LungAI output folder) under Follow-up, Apply compares the "
            "two instead: the registered prior beside the current scan, and each nodule's change in the table. "
            "Research software: not for clinical use without local validation."
        )
        self.parent.acknowledgementText = (
            "Built on the lungai Python package. Tested with data from LIDC-IDRI "
            "(The Cancer Imaging Archive, doi:10.7937/K9/TCIA.2015.LO9QL9SX)."
        )


class LungAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, Apply and Cancel, progress, results."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LungAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LungAILogic()
        self.results = None
        self.selectedNoduleId = None
        self.savedReport = None
        self.taskCheckBoxes = {
            "lungs": self.ui.lungsCheckBox,
            "nodules": self.ui.nodulesCheckBox,
            "malignancy": self.ui.malignancyCheckBox,
            "emphysema": self.ui.emphysemaCheckBox,
        }
        self.ui.inputVolumeSelector.currentNodeChanged.connect(self.updateButtons)
        self.ui.priorVolumeSelector.currentNodeChanged.connect(self.onPriorVolumeChanged)
        self.ui.priorFolderPathLineEdit.currentPathChanged.connect(self.onPriorFolderChanged)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.saveReportButton.clicked.connect(self.onSaveReport)
        self.ui.openReportButton.clicked.connect(self.onOpenReport)
        self.ui.noduleTableView.clicked.connect(self.onNoduleClicked)
        self.ui.operatingPointSliderWidget.valueChanged.connect(self.onOperatingPointChanged)
        self.ui.acceptButton.clicked.connect(lambda: self.onDecision("accepted"))
        self.ui.rejectButton.clicked.connect(lambda: self.onDecision("rejected"))
        self.ui.clearDecisionButton.clicked.connect(lambda: self.onDecision(None))
        self.ui.editSegmentButton.clicked.connect(self.onEditSegment)
        self.ui.remeasureButton.clicked.connect(self.onRemeasure)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.updateTaskAvailability()
        self.initOperatingPoint()
        self.updateButtons()

    def cleanup(self):
        """Called when the application closes: end a running analysis."""
        self.removeObservers()
        self.logic.cancel(immediately=True)

    def onSceneEndClose(self, caller, event):
        """The scene was closed: the results' nodes are gone."""
        self.results = None
        self.selectedNoduleId = None
        self.savedReport = None
        self.ui.summaryLabel.text = "No results yet."
        self.ui.saveReportButton.enabled = False
        self.ui.openReportButton.enabled = False
        self.updateReviewButtons()
        self.ui.resultsCollapsibleButton.collapsed = True

    def updateTaskAvailability(self):
        """Disable the tasks this lungai version cannot run (known once lungai is installed)."""
        for task, available in self.logic.taskAvailability().items():
            checkBox = self.taskCheckBoxes[task]
            if task != "lungs" and not available:
                checkBox.checked = False
                checkBox.enabled = False
                checkBox.toolTip = "Its model weights are not installed (lungai weights list)."

    def initOperatingPoint(self):
        """Start the slider at the command line's balanced point; runs write down to the high one."""
        try:
            from lungai.slicer.command import DEFAULT_MIN_DETECTION_SCORE, LOWEST_DETECTION_SCORE
        except ImportError:
            return
        self.ui.operatingPointSliderWidget.minimum = LOWEST_DETECTION_SCORE
        self.ui.operatingPointSliderWidget.value = DEFAULT_MIN_DETECTION_SCORE

    def updateButtons(self, *_):
        running = self.logic.isRunning()
        self.ui.applyButton.enabled = not running and self.ui.inputVolumeSelector.currentNode() is not None
        self.ui.cancelButton.enabled = running
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.followUpCollapsibleButton.enabled = not running
        self.ui.outputsCollapsibleButton.enabled = not running

    def onApply(self):
        ready = False
        with slicer.util.tryWithErrorDisplay("LungAI could not be set up.", waitCursor=True):
            ready = self.logic.setupDependencies(askConfirmation=True)
        if not ready:
            return
        self.updateTaskAvailability()
        checked = [task for task, checkBox in self.taskCheckBoxes.items() if checkBox.checked]
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "%p%"
        self.ui.statusLabel.text = "Starting LungAI..."
        with slicer.util.tryWithErrorDisplay("LungAI could not start.", waitCursor=True):
            self.logic.start(
                self.ui.inputVolumeSelector.currentNode(), checked, self.ui.deviceComboBox.currentText,
                operatingPoint=self.ui.operatingPointSliderWidget.value,
                segmentationNode=self.ui.outputSegmentationSelector.currentNode(),
                onProgress=self.onProgress, onFinished=self.onFinished, prior=self.priorChoice(),
                intervalDays=int(self.ui.intervalDaysSpinBox.value) or None, force=self.ui.forceCheckBox.checked)
        if not self.logic.isRunning():
            self.ui.statusLabel.text = ""
        self.updateButtons()

    def onPriorVolumeChanged(self, node):
        """A prior volume replaces a prior folder."""
        if node is not None:
            self.ui.priorFolderPathLineEdit.currentPath = ""

    def onPriorFolderChanged(self, path):
        """A prior folder replaces a prior volume."""
        if path:
            self.ui.priorVolumeSelector.setCurrentNode(None)

    def priorChoice(self):
        """The prior to compare with: a volume node, a LungAI output folder (path), or None (a plain run)."""
        return self.ui.priorVolumeSelector.currentNode() or (self.ui.priorFolderPathLineEdit.currentPath or None)

    def onCancel(self):
        self.ui.statusLabel.text = "Cancelling..."
        self.logic.cancel()

    def onProgress(self, update):
        self.ui.progressBar.value = int(round(100 * update.fraction))
        self.ui.progressBar.format = f"%p%  {update.label}"
        self.ui.statusLabel.text = update.label

    def onFinished(self, outcome, results):
        self.updateButtons()
        if results is not None:
            self.showResults(results)
            self.ui.statusLabel.text = "Done."
        elif outcome.status.value == "cancelled":
            self.ui.progressBar.value = 0
            self.ui.progressBar.format = "%p%"
            self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        else:
            self.ui.statusLabel.text = f"Failed: {outcome.message}"
            slicer.util.errorDisplay(f"LungAI failed: {outcome.message}")

    def showResults(self, results):
        self.results = results
        self.selectedNoduleId = None
        self.savedReport = None
        self.ui.summaryLabel.text = results.summary
        self.ui.noduleTableView.setMRMLTableNode(results.nodule_table)
        hasEmphysema = results.emphysema_table is not None
        self.ui.emphysemaTableView.setMRMLTableNode(results.emphysema_table)
        self.ui.emphysemaTableView.visible = hasEmphysema
        self.ui.emphysemaTableLabel.visible = hasEmphysema
        self.ui.saveReportButton.enabled = True
        self.ui.openReportButton.enabled = results.files.report is not None
        self.updateReviewButtons()
        self.ui.resultsCollapsibleButton.collapsed = False
        if getattr(results, "prior_volume", None) is None:
            slicer.util.setSliceViewerLayers(background=results.volume, fit=True)
        else:  # a follow-up: the loader put the current and the registered prior side by side
            self.ui.openReportButton.enabled = results.follow_up_files.report is not None or \
                results.files.report is not None
            slicer.util.resetSliceViews()

    def updateReviewButtons(self):
        """The review buttons act on the chosen row's finding."""
        chosen = self.results is not None and self.selectedNoduleId is not None
        for button in (self.ui.acceptButton, self.ui.rejectButton, self.ui.clearDecisionButton,
                       self.ui.editSegmentButton, self.ui.remeasureButton):
            button.enabled = chosen

    def refreshResults(self):
        """Show the review's current table, points, segments and summary."""
        self.ui.summaryLabel.text = self.results.summary
        self.ui.noduleTableView.setMRMLTableNode(self.results.nodule_table)

    def onOperatingPointChanged(self, value):
        """Filter the results at the new operating point, without running again."""
        if self.results is None:
            return
        self.results.set_operating_point(value)
        self.refreshResults()

    def onNoduleClicked(self, index):
        """Choose the clicked row's finding (column 0 holds its id) and centre the slice views on it."""
        if self.results is None:
            return
        if getattr(self.results, "prior_volume", None) is not None:
            self.onFollowUpRowClicked(index)
            return
        self.selectedNoduleId = int(index.sibling(index.row(), 0).data())
        self.updateReviewButtons()
        pointIndex = self.results.point_index.get(self.selectedNoduleId)
        if pointIndex is not None:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(
                self.results.nodule_points.GetID(), pointIndex, True)

    def onFollowUpRowClicked(self, index):
        """Choose the row's finding (if it is one of the run's) and centre both views on the nodule."""
        from lungai.slicer.follow_up import centre_views
        from lungai.slicer.mrml import PRIOR_NODULE_COLUMN

        priorColumn = self.results.nodule_table.GetColumnIndex(PRIOR_NODULE_COLUMN)
        priorNodule = index.sibling(index.row(), priorColumn).data() if priorColumn >= 0 else ""
        self.selectedNoduleId, centre = self.results.row_target(int(index.sibling(index.row(), 0).data()),
                                                                str(priorNodule or ""))
        self.updateReviewButtons()
        if centre is not None:
            centre_views(slicer.mrmlScene, centre)

    def onDecision(self, decision):
        """Accept or reject the chosen finding, or take the decision back (``None``)."""
        if self.results is None or self.selectedNoduleId is None:
            return
        self.results.decide(self.selectedNoduleId, decision)
        self.refreshResults()

    def onEditSegment(self):
        """Open the Segment Editor on the chosen finding's segment, over the analysed CT."""
        if self.results is None or self.selectedNoduleId is None:
            return
        from lungai import labels

        segmentId = labels.nodule(self.selectedNoduleId).key
        self.results.segmentation.GetDisplayNode().SetSegmentVisibility(segmentId, True)
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(self.results.segmentation)
        editor.setSourceVolumeNode(self.results.volume)
        editor.setCurrentSegmentID(segmentId)

    def onRemeasure(self):
        """Measure the chosen finding's segment again."""
        if self.results is None or self.selectedNoduleId is None:
            return
        with slicer.util.tryWithErrorDisplay("The finding could not be re-measured.", waitCursor=True):
            self.logic.remeasure(self.results, self.selectedNoduleId)
        self.refreshResults()

    def onSaveReport(self):
        if self.results is None:
            return
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Save the LungAI report to")
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay("The report could not be saved.", waitCursor=True):
            written = self.logic.saveReport(self.results, folder)
            self.savedReport = next((path for path in written if path.name.endswith("_report.html")), None)
            self.ui.openReportButton.enabled = True
            slicer.util.infoDisplay("Saved:\n" + "\n".join(str(path) for path in written))

    def onOpenReport(self):
        """Open the last saved report, or the run's own report, in the web browser."""
        followUp = getattr(self.results, "follow_up_files", None)
        report = self.savedReport or (followUp.report if followUp is not None else None) or (
            self.results.files.report if self.results is not None else None)
        if report is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))


def pythonExecutable():
    """The Python that runs the command line: Slicer's ``PythonSlicer``."""
    return shutil.which("PythonSlicer") or sys.executable


def dicomSource(volumeNode):
    """The folder of a volume's DICOM files and its SeriesInstanceUID, from Slicer's DICOM database.

    Returns:
        ``(None, None)`` when the volume was not loaded from DICOM or its files are not at hand.
    """
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split() if volumeNode is not None else []
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None, None
    firstFile = database.fileForInstance(uids[0])
    if not firstFile or not Path(firstFile).is_file():
        return None, None
    return Path(firstFile).parent, database.fileValue(firstFile, "0020,000E") or None


def dicomSeriesFolder(volumeNode):
    """The folder of a volume's DICOM files when it holds that series only (handed to lungai as is), else None."""
    from lungai.slicer.follow_up import dicom_series_folder

    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    return dicom_series_folder([Path(database.fileForInstance(uid) or "") for uid in uids])


def exportVolume(volumeNode, path):
    """Write a volume node as an uncompressed NRRD for the command line; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    slicer.util.exportNode(volumeNode, str(path), {"useCompression": 0})
    if not path.is_file():
        raise RuntimeError(f"{volumeNode.GetName()} could not be written to {path}")
    return path


def handOver(volumeNode, path):
    """The scan of a volume for the command line: its DICOM folder as it is, or the volume exported to ``path``."""
    return dicomSeriesFolder(volumeNode) or exportVolume(volumeNode, path)


def installTorch(requirement):
    """Install torch through the PyTorch extension (a CUDA build when there is an NVIDIA GPU)."""
    try:
        import PyTorchUtils
    except ImportError as error:
        raise RuntimeError("the PyTorch extension is missing; install it with the Extensions Manager, "
                           "restart 3D Slicer and try again") from error
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=requirement)
    if torch is None:
        raise RuntimeError("PyTorch was not installed")


class LungAILogic(ScriptedLoadableModuleLogic):
    """Runs LungAI on a volume in a background process and loads the results into the scene.

    Args:
        launcher: starts the command line; default ``lungai.slicer.process.BackgroundProcess``.
    """

    pollIntervalMs = 200

    def __init__(self, launcher=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._launcher = launcher
        self._job = None
        self._onFinished = None
        self._timer = qt.QTimer()
        self._timer.setInterval(self.pollIntervalMs)
        self._timer.timeout.connect(self._poll)

    @property
    def workFolder(self):
        """Where runs keep their files: ``LungAI`` in Slicer's temporary folder."""
        return Path(slicer.app.temporaryPath) / "LungAI"

    def setupDependencies(self, askConfirmation=True):
        """Install torch and lungai if needed, after confirmation.

        Returns:
            Whether LungAI can run now (False: declined, or Slicer must restart first).
        """
        plan = dependencies.plan_setup()
        if not plan.needed:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(plan.describe(), windowTitle="LungAI set-up"):
            return False
        self.workFolder.mkdir(parents=True, exist_ok=True)
        restart = dependencies.run_setup(plan, pip=slicer.util.pip_install, install_torch=installTorch,
                                         constraints_folder=self.workFolder)
        if restart:
            if slicer.util.confirmYesNoDisplay("LungAI was updated. Restart 3D Slicer now to use it?"):
                slicer.util.restart()
            return False
        return True

    def taskAvailability(self):
        """Task -> whether this lungai version runs it; empty until lungai is installed."""
        try:
            from lungai.slicer.command import task_availability
        except ImportError:
            return {}
        return task_availability()

    def _availableTasks(self):
        return [task for task, available in self.taskAvailability().items() if available]

    def isRunning(self):
        return self._job is not None

    def start(self, volumeNode, tasks, device, operatingPoint=0.5, segmentationNode=None,
              onProgress=None, onFinished=None, prior=None, intervalDays=None, force=False):
        """Export the volume and start the command line on it; returns at once.

        Args:
            volumeNode: the CT volume to analyse.
            tasks: names of the ticked tasks.
            device: ``auto``, ``GPU`` or ``CPU``.
            operatingPoint: lowest detection score of the nodules shown.
            segmentationNode: segmentation to load into; None for a new one.
            onProgress: called with each ``lungai.slicer.progress.ProgressUpdate``.
            onFinished: called with the ``RunOutcome`` and the ``LoadedResults`` (None unless
                the run succeeded and its outputs were loaded).
            prior: compare with the patient's prior scan (``lungai follow-up``, tasks lungs and
                nodules) instead of a plain run: a volume node, or a folder (a LungAI output folder
                of the prior, or its DICOM folder); None for a plain run.
            intervalDays: days since the prior, when the volumes carry no DICOM dates (follow-up only).
            force: compare volumes whose DICOM PatientIDs differ (follow-up only).
        """
        from lungai.slicer.command import RunRequest, build_run_command, device_argument, selected_tasks
        from lungai.slicer.follow_up import follow_up_job, load_follow_up
        from lungai.slicer.job import AnalysisJob
        from lungai.slicer.mrml import load_results
        from lungai.slicer.run_folder import RunFolder

        if self.isRunning():
            raise RuntimeError("LungAI is already running")
        if volumeNode is None:
            raise ValueError("choose an input volume")
        folder = RunFolder.create(self.workFolder, volumeNode.GetName())
        try:
            if prior is None:
                request = RunRequest(scan=folder.scan, output=folder.output,
                                     tasks=selected_tasks(tasks, self._availableTasks()),
                                     device=device_argument(device))
                command = build_run_command(pythonExecutable(), request)
                exportVolume(volumeNode, folder.scan)
            else:
                command = self._followUpCommand(volumeNode, prior, folder, device, intervalDays, force)
        except Exception:
            folder.discard()
            raise

        def load(output):
            loader = load_results if prior is None else load_follow_up
            return loader(slicer.mrmlScene, output, volumeNode, segmentation_node=segmentationNode,
                          min_detection_score=operatingPoint)

        options = {"input_name": volumeNode.GetName()}
        if self._launcher is not None:
            options["launcher"] = self._launcher
        if onProgress is not None:
            options["on_progress"] = onProgress
        self._job = (AnalysisJob if prior is None else follow_up_job)(folder, command, load, **options)
        self._onFinished = onFinished
        self._job.start()
        self._timer.start()

    def _followUpCommand(self, volumeNode, prior, folder, device, intervalDays, force):
        """Hand both scans over (DICOM files as they are, other volumes exported) and build the follow-up's command."""
        from lungai.slicer.command import FollowUpRequest, build_follow_up_command, device_argument
        from lungai.slicer.follow_up import prior_export_path

        if isinstance(prior, (str, Path)):
            priorPath = Path(prior)
            if not priorPath.is_dir():
                raise ValueError(f"the prior folder {priorPath} does not exist")
        elif prior.GetID() == volumeNode.GetID():
            raise ValueError("choose a prior volume other than the input volume")
        else:
            priorPath = handOver(prior, prior_export_path(folder, prior.GetName()))
        request = FollowUpRequest(prior=priorPath, current=handOver(volumeNode, folder.scan), output=folder.output,
                                  device=device_argument(device), interval_days=intervalDays, force=force)
        return build_follow_up_command(pythonExecutable(), request)

    def cancel(self, immediately=False):
        """Stop the running analysis; the scene is left as it was.

        Args:
            immediately: kill the process tree now and forget the run (application exit);
                otherwise the run ends through the usual callback, reported as cancelled.
        """
        if self._job is None:
            return
        self._job.cancel(immediately=immediately)
        if immediately:
            self._timer.stop()
            self._job = None

    def waitForRun(self, timeoutS=600):
        """Process events until the running analysis has ended (for tests and scripts)."""
        deadline = time.monotonic() + timeoutS
        while self.isRunning():
            if time.monotonic() > deadline:
                self.cancel(immediately=True)
                raise TimeoutError(f"LungAI did not finish within {timeoutS} s")
            slicer.app.processEvents()
            time.sleep(0.05)

    def runAndWait(self, volumeNode, tasks, device="auto", timeoutS=600, **options):
        """Run an analysis and wait for it; returns the outcome and the loaded results."""
        finished = []
        self.start(volumeNode, tasks, device, onFinished=lambda *ended: finished.append(ended), **options)
        self.waitForRun(timeoutS)
        return finished[0]

    def remeasure(self, results, noduleId):
        """Measure a finding's (edited) segment again; returns its new record."""
        from lungai.slicer.remeasure import remeasure

        return remeasure(results, noduleId)

    def saveReport(self, results, folder):
        """Write the reviewed report of ``results`` into ``folder`` (a DICOM SEG too for a DICOM volume)."""
        from lungai.slicer.report import save_review

        dicomFolder, seriesUid = dicomSource(results.volume)
        return save_review(results, Path(folder), dicom_folder=dicomFolder, series_uid=seriesUid)

    def _poll(self):
        ended = self._job.poll()
        if ended is None:
            return
        self._timer.stop()
        self._job = None
        if self._onFinished is not None:
            self._onFinished(*ended)


class LungAITest(ScriptedLoadableModuleTest):
    """Runs the logic on a small synthetic chest CT (needs network on first use, to install lungai)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LungAI_synthetic_volume()
        self.setUp()
        self.test_LungAI_cancel_leaves_scene()

    def _phantomVolume(self):
        import sitkUtils

        from lungai.data.phantom import PhantomConfig, make_phantom

        phantom = make_phantom(PhantomConfig(size=(96, 96, 50), spacing_mm=(3.0, 3.0, 5.0)))
        return sitkUtils.PushVolumeToSlicer(phantom.image, name="LungAITestPhantom")

    def _logic(self):
        logic = LungAILogic()
        self.assertTrue(logic.setupDependencies(askConfirmation=False), "LungAI's dependencies are not set up")
        return logic

    def test_LungAI_synthetic_volume(self):
        self.delayDisplay("Running LungAI on a synthetic chest CT")
        logic = self._logic()
        outcome, results = logic.runAndWait(self._phantomVolume(), ["lungs", "emphysema"], "CPU", timeoutS=300)
        self.assertTrue(outcome.succeeded, outcome.message)
        segmentation = results.segmentation.GetSegmentation()
        names = sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments()))
        self.assertEqual(names, ["Left lung", "Right lung"])
        self.assertEqual(results.nodule_table.GetNumberOfRows(), results.nodule_points.GetNumberOfControlPoints())
        self.assertEqual(results.emphysema_table.GetNumberOfRows(), 3)
        folder = Path(slicer.app.temporaryPath) / "LungAITestReport"
        folder.mkdir(exist_ok=True)
        written = logic.saveReport(results, folder)
        self.assertTrue(any(path.name.endswith("_findings_machine.json") for path in written), written)
        self.delayDisplay("Test passed")

    def test_LungAI_cancel_leaves_scene(self):
        self.delayDisplay("Cancelling a LungAI run")
        logic = self._logic()
        volume = self._phantomVolume()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        finished = []
        logic.start(volume, ["lungs"], "CPU", onFinished=lambda *ended: finished.append(ended))
        logic.cancel()
        logic.waitForRun(timeoutS=60)
        outcome, results = finished[0]
        self.assertEqual(outcome.status.value, "cancelled")
        self.assertIsNone(results)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
