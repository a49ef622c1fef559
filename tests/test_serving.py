"""`emotion-ai serve` (TF Serving REST API), the client, and `emotion-ai predict`, on the
models the smoke pipeline run pushed (a copy of its repository per module)."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from click.testing import CliRunner
from conftest import declared_png, free_port, serve_in_thread
from PIL import Image

from emotion_ai.components import model_repository, spec
from emotion_ai.data import generator
from emotion_ai.pipelines.cli import main
from emotion_ai.serving import framing
from emotion_ai.serving import server as server_lib
from emotion_ai.serving.client import ServingClient, ServingError
from emotion_ai.serving.local_model import ServedModel


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def repo(first_run, workspace, tmp_path_factory):
    copy = tmp_path_factory.mktemp("serving") / "model_repository"
    shutil.copytree(workspace["repo"], copy)
    return copy


@pytest.fixture(scope="module")
def server(repo):
    """The server on a free local port, polling every 0.2 s, 1 MB request limit."""
    app = server_lib.create_app(repo, poll_seconds=0.2, max_request_bytes=1024 * 1024)
    with serve_in_thread(app) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def faces():
    """Two generated face images (PNG bytes) of different sizes."""
    rng = np.random.default_rng(3)
    return [_png(generator.render_face(rng, size, "Happy")[0]) for size in (96, 130)]


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_status_and_metadata_endpoints(server, repo):
    for model in ("keypoints", "emotion"):
        version = model_repository.latest_version(repo, model)[0]
        status = requests.get(f"{server}/v1/models/{model}").json()
        assert status == {"model_version_status": [{"version": str(version), "state": "AVAILABLE",
                                                    "status": {"error_code": "OK", "error_message": ""}}]}
        assert requests.get(f"{server}/v1/models/{model}/versions/{version}").json() == status
        for url in (f"{server}/v1/models/{model}/metadata", f"{server}/v1/models/{model}/versions/{version}/metadata"):
            meta = requests.get(url).json()
            assert meta["model_spec"] == {"name": model, "signature_name": "", "version": str(version)}
            sigs = meta["metadata"]["signature_def"]["signature_def"]
            assert {"serving_default", "serving_pixels", "serving_examples"} <= set(sigs)
            images = sigs["serving_default"]["inputs"]["images"]
            assert images["dtype"] == "DT_STRING" and images["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    outputs = requests.get(f"{server}/v1/models/emotion/metadata").json()["metadata"]["signature_def"][
        "signature_def"]["serving_default"]["outputs"]
    assert outputs["probabilities"]["dtype"] == "DT_FLOAT" and outputs["label"]["dtype"] == "DT_STRING"


def test_predict_row_and_columnar_formats_match_the_in_process_model(server, repo, faces):
    local = {m: ServedModel(repo, m) for m in ("keypoints", "emotion")}
    row = requests.post(f"{server}/v1/models/emotion:predict", json={"instances": [_b64(f) for f in faces]})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    expected = local["emotion"].predict_images(faces)
    assert len(predictions) == 2
    for i, p in enumerate(predictions):
        assert set(p) == {"probabilities", "label", "class_id"}
        np.testing.assert_allclose(p["probabilities"], expected["probabilities"][i], atol=1e-5)
        assert p["label"] == expected["label"][i].decode() and p["label"] in spec.EMOTION_CLASSES
    # Columnar, named input, a pinned version.
    version = model_repository.latest_version(repo, "keypoints")[0]
    col = requests.post(f"{server}/v1/models/keypoints/versions/{version}:predict",
                        json={"inputs": {"images": [_b64(f) for f in faces]}})
    assert col.status_code == 200, col.text
    keypoints = np.array(col.json()["outputs"])  # one output: the tensor itself
    assert keypoints.shape == (2, 30)
    np.testing.assert_allclose(keypoints, local["keypoints"].predict_images(faces)["keypoints"], atol=1e-3)
    # Row format with named inputs, and the pixel-string signature for CSV rows.
    named = requests.post(f"{server}/v1/models/keypoints:predict", json={"instances": [{"images": _b64(faces[0])}]})
    np.testing.assert_allclose(named.json()["predictions"][0], keypoints[0], atol=1e-3)
    pixels = " ".join(["128"] * 48 * 48)
    by_pixels = requests.post(f"{server}/v1/models/emotion:predict",
                              json={"signature_name": "serving_pixels", "instances": [pixels, pixels]})
    assert by_pixels.status_code == 200 and len(by_pixels.json()["predictions"]) == 2


@pytest.mark.parametrize("path,body,status,fragment", [
    ("emotion:predict", b"{not json", 400, "JSON Parse error"),
    ("emotion:predict", b'{"foo": 1}', 400, "Missing 'instances' or 'inputs'"),
    ("emotion:predict", b'{"instances": [1], "inputs": [1]}', 400, "both"),
    ("emotion:predict", b'{"instances": []}', 400, "non-empty"),
    ("emotion:predict", json.dumps({"instances": [[{"b64": "aGk="}]]}).encode(), 400, "shape"),
    ("emotion:predict", json.dumps({"instances": [{"b64": "%%%"}]}).encode(), 400, "base64"),
    ("emotion:predict", json.dumps({"instances": [_b64(b"not an image")]}).encode(), 400, ""),
    ("emotion:predict", json.dumps({"instances": [3.5]}).encode(), 400, "DT_STRING"),
    ("emotion:predict", json.dumps({"signature_name": "nope", "instances": ["x"]}).encode(), 400, "nope"),
    ("emotion:predict", json.dumps({"instances": [{"wrong": "x", "names": "y"}]}).encode(), 400, ""),
    ("emotion/versions/1:predict", b'{"instances": ["x"]}', 404, "Specific(emotion, 1)"),
    ("emotion/versions/abc:predict", b'{"instances": ["x"]}', 400, "version must be a number"),
    ("nosuchmodel:predict", b'{"instances": ["x"]}', 404, "Servable not found"),
])
def test_predict_errors_are_4xx_with_a_message(server, path, body, status, fragment):
    response = requests.post(f"{server}/v1/models/{path}", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert requests.get(f"{server}/v1/models/emotion").status_code == 200  # still up


def test_get_errors_and_request_size_limit(server):
    assert requests.get(f"{server}/v1/models/nosuchmodel").status_code == 404
    assert "Specific(emotion, 7)" in requests.get(f"{server}/v1/models/emotion/versions/7/metadata").json()["error"]
    big = json.dumps({"instances": ["1" * (1024 * 1024 + 10)]})
    response = requests.post(f"{server}/v1/models/emotion:predict", data=big)
    assert response.status_code == 413 and "limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit holds for a streamed body too
        for _ in range(20):
            yield b"x" * 100_000
    response = requests.post(f"{server}/v1/models/emotion:predict", data=chunks())
    assert response.status_code == 413


def _post(server, path, body):
    return requests.post(f"{server}/v1/models/{path}", json=body, timeout=60)


def test_what_one_request_may_cost_is_bounded_before_anything_is_decoded(server):
    """More instances than the batching config allows, an image whose header declares more
    pixels than the limit (a bomb: 20000x20000 in a few bytes), and images that together
    decode past the request's limit: each a 413 naming the limit, in well under a second."""
    limit = spec.SERVING_MAX_BATCH
    face = " ".join(["100"] * 48 * 48)
    at_limit = _post(server, "emotion:predict", {"signature_name": "serving_pixels", "instances": [face] * limit})
    assert at_limit.status_code == 200 and len(at_limit.json()["predictions"]) == limit
    cases = [({"signature_name": "serving_pixels", "instances": [face] * (limit + 1)}, f"the limit is {limit}"),
             ({"signature_name": "serving_pixels", "inputs": [face] * (limit + 1)}, f"the limit is {limit}"),
             ({"instances": [_b64(declared_png(20000, 20000))]}, "pixels"),
             ({"instances": [_b64(declared_png(6000, 5000))]}, "30,000,000 pixels"),
             ({"instances": [_b64(declared_png(4000, 4500))] * 4}, "decode to 288,000,000 bytes")]
    for body, fragment in cases:
        start = time.monotonic()
        response = _post(server, "emotion:predict", body)
        assert response.status_code == 413 and fragment in response.json()["error"], response.text
        assert time.monotonic() - start < 2
    assert requests.get(f"{server}/v1/models/emotion").status_code == 200


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e999", "-1", "256"])
def test_pixel_strings_must_be_finite_numbers_in_0_to_255(server, bad):
    values = ["100"] * 48 * 48
    values[5] = bad
    response = _post(server, "emotion:predict", {"signature_name": "serving_pixels", "instances": [" ".join(values)]})
    assert response.status_code == 400, response.text
    assert "instance 0: pixel 5 is" in response.json()["error"] and "0..255" in response.json()["error"]


