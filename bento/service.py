"""HTTP service for a packaged image classifier: POST /predict, GET /metadata."""

import functools
from pathlib import Path

import bentoml
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with bentoml.importing():
    import numpy as np

    from mlops_assets.lib.errors import InvalidImageError
    from mlops_assets.lib.model_package import load_package
    from mlops_assets.lib.preprocessing import preprocess_bytes


class ServiceArguments(BaseModel):
    """Set at build time (`bentoml build --arg model_tag=...`) and stored in the bento."""

    model_tag: str


ARGUMENTS = bentoml.use_arguments(ServiceArguments)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_BATCH_IMAGES = 256


class Prediction(BaseModel):
    label: str = Field(description="The most probable class.")
    confidence: float = Field(description="Probability of that class, in [0, 1].")
    probabilities: dict[str, float] = Field(description="Probability of every class.")


class PredictionResponse(BaseModel):
    model_version: str = Field(description="The model tag that answered.")
    predictions: list[Prediction]


@functools.cache
def _model_metadata() -> dict:
    model = bentoml.models.get(ARGUMENTS.model_tag)
    return {
        "model_version": str(model.tag),
        "labels": dict(model.info.labels),
        "lineage": model.info.metadata,
    }


async def metadata_endpoint(_: Request) -> JSONResponse:
    return JSONResponse(_model_metadata())


metadata_app = Starlette(routes=[Route("/metadata", metadata_endpoint, methods=["GET"])])


@bentoml.service(traffic={"timeout": 30})
@bentoml.asgi_app(metadata_app, path="/")
class ImageClassifier:
    """Classifies uploaded images with the model packaged at build time."""

    model_ref = bentoml.models.BentoModel(ARGUMENTS.model_tag)

    def __init__(self) -> None:
        self.model = load_package(Path(self.model_ref.path), device="auto")
        self.version = str(self.model_ref.tag)

    def _read(self, index: int, upload: Path) -> np.ndarray:
        size = upload.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise bentoml.exceptions.InvalidArgument(
                f"images[{index}]: {size} bytes is above the {MAX_UPLOAD_BYTES}-byte limit; send a smaller image."
            )
        try:
            return preprocess_bytes(upload.read_bytes(), self.model.spec)
        except InvalidImageError as error:
            raise bentoml.exceptions.InvalidArgument(f"images[{index}]: {error}") from error

    @bentoml.api(route="/predict")
    def predict(self, images: list[Path]) -> PredictionResponse:
        """Classify one image or a batch: each file in the multipart field `images`, answers in the same order."""
        if not images:
            raise bentoml.exceptions.InvalidArgument(
                "No image received: send a multipart form with one or more files in the field 'images'."
            )
        if len(images) > MAX_BATCH_IMAGES:
            raise bentoml.exceptions.InvalidArgument(f"At most {MAX_BATCH_IMAGES} images per request.")
        inputs = np.stack([self._read(index, upload) for index, upload in enumerate(images)])
        probabilities = self.model.predict_proba(inputs)
        labels = self.model.labels
        predictions = [
            Prediction(
                label=labels[int(row.argmax())],
                confidence=float(row.max()),
                probabilities={label: float(value) for label, value in zip(labels, row, strict=True)},
            )
            for row in probabilities
        ]
        return PredictionResponse(model_version=self.version, predictions=predictions)
