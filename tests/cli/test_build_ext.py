"""`archdsl build-ext` compiles the C++ selective-scan kernel ahead of its first use, saying so once."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _build_ext(env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "archdsl", "build-ext", "--json"], capture_output=True,
                          text=True, env=env, timeout=600)


def test_build_ext_reports_the_kernel_and_uses_the_cache():
    out = _build_ext({})  # the suite's cache (built by the first scan test or here)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["ok"] is True and summary["error"] is None and summary["kernel"] == "selective_scan cpp"
    again = _build_ext({})  # cached: no "compiling" line the second time
    assert again.returncode == 0 and "compiling the C++ selective-scan kernel" not in again.stderr


def test_build_ext_says_why_it_cannot_build():
    out = _build_ext({"ARCHDSL_NO_CPP": "1"})
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"] == "disabled by ARCHDSL_NO_CPP"


def test_a_fresh_build_says_what_it_is_doing_once(tmp_path, monkeypatch, capsys):
    from torch.utils import cpp_extension

    from archdsl.ops.selective_scan import cpp

    calls = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kw: calls.append(kw["build_directory"]))
    monkeypatch.setenv("ARCHDSL_EXTENSIONS_DIR", str(tmp_path))
    cpp._build()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("archdsl: compiling the C++ selective-scan kernel (once, ~40 s;")
    name = os.path.basename(calls[0])
    (tmp_path / name / f"{name}.so").write_bytes(b"")  # built: the next load says nothing
    cpp._build()
    assert capsys.readouterr().err == ""
