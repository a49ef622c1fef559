"""A small client for the TF Serving REST API (``emotion-ai serve`` or real TF Serving).

Only TF Serving's documented endpoints and JSON shapes are used, so it works unchanged
against ``tensorflow/serving`` (``serving/docker-compose.yml``) and KServe's TensorFlow
runtime (V1 protocol).
"""
from __future__ import annotations

import base64

import numpy as np
import requests

from emotion_ai.components import credentials


class ServingError(RuntimeError):
    """A non-2xx answer, with TF Serving's ``{"error": ...}`` message."""

    def __init__(self, status: int, message: str, url: str):
        super().__init__(credentials.redact(f"{url}: HTTP {status}: {message}"))
        self.status, self.message = status, message


class ServingClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()  # keep-alive: one connection per client thread
        self._single_output: dict[tuple[str, str], str] = {}

    def _model_url(self, model: str, version: int | None) -> str:
        return f"{self.url}/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")

    def _call(self, method: str, url: str, **kwargs) -> dict:
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise ServingError(0, f"cannot reach the model server: {error}", url) from error
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if not response.ok:
            raise ServingError(response.status_code, body.get("error", str(body)), url)
        return body

    def status(self, model: str, version: int | None = None) -> dict:
        return self._call("GET", self._model_url(model, version))

    def metadata(self, model: str, version: int | None = None) -> dict:
        return self._call("GET", self._model_url(model, version) + "/metadata")

    def predict(self, model: str, *, instances=None, inputs=None, signature_name: str | None = None,
                version: int | None = None) -> dict:
        """Raw ``:predict``: pass ``instances`` (row format) or ``inputs`` (columnar)."""
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", self._model_url(model, version) + ":predict", json=body)

    def predict_images(self, model: str, encoded_images, version: int | None = None) -> dict[str, np.ndarray]:
        """Encoded images (PNG/JPEG bytes) through ``serving_default`` -> arrays by output name."""
        instances = [{"b64": base64.b64encode(image).decode()} for image in encoded_images]
        predictions = self.predict(model, instances=instances, version=version)["predictions"]
        return self._columns(model, "serving_default", predictions)

    def predict_pixel_strings(self, model: str, pixel_strings, version: int | None = None) -> dict[str, np.ndarray]:
        """The datasets' pixel strings through ``serving_pixels``."""
        response = self.predict(model, instances=list(pixel_strings), signature_name="serving_pixels", version=version)
        return self._columns(model, "serving_pixels", response["predictions"])

    def _columns(self, model: str, signature: str, predictions: list) -> dict[str, np.ndarray]:
        """Row-format predictions -> one array per output. TF Serving leaves out the name
        when a signature has a single output; the model's metadata has it."""
        if predictions and isinstance(predictions[0], dict):
            return {key: np.array([p[key] for p in predictions]) for key in predictions[0]}
        key = (model, signature)
        if key not in self._single_output:
            outputs = self.metadata(model)["metadata"]["signature_def"]["signature_def"][signature]["outputs"]
            self._single_output[key] = next(iter(outputs))
        return {self._single_output[key]: np.array(predictions)}
