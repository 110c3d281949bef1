"""The alternative the service replaced: BentoML's `batchable=True` API in a separate inference process.

Benchmark only. The HTTP process decodes with the same library code and sends each request's uint8 array to an
`ImageClassifierInference` service whose batchable API BentoML's dispatcher fills across concurrent requests.
Same response, same tuning as the real service (tracing off, no access log, frozen GC, BentoML's request timeout
without its timer leak, a connection pool that is never recycled), so the comparison isolates the topology: an
inter-process hop per request vs in-process batching.
"""

import gc
from pathlib import Path

import bentoml
from pydantic import BaseModel

with bentoml.importing():
    import numpy as np

    from mlops_assets.lib.data.preprocessing import ImageSpec, decode_image, to_uint8_array
    from mlops_assets.lib.models.model_package import load_package, read_package_document
    from mlops_assets.lib.serving.inference_runtime import configure_cpu_threads, inference_context
    from mlops_assets.lib.serving.request_timeout_fix import cancel_request_timers
    from mlops_assets.lib.serving.upload_files import InMemoryFile


class Arguments(BaseModel):
    model_tag: str
    max_batch_size: int = 64
    max_latency_ms: int = 2000


ARGUMENTS = bentoml.use_arguments(Arguments)
TUNING = {
    "envs": [{"name": "OTEL_SDK_DISABLED", "value": "true"}],
    "logging": {"access": {"enabled": False}},
    "traffic": {"timeout": 30},
}


class Prediction(BaseModel):
    label: str
    confidence: float
    probabilities: dict[str, float]


class PredictionResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


@bentoml.service(workers=1, runner_connection={"max_requests": 2**31 - 1, "max_age": float(10**9)}, **TUNING)
class ImageClassifierInference:
    """Forward passes on uint8 images, batched by BentoML across concurrent requests."""

    model_ref = bentoml.models.BentoModel(ARGUMENTS.model_tag)

    def __init__(self) -> None:
        cancel_request_timers()
        configure_cpu_threads(1)
        self.model = load_package(Path(self.model_ref.path), device="auto")
        gc.collect()
        gc.freeze()

    @bentoml.api(batchable=True, max_batch_size=ARGUMENTS.max_batch_size, max_latency_ms=ARGUMENTS.max_latency_ms)
    def classify(self, pixels: np.ndarray) -> np.ndarray:
        with inference_context(self.model.plugin.device):
            return self.model.predict_uint8(pixels)


@bentoml.service(workers=1, **TUNING)
class DependencyClassifier:
    """Decodes uploads and asks the inference service."""

    model_ref = bentoml.models.BentoModel(ARGUMENTS.model_tag)
    inference = bentoml.depends(ImageClassifierInference)

    def __init__(self) -> None:
        cancel_request_timers()
        document = read_package_document(Path(self.model_ref.path))
        self.spec = ImageSpec.from_dict(document["spec"])
        self.labels = tuple(document["labels"])
        self.version = str(self.model_ref.tag)
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/predict")
    async def predict(self, images: list[InMemoryFile]) -> PredictionResponse:
        spec = self.spec
        pixels = np.stack(
            [to_uint8_array(decode_image(data), spec.height, spec.width, spec.channels) for data in images]
        )
        probabilities = np.asarray(await self.inference.to_async.classify(pixels))
        best = probabilities.argmax(axis=1)
        predictions = [
            Prediction.model_construct(
                label=self.labels[index], confidence=row[index], probabilities=dict(zip(self.labels, row, strict=True))
            )
            for index, row in zip(best.tolist(), probabilities.tolist(), strict=True)
        ]
        return PredictionResponse.model_construct(model_version=self.version, predictions=predictions)