@pytest.mark.parametrize("path,body,fragment", [
    ("emotion:predict", {"signature_name": "serving_pixels", "instances": ["1 2 3"]},
     "pixel string must hold 2304 values"),  # a graph error: its reason, not "Graph execution error:"
    ("emotion:predict", {"signature_name": ["serving_default"], "instances": ["x"]},
     "'signature_name' must be a string"),
    ("emotion/versions/\u00b2:predict", {"instances": ["x"]}, "version must be a number"),
    ("emotion:predict", {"instances": [_b64(b"GIF89a broken")]}, "not a PNG, JPEG, GIF, BMP image"),
])
def test_input_errors_answer_400_with_the_real_reason(server, path, body, fragment):
    response = _post(server, path, body)
    assert response.status_code == 400 and fragment in response.json()["error"], response.text


def test_every_route_answers_errors_as_tf_serving_does_and_no_openapi(server):
    for method, path, status in (("get", "/v1/nothing/here", 404), ("delete", "/v1/models/emotion", 405),
                                 ("get", "/openapi.json", 404), ("get", "/docs", 404)):
        response = requests.request(method, f"{server}{path}", timeout=10)
        assert response.status_code == status and set(response.json()) == {"error"}, (path, response.text)


def test_a_500_keeps_the_keep_alive_connection_usable(server, monkeypatch):
    """A bug in one request answers 500 on a connection that then serves the next request."""
    import http.client
    import urllib.parse

    def broken(*_args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(server_lib, "format_outputs", broken)  # the server runs in this process
    connection = http.client.HTTPConnection(urllib.parse.urlparse(server).netloc, timeout=30)
    try:
        body = json.dumps({"signature_name": "serving_pixels", "instances": [" ".join(["9"] * 48 * 48)]})
        connection.request("POST", "/v1/models/emotion:predict", body, {"Content-Type": "application/json"})
        failed = connection.getresponse()
        assert failed.status == 500 and "a bug" in json.loads(failed.read())["error"]
        assert failed.getheader("connection") != "close"
        connection.request("GET", "/v1/models/emotion")  # the same socket
        again = connection.getresponse()
        assert again.status == 200 and json.loads(again.read())["model_version_status"]
    finally:
        connection.close()


def test_json_nested_too_deeply_is_a_400(server):
    body = '{"instances": ' + "[" * 5000 + "]" * 5000 + "}"
    response = requests.post(f"{server}/v1/models/emotion:predict", data=body, timeout=60)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"], response.text


def test_gif_bmp_and_cmyk_jpeg_faces_decode_as_the_signature_promises(server, faces):
    """The served signature reads PNG, JPEG, GIF and BMP: a grey face as GIF or BMP is the
    same picture as the PNG (same answer); a CMYK JPEG is converted, not refused."""
    grey = Image.open(io.BytesIO(faces[0]))
    encoded = {}
    for kind, image in (("GIF", grey), ("BMP", grey), ("JPEG", grey.convert("CMYK"))):
        buffer = io.BytesIO()
        image.save(buffer, format=kind)
        encoded[kind] = buffer.getvalue()
    png = _post(server, "emotion:predict", {"instances": [_b64(faces[0])]}).json()["predictions"][0]
    for kind, data in encoded.items():
        response = _post(server, "emotion:predict", {"instances": [_b64(data)]})
        assert response.status_code == 200, (kind, response.text)
        probabilities = response.json()["predictions"][0]["probabilities"]
        assert len(probabilities) == len(spec.EMOTION_CLASSES) and abs(sum(probabilities) - 1) < 1e-4
        if kind != "JPEG":  # lossless: the same pixels
            np.testing.assert_allclose(probabilities, png["probabilities"], atol=1e-5)


def test_the_newest_loadable_version_is_served_and_a_failed_one_retried(repo, tmp_path, caplog):
    """After a restart, a corrupt newest version does not take the model down: the next
    older one serves. A version copied in non-atomically (``cp -r``: the graph before its
    variables) fails, is retried with back-off, and serves once complete. One ERROR line
    per failed attempt."""
    import logging

    source = Path(model_repository.latest_version(repo, "emotion")[1])
    base = tmp_path / "repo" / "emotion"
    shutil.copytree(source, base / "1")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a graph")  # corrupt
    now = [0.0]
    registry = server_lib.ModelRegistry(tmp_path / "repo", retry_seconds=(1.0, 4.0), clock=lambda: now[0])

    def errors():
        return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    with caplog.at_level(logging.ERROR, logger="emotion_ai.serve"):
        registry.poll_once()
        assert registry.get("emotion", None).version == 1, "the newest loadable version"
        assert len(errors()) == 1 and "emotion version 2" in errors()[0] and "attempt 1, next in 1 s" in errors()[0]
        now[0] = 0.5
        registry.poll_once()  # within the back-off: not tried again
        assert len(errors()) == 1

        (base / "3").mkdir()  # a slow copy: the graph first, the variables later
        shutil.copy(source / "saved_model.pb", base / "3" / "saved_model.pb")
        now[0] = 1.0
        registry.poll_once()
        assert registry.get("emotion", None).version == 1
        assert "emotion version 3" in errors()[1] and "attempt 1" in errors()[1]
        assert "emotion version 2" in errors()[2] and "attempt 2, next in 2 s" in errors()[2], "the back-off doubles"
        shutil.copytree(source, base / "3", dirs_exist_ok=True)  # the copy completes
        now[0] = 1.5
        registry.poll_once()
        assert registry.get("emotion", None).version == 1 and len(errors()) == 3, "not before its retry time"
        now[0] = 2.0
        registry.poll_once()
        assert registry.get("emotion", None).version == 3 and len(errors()) == 3

        model_repository.set_pin(tmp_path / "repo", "emotion", 3)
        shutil.rmtree(base / "3")  # the pinned version is gone: one ERROR line, not one per poll
        for _ in range(5):
            registry.poll_once()
        assert len(errors()) == 4 and "pinned to version 3, which is not on disk" in errors()[3]


def test_client_against_the_server(server, repo, faces):
    client = ServingClient(server)
    assert client.status("emotion")["model_version_status"][0]["state"] == "AVAILABLE"
    out = client.predict_images("keypoints", faces)
    np.testing.assert_allclose(out["keypoints"], ServedModel(repo, "keypoints").predict_images(faces)["keypoints"],
                               atol=1e-3)
    with pytest.raises(ServingError) as error:
        client.predict_images("emotion", [b"garbage"])
    assert error.value.status == 400
    with pytest.raises(ServingError, match="cannot reach"):
        ServingClient(f"http://127.0.0.1:{free_port()}", timeout=2).status("emotion")


def test_version_switch_under_concurrent_requests_drops_nothing(server, repo, faces):
    old = model_repository.latest_version(repo, "emotion")[0]
    new = old + 1
    results, stop = [], threading.Event()

    def hammer():
        session = requests.Session()
        while not stop.is_set():
            r = session.post(f"{server}/v1/models/emotion:predict", json={"instances": [_b64(faces[0])]})
            results.append((time.time(), r.status_code))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    # Push the way the Pusher does: write beside, then rename into place.
    staging = repo / "emotion" / f".tmp-{new}"
    shutil.copytree(repo / "emotion" / str(old), staging)
    os.rename(staging, repo / "emotion" / str(new))
    pushed_at = time.time()
    deadline = pushed_at + 60
    while requests.get(f"{server}/v1/models/emotion").json()["model_version_status"][0]["version"] != str(new):
        assert time.time() < deadline, "new version never served"
        time.sleep(0.1)
    switched_at = time.time()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    statuses = [s for _, s in results]
    assert statuses and set(statuses) == {200}, f"{statuses.count(200)} ok of {len(statuses)}"
    assert any(t < pushed_at for t, _ in results) and any(t > switched_at for t, _ in results)
    assert requests.get(f"{server}/v1/models/emotion/versions/{old}").status_code == 404  # latest-1 policy


def _served_version(server, model):
    return requests.get(f"{server}/v1/models/{model}").json()["model_version_status"][0]["version"]


def _wait_for_version(server, model, version, seconds=30):
    deadline = time.time() + seconds
    while _served_version(server, model) != str(version):
        assert time.time() < deadline, \
            f"{model} version {version} never served (serving {_served_version(server, model)})"
        time.sleep(0.1)


def test_rollback_pins_a_version_that_serve_and_later_pushes_honour(server, repo, tmp_path):
    """`emotion-ai rollback` pins the version before the served one in models.config (TF
    Serving's specific policy); the running server switches to it, a later push neither
    unpins nor prunes it, and `--latest` returns to the newest."""
    from emotion_ai.components import model_repository
    from emotion_ai.components.repository_pusher import push_atomically

    versions = model_repository.version_dirs(repo / "emotion")
    if len(versions) < 2:  # a version to roll back to (the switch test makes one when it runs first here)
        staging = repo / "emotion" / f".tmp-{versions[-1] + 1}"
        shutil.copytree(repo / "emotion" / str(versions[-1]), staging)
        os.rename(staging, repo / "emotion" / str(versions[-1] + 1))
        versions = model_repository.version_dirs(repo / "emotion")
    assert len(versions) >= 2
    newest, previous = versions[-1], versions[-2]
    _wait_for_version(server, "emotion", newest)
    result = CliRunner().invoke(main, ["rollback", "emotion", "--model-repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert f"pinned to version {previous}" in result.output
    assert model_repository.read_pins(repo) == {"emotion": previous}
    assert "specific" in (repo / "models.config").read_text()
    _wait_for_version(server, "emotion", previous)
    newest_keypoints = model_repository.latest_version(repo, "keypoints")[0]
    assert _served_version(server, "keypoints") == str(newest_keypoints)  # others untouched

    # A push while pinned: the new version lands, the pin and the pinned version stay.
    pushed, was_pushed = push_atomically(repo / "emotion" / str(newest), repo / "emotion", keep_versions=1)
    assert not was_pushed  # identical to the newest: nothing to push
    fresh = tmp_path / "fresh_model"
    shutil.copytree(repo / "emotion" / str(newest), fresh)
    (fresh / "assets.extra").mkdir(exist_ok=True)
    (fresh / "assets.extra" / "marker").write_text("a different model")
    pushed, was_pushed = push_atomically(fresh, repo / "emotion", keep_versions=1)
    assert was_pushed and model_repository.read_pins(repo) == {"emotion": previous}
    assert previous in model_repository.version_dirs(repo / "emotion"), "the pinned version is never pruned"
    time.sleep(0.6)  # three polls
    assert _served_version(server, "emotion") == str(previous)

    bad = CliRunner().invoke(main, ["rollback", "emotion", "--to", "12345", "--model-repo", str(repo)])
    assert bad.exit_code == 1 and "has no version 12345" in bad.output
    back = CliRunner().invoke(main, ["rollback", "emotion", "--latest", "--model-repo", str(repo)])
    assert back.exit_code == 0 and model_repository.read_pins(repo) == {}
    _wait_for_version(server, "emotion", pushed)


def test_prometheus_metrics_count_requests_by_model_version_and_status(server, repo, faces):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict:
        text = requests.get(f"{server}/monitoring/prometheus/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    version = _served_version(server, "keypoints")
    ok_key = (":tensorflow:serving:request_count_total",
              (("API", "predict"), ("model_name", "keypoints"), ("status", "200"), ("version", version)))
    bad_key = (":tensorflow:serving:request_count_total",
               (("API", "predict"), ("model_name", "keypoints"), ("status", "400"), ("version", version)))
    before = scrape()
    for _ in range(3):
        assert requests.post(f"{server}/v1/models/keypoints:predict",
                             json={"instances": [_b64(faces[0])]}).status_code == 200
    assert requests.post(f"{server}/v1/models/keypoints:predict", json={"instances": [1]}).status_code == 400
    after = scrape()
    assert after[ok_key] - before.get(ok_key, 0) == 3
    assert after[bad_key] - before.get(bad_key, 0) == 1
    count_key = (":tensorflow:serving:request_latency_seconds_count", (("API", "predict"), ("model_name", "keypoints")))
    assert after[count_key] - before.get(count_key, 0) == 4
    loaded = {dict(labels)["model_name"]: dict(labels)["version"] for (name, labels), value in after.items()
              if name == ":tensorflow:serving:model_version_loaded" and value == 1}
    assert loaded == {"keypoints": version, "emotion": _served_version(server, "emotion")}


def _photo(tmp_path):
    photo, boxes = generator.render_group_photo()
    path = tmp_path / "two_faces.png"
    cv2.imwrite(str(path), photo)
    return path, boxes


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.mark.parametrize("through_server", [False, True])
def test_predict_on_a_photo_with_two_faces(server, repo, tmp_path, through_server):
    photo, true_boxes = _photo(tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(photo), "--out", str(out)]
    args += ["--server", server] if through_server else ["--model-repo", str(repo)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 face(s)" in result.output
    data = json.loads((out / "two_faces.json").read_text())
    assert (data["width"], data["height"]) == (400, 240) and len(data["faces"]) == 2
    image = cv2.imread(str(photo))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    local = ServedModel(repo, "keypoints")
    for face, true_box in zip(sorted(data["faces"], key=lambda f: f["box"]["x"]), true_boxes):
        box = face["box"]
        assert _iou((box["x"], box["y"], box["width"], box["height"]), true_box) > 0.4
        assert 0.0 < face["score"] <= 1.0
        assert face["emotion"]["label"] in spec.EMOTION_CLASSES
        assert abs(sum(face["emotion"]["probabilities"].values()) - 1) < 1e-3
        assert list(face["keypoints"]) == list(spec.KEYPOINT_NAMES)
        # Points are the model's output on the crop the JSON names (its corners in the photo),
        # mapped back into photo pixels.
        size = spec.KEYPOINT_IMAGE_SIZE
        corners = np.array(face["crops"]["keypoints"], dtype=np.float32)[:3]
        in_crop = np.float32([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5]])
        matrix = cv2.getAffineTransform(corners, in_crop)
        crop = cv2.imencode(".png", framing.warp(grey, matrix.astype(np.float64), size))[1].tobytes()
        on_crop = local.predict_images([crop])["keypoints"][0].reshape(-1, 2)
        expected = framing.apply(framing.invert(matrix.astype(np.float64)), on_crop)
        np.testing.assert_allclose(np.array(list(face["keypoints"].values())), expected, atol=0.3)
    annotated = cv2.imread(str(out / "two_faces.annotated.png"))
    assert annotated.shape == image.shape and np.abs(annotated.astype(int) - image).sum() > 0


def test_predict_reports_unreadable_files_photos_without_faces_and_csv_rows(repo, tmp_path, tiny_data):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 160), 200, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    rows = tiny_data["emotion"].read_text().splitlines()
    csv_path = tmp_path / "some.csv"
    csv_path.write_text("\n".join(rows[:6] + ["9,1 2 3"]) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", str(blank), str(broken), str(tmp_path / "missing.png"),
                                       str(csv_path), "--model-repo", str(repo), "--out", str(out)])
    assert result.exit_code == 1
    assert "wall.png: no face found" in result.output
    assert "broken.jpg: not a readable image" in result.output
    assert "missing.png: no such file" in result.output
    assert "some.csv: 5 rows scored, 1 rejected" in result.output
    assert json.loads((out / "wall.json").read_text())["faces"] == []
    scored = json.loads((out / "some.predictions.json").read_text())
    assert scored["model"] == "emotion" and scored["rejected"][0]["line"] == 7
    assert all(p["emotion"]["label"] in spec.EMOTION_CLASSES for p in scored["predictions"])


def test_predict_accounts_for_every_file_and_goes_on_after_each_problem(server, tmp_path):
    """An empty file and a PNG bomb are each one line; the files after them are still
    predicted, a large photo too (the models get crops of their own size, not the face at
    the photo's resolution); ``a.png`` and ``a.jpg`` get outputs of their own."""
    photo, _ = generator.render_group_photo()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "bomb.png").write_bytes(declared_png(20000, 20000))
    big = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big += np.random.default_rng(0).normal(0, 10, big.shape)
    cv2.imwrite(str(tmp_path / "large.png"), np.clip(big, 0, 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    cv2.imwrite(str(tmp_path / "a.jpg"), photo)
    names = ["empty.png", "bomb.png", "large.png", "a.png", "a.jpg"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", *(str(tmp_path / n) for n in names), "--server", server,
                                       "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "empty.png: empty file" in result.output
    assert "bomb.png:" in result.output and "pixels" in result.output
    for name, output in (("large.png", "large"), ("a.png", "a.png"), ("a.jpg", "a.jpg")):  # a: two inputs
        data = json.loads((out / f"{output}.json").read_text())
        assert data["photo"].endswith(name) and len(data["faces"]) == 2
        assert (out / f"{output}.annotated.png").is_file()


def test_predict_reads_photos_in_any_form_and_names_each_problem(repo, tmp_path):
    """The same two drawn faces as a PNG with alpha named .jpg, a 16-bit PNG, a CMYK JPEG and
    a grey JPEG: two faces in each. A 1x1 image has none; a truncated file and a declared
    20000x20000 image are one line each; the files after them still run."""
    photo, _ = generator.render_group_photo()
    grey = Image.fromarray(photo)
    rgba = grey.convert("RGBA")
    files = {"alpha.jpg": (rgba, "PNG", {}), "deep.png": (Image.fromarray(photo.astype(np.uint16) * 257), "PNG", {}),
             "cmyk.jpg": (grey.convert("CMYK"), "JPEG", {"quality": 95}), "grey.jpg": (grey, "JPEG", {"quality": 95}),
             "dot.png": (Image.new("RGB", (1, 1)), "PNG", {})}
    for name, (image, fmt, options) in files.items():
        image.save(tmp_path / name, format=fmt, **options)
    whole = (tmp_path / "grey.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[:len(whole) // 3])
    (tmp_path / "bomb.png").write_bytes(declared_png(20000, 20000))
    names = ["cut.jpg", "alpha.jpg", "bomb.png", "deep.png", "cmyk.jpg", "dot.png", "grey.jpg"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", *(str(tmp_path / n) for n in names), "--model-repo", str(repo),
                                       "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "cut.jpg: not a readable image, truncated or damaged" in result.output
    assert "bomb.png:" in result.output and "pixels" in result.output
    assert "dot.png: no face found" in result.output
    for name in ("alpha.jpg", "deep.png", "cmyk.jpg", "grey.jpg"):
        data = json.loads((out / f"{Path(name).stem}.json").read_text())
        assert len(data["faces"]) == 2, (name, [f["score"] for f in data["faces"]])


def test_output_names_never_collide():
    from emotion_ai.serving.predict import output_names

    paths = [Path("x/a.png"), Path("y/a.png"), Path("a.jpg"), Path("b.png"), Path("some.csv.gz"), Path("some.csv")]
    names = output_names(paths)
    assert len(set(names.values())) == len(paths)
    assert names[Path("b.png")] == "b" and names[Path("a.jpg")] == "a.jpg"
    assert {names[Path("x/a.png")], names[Path("y/a.png")]} == {"a.png", "a.png-2"}


def test_serve_refuses_a_missing_repository(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model-repo", str(tmp_path / "nothing")])
    assert result.exit_code != 0 and "no model repository" in result.output
