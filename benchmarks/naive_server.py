"""The server a user might write instead: Starlette + uvicorn, one forward pass per request, no batching.

Deployed the way a user would on a 2-core machine, one worker per core, each loading the model and running one
torch thread (torch's advice for a process per core):

    NAIVE_MODEL_DIR=path/to/model OMP_NUM_THREADS=1 uvicorn benchmarks.naive_server:app --workers 2

The benchmark also runs it as one process with torch's default threads. `/ping` answers with the worker's process
id, so a client can tell when every worker is up.
"""

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from mlops_assets.lib.data.preprocessing import preprocess_bytes
from mlops_assets.lib.models.model_package import load_package


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Each uvicorn worker runs its own lifespan, so every worker process loads its own copy of the model before it
    # accepts a connection.
    app.state.model = load_package(Path(os.environ["NAIVE_MODEL_DIR"]), device="auto")
    yield


async def predict(request: Request) -> JSONResponse:
    model = request.app.state.model
    form = await request.form()
    uploads = [await upload.read() for upload in form.getlist("images")]
    probabilities = model.predict_proba(np.stack([preprocess_bytes(data, model.spec) for data in uploads]))
    predictions = [
        {
            "label": model.labels[int(row.argmax())],
            "confidence": float(row.max()),
            "probabilities": dict(zip(model.labels, map(float, row), strict=True)),
        }
        for row in probabilities
    ]
    return JSONResponse({"predictions": predictions})


async def ping(_: Request) -> PlainTextResponse:
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)], lifespan=lifespan)
