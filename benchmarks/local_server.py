"""The project's server (``emotion-ai serve``) on a free loopback port, for the serving
benchmarks: started as users start it, as its own process, and returned once every model
answers its status request."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emotion_ai.components.branches import BRANCHES  # noqa: E402

MODELS = tuple(branch.name for branch in BRANCHES)  # the served models: one per branch


def start(repo: Path, log: Path | None = None, extra_args: tuple[str, ...] = (),
          timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``(process, base URL)``; the caller stops the process. ``log`` takes the server's output
    (else it is dropped); raises if it is not up within ``timeout`` seconds or exits."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps writing to it
    process = subprocess.Popen([str(Path(sys.executable).parent / "emotion-ai"), "serve", "--model-repo", str(repo),
                                "--port", str(port), *extra_args], stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if all(requests.get(f"{url}/v1/models/{m}", timeout=1).ok for m in MODELS):
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not come up{f'; see {log}' if log else ''}")


def face_pngs(n: int) -> list[bytes]:
    """``n`` generated 96x96 grey face photos as PNG bytes: what the serving benchmarks send."""
    import io

    import numpy as np
    from PIL import Image

    from emotion_ai.components import spec
    from emotion_ai.data import generator

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(generator.render_face(rng, spec.KEYPOINT_IMAGE_SIZE, "Happy")[0]).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out
