"""`pip install durafunc` must bring the dashboard: every template and static asset is in the wheel, and the
installed package serves them (no CDN, nothing fetched at run time)."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from durafunc.http.dashboard.routes import STATIC, TEMPLATES

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_dashboard(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("durafunc-*.whl"))).namelist())
    expected = {f"durafunc/http/dashboard/{folder.name}/{p.name}" for folder in (TEMPLATES, STATIC)
                for p in folder.iterdir() if p.is_file()}
    assert {"durafunc/http/dashboard/templates/instance.html", "durafunc/http/dashboard/static/dashboard.js",
            "durafunc/http/dashboard/static/dashboard.css"} <= expected
    assert expected <= names, sorted(expected - names)


def test_pages_reference_only_assets_of_the_package():
    """No external URL in any template, stylesheet or script: the dashboard works offline."""
    for path in [*TEMPLATES.iterdir(), *STATIC.iterdir()]:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "url(http" not in text, path
        for asset in re.findall(r"/static/([\w.-]+)", text):
            assert (STATIC / asset).is_file(), (path, asset)
