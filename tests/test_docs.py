"""The documentation site builds (mkdocs --strict) and documents every parameter."""
import pathlib
import shutil
import subprocess
import sys

import pytest

from pypty.parameters import PARAMETERS

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_every_parameter_has_a_doc_line_in_the_reference(name):
    p = PARAMETERS[name]
    assert len(p.doc.strip()) >= 10, f"parameter {name!r} has no description in pypty/parameters.py"
    page = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `%s` |" % name)]
    assert len(rows) == 1 and p.doc.replace("|", "\\|") in rows[0], \
        f"docs/parameters.md lacks the line of {name!r}; run python scripts/generate_parameter_docs.py"


def test_mkdocs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index.html", "installation/index.html", "quickstart/index.html", "user_guide/index.html",
                 "conventions/index.html", "parameters/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    html = (tmp_path / "site" / "parameters" / "index.html").read_text(encoding="utf-8")
    assert "n_hermite_probe_modes" in html and "memory_saturation" in html
    shutil.rmtree(tmp_path / "site")
