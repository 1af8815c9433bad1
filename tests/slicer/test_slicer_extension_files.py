"""The Slicer extension's files: CMake lists, the Qt Designer .ui, the icon, the module file."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import imageio.v3 as iio
import pytest
from shared_data import REPO_ROOT

from lungai.pipeline.config import ALL_TASKS
from lungai.slicer.command import DEVICE_CHOICES, device_argument

MODULE = REPO_ROOT / "LungAI"
MODULE_CMAKE = (MODULE / "CMakeLists.txt").read_text()
EXTENSION_CMAKE = (REPO_ROOT / "CMakeLists.txt").read_text()
UI = ET.parse(MODULE / "Resources" / "UI" / "LungAI.ui").getroot()
MODULE_SOURCE = (MODULE / "LungAI.py").read_text()


def cmake_set(text: str, variable: str) -> list[str]:
    """The items of ``set(VARIABLE item ...)``, with ``${MODULE_NAME}`` expanded."""
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    name = re.search(r"set\(MODULE_NAME\s+(\w+)\)", text)
    items = match.group(1).split() if '"' not in match.group(1) else [match.group(1).strip().strip('"')]
    return [item.replace("${MODULE_NAME}", name.group(1) if name else "") for item in items]


def listed_files() -> list[str]:
    return cmake_set(MODULE_CMAKE, "MODULE_PYTHON_SCRIPTS") + cmake_set(MODULE_CMAKE, "MODULE_PYTHON_RESOURCES")


def widgets() -> dict[str, str]:
    """Widget name -> class, for every widget in the .ui file."""
    return {widget.get("name"): widget.get("class") for widget in UI.iter("widget")}  # type: ignore[misc]


def test_every_listed_script_and_resource_exists() -> None:
    assert "LungAI.py" in listed_files()
    missing = [name for name in listed_files() if not (MODULE / name).is_file()]
    assert not missing


def test_nothing_in_the_module_folder_is_unlisted() -> None:
    present = {path.relative_to(MODULE).as_posix() for path in MODULE.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts and path.name != "CMakeLists.txt"}
    assert present == set(listed_files())


def test_the_module_is_a_scripted_module_with_generic_and_unit_tests() -> None:
    assert re.search(r"set\(MODULE_NAME LungAI\)", MODULE_CMAKE)
    build = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", MODULE_CMAKE, re.S)
    assert build, "slicerMacroBuildScriptedModule is not called"
    for argument in ("NAME ${MODULE_NAME}", "SCRIPTS ${MODULE_PYTHON_SCRIPTS}",
                     "RESOURCES ${MODULE_PYTHON_RESOURCES}", "WITH_GENERIC_TESTS"):
        assert argument in build.group(1)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in MODULE_CMAKE


def test_the_extension_metadata() -> None:
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert cmake_set(EXTENSION_CMAKE, f"EXTENSION_{variable}"), variable
    assert cmake_set(EXTENSION_CMAKE, "EXTENSION_CATEGORY") == ["Segmentation"]
    assert cmake_set(EXTENSION_CMAKE, "EXTENSION_DEPENDS") == ["PyTorch"]
    for line in ("project(LungAI)", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                 "add_subdirectory(LungAI)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                 "include(${Slicer_EXTENSION_CPACK})"):
        assert line in EXTENSION_CMAKE


@pytest.mark.parametrize("variable", ["EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"])
def test_the_image_urls_point_at_files_of_this_repository(variable: str) -> None:
    raw = cmake_set(EXTENSION_CMAKE, "LUNGAI_RAW_URL")[0]
    url = cmake_set(EXTENSION_CMAKE, variable)[0].replace("${LUNGAI_RAW_URL}", raw)
    assert url.startswith(raw + "/")
    assert (REPO_ROOT / url[len(raw) + 1:]).is_file(), url


def test_the_ui_file_is_a_qt_designer_form_on_a_mrml_widget() -> None:
    assert UI.tag == "ui" and UI.get("version") == "4.0"
    assert UI.findtext("class") == "LungAI"
    top = UI.find("widget")
    assert top is not None and (top.get("class"), top.get("name")) == ("qMRMLWidget", "LungAI")
    names = [widget.get("name") for widget in UI.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique"


def test_every_widget_the_module_uses_exists() -> None:
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_SOURCE))
    assert {"applyButton", "cancelButton", "progressBar", "noduleTableView"} <= used
    assert used <= set(widgets()), used - set(widgets())


def test_every_custom_widget_class_is_declared() -> None:
    qt_classes = {"QWidget", "QLabel", "QCheckBox", "QComboBox", "QPushButton", "QProgressBar"}
    declared = {custom.findtext("class") for custom in UI.iter("customwidget")}
    assert set(widgets().values()) - qt_classes == declared


def test_the_form_has_the_issue_s_controls() -> None:
    found = widgets()
    for task in ALL_TASKS:
        assert found[f"{task}CheckBox"] == "QCheckBox"
    assert found["inputVolumeSelector"] == found["outputSegmentationSelector"] == "qMRMLNodeComboBox"
    assert found["operatingPointSliderWidget"] == "ctkSliderWidget"
    assert found["progressBar"] == "QProgressBar"
    device = next(widget for widget in UI.iter("widget") if widget.get("name") == "deviceComboBox")
    items = [item.findtext("property/string") for item in device.findall("item")]
    assert tuple(items) == DEVICE_CHOICES
    assert all(device_argument(item) for item in items)  # type: ignore[arg-type]


def test_the_scene_reaches_every_mrml_widget() -> None:
    mrml_widgets = {name for name, cls in widgets().items() if cls in ("qMRMLNodeComboBox", "qMRMLTableView")}
    receivers = {connection.findtext("receiver") for connection in UI.iter("connection")
                 if connection.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert receivers == mrml_widgets


def test_the_icon_is_a_128_pixel_png() -> None:
    icon = iio.imread(MODULE / "Resources" / "Icons" / "LungAI.png")
    assert icon.shape[:2] == (128, 128)


def test_the_module_file_has_module_widget_logic_and_test_classes() -> None:
    tree = ast.parse(MODULE_SOURCE)
    classes = {node.name: [base.id for base in node.bases if isinstance(base, ast.Name)]
               for node in tree.body if isinstance(node, ast.ClassDef)}
    for name, base in [("LungAI", "ScriptedLoadableModule"), ("LungAIWidget", "ScriptedLoadableModuleWidget"),
                       ("LungAILogic", "ScriptedLoadableModuleLogic"), ("LungAITest", "ScriptedLoadableModuleTest")]:
        assert classes.get(name, [None])[0] == base, name
    for script in cmake_set(MODULE_CMAKE, "MODULE_PYTHON_SCRIPTS"):
        compile((MODULE / script).read_text(), script, "exec")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_the_slicer_side_imports_neither_torch_nor_qt_outside_the_module_file() -> None:
    sources = [*MODULE.rglob("*.py"), *(REPO_ROOT / "slicer_module").glob("*.py")]
    for source in sources:
        assert "torch" not in imported_modules(source), source
    for source in [path for path in sources if path.name != "LungAI.py"]:
        assert not imported_modules(source) & {"qt", "ctk", "PythonQt"}, source


def test_importing_the_qt_free_modules_loads_no_torch() -> None:
    code = ("import sys\n"
            "import lungai.slicer.command, lungai.slicer.job, lungai.slicer.process, lungai.slicer.progress,"
            " lungai.slicer.report, lungai.slicer.results, lungai.slicer.run_folder, lungai.slicer.runner\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
