"""Execute every tutorial notebook at its quick size (``SCIML_TUTORIAL_QUICK=1``).

Each notebook runs on a temporary copy, so the committed outputs stay as they
are; the kernel is the notebook's declared kernelspec (``python3``, provided by
ipykernel), started in the repository root with the repository on
``PYTHONPATH`` so that an uninstalled checkout imports too.
"""

import os
import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
CELL_TIMEOUT_S = 300

pytestmark = pytest.mark.notebooks


def test_tutorials_exist():
    assert NOTEBOOKS, f"no notebooks found in {ROOT / 'tutorials'}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_tutorial_executes(notebook, tmp_path, monkeypatch):
    copy = tmp_path / notebook.name
    shutil.copyfile(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    kernel_name = nb.metadata.get("kernelspec", {}).get("name", "python3")

    # The kernel inherits this process's environment.
    monkeypatch.setenv("SCIML_TUTORIAL_QUICK", "1")
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) if not pythonpath else os.pathsep.join([str(ROOT), pythonpath]))

    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(ROOT)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{notebook.relative_to(ROOT)}: a cell raised an error\n{exc}", pytrace=False)
    finally:
        nbformat.write(nb, copy)  # the executed copy, for inspection under tmp_path

    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{notebook.name}: error outputs {[e.get('ename') for e in errors]}"
