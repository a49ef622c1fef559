"""The install step that patches wheels never writes through a hard link into a shared cache."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "glibc_compat.py"


def _tool():
    spec = importlib.util.spec_from_file_location("glibc_compat", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patching_a_hard_linked_file_leaves_the_cache_copy_alone(tmp_path):
    tool = _tool()
    cache, site = tmp_path / "uv-cache", tmp_path / "site-packages"
    rel = Path(tool.RC_PROTOS[0])
    original = "_runtime_version.ValidateProtobufRuntimeVersion(\n    5, 29, 0,\n    '-rc2',\n)\n"
    (cache / rel).parent.mkdir(parents=True)
    (cache / rel).write_text(original)
    (site / rel).parent.mkdir(parents=True)
    os.link(cache / rel, site / rel)  # as uv installs from its cache
    assert tool._patch_protobuf_suffix(site) == [str(rel)]
    assert "'-rc2'," not in (site / rel).read_text()
    assert (cache / rel).read_text() == original, "the cache's file was changed through the link"
    assert (site / rel).stat().st_ino != (cache / rel).stat().st_ino
    assert tool._patch_protobuf_suffix(site) == []  # idempotent
