"""`archdsl build-ext` compiles the C++ selective-scan kernel ahead of its first use, saying so once."""
from __future__ import annotations

import json
import os

from archdsl.cli import main
from archdsl.ops.selective_scan import cpp


def _build_ext(capsys):
    rc = main(["build-ext", "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def test_build_ext_reports_the_kernel(capsys):
    rc, summary, _ = _build_ext(capsys)  # builds it unless an earlier test did
    assert rc == 0 and summary["ok"] is True and summary["error"] is None
    assert summary["kernel"] == "selective_scan cpp"
    rc, _, err = _build_ext(capsys)  # loaded: nothing to say the second time
    assert rc == 0 and "compiling" not in err


def test_build_ext_says_why_it_cannot_build(capsys, monkeypatch):
    monkeypatch.setattr(cpp, "_state", {"loaded": False, "error": None})
    monkeypatch.setenv("ARCHDSL_NO_CPP", "1")
    rc, summary, _ = _build_ext(capsys)
    assert rc == 1 and summary == {"kernel": "selective_scan cpp", "ok": False, "seconds": summary["seconds"],
                                   "error": "disabled by ARCHDSL_NO_CPP"}


def test_a_fresh_build_says_what_it_is_doing_once(tmp_path, monkeypatch, capsys):
    from torch.utils import cpp_extension

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
