"""The server a user might write instead: Starlette + uvicorn, one forward pass per request, no batching."""

import os
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from mlops_assets.lib.data.preprocessing import preprocess_bytes
from mlops_assets.lib.models.model_package import load_package

MODEL = load_package(Path(os.environ["NAIVE_MODEL_DIR"]), device="auto")


async def predict(request: Request) -> JSONResponse:
    form = await request.form()
    uploads = [await upload.read() for upload in form.getlist("images")]
    probabilities = MODEL.predict_proba(np.stack([preprocess_bytes(data, MODEL.spec) for data in uploads]))
    predictions = [
        {
            "label": MODEL.labels[int(row.argmax())],
            "confidence": float(row.max()),
            "probabilities": dict(zip(MODEL.labels, map(float, row), strict=True)),
        }
        for row in probabilities
    ]
    return JSONResponse({"predictions": predictions})


async def ping(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)])
