"""HTTP service for a packaged image classifier: validated uploads, adaptively batched inference, metrics, logs."""

import asyncio
import base64
import binascii
import functools
import gc
import json
import logging
import os
import random
import re
import typing
import uuid
from pathlib import Path

import bentoml
from bentoml._internal.context import trace_context
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

with bentoml.importing():
    import numpy as np

    from mlops_assets.lib.data.image_policy import ImagePolicy, OpenedInput
    from mlops_assets.lib.data.image_stats import image_statistics
    from mlops_assets.lib.data.preprocessing import ImageSpec
    from mlops_assets.lib.deploy.startup_refusal import startup_refused
    from mlops_assets.lib.errors import InvalidImageError
    from mlops_assets.lib.models.model_package import load_package, package_policy, read_package_document
    from mlops_assets.lib.monitoring.capture import FEEDBACK_EXAMPLE, Capture
    from mlops_assets.lib.monitoring.embedding_projection import compact_embedding
    from mlops_assets.lib.monitoring.settings import alert_label_problem
    from mlops_assets.lib.serving.access_records import skip_dropped_access_records
    from mlops_assets.lib.serving.buffered_metrics import buffer_metric_writes
    from mlops_assets.lib.serving.connection_rebalancer import ConnectionRebalancer
    from mlops_assets.lib.serving.direct_dispatch import DirectDispatch
    from mlops_assets.lib.serving.disabled_tracing import skip_disabled_tracing
    from mlops_assets.lib.serving.error_responses import ErrorShape
    from mlops_assets.lib.serving.inference_runtime import configure_cpu_threads, inference_context
    from mlops_assets.lib.serving.micro_batcher import MicroBatcher, Overloaded
    from mlops_assets.lib.serving.prediction_log import PredictionLog, prediction_record
    from mlops_assets.lib.serving.prediction_store import stage_from_environment, store_from_environment
    from mlops_assets.lib.serving.request_guard import GuardedBody, GuardedRoute, RequestGuard
    from mlops_assets.lib.serving.request_timeout_fix import cancel_request_timers
    from mlops_assets.lib.serving.serving_arguments import ServiceArguments
    from mlops_assets.lib.serving.traffic_metrics import bind_traffic_series
    from mlops_assets.lib.serving.upload_files import InMemoryFile


# Set at build time (`bentoml build --arg ...`, from deployments/<env>.yaml) and stored in the bento.
ARGUMENTS = bentoml.use_arguments(ServiceArguments)
MAX_BATCH_IMAGES = 256
# A whole multipart request is held in memory once; this bounds it (raised to fit one image of the largest size the
# model's image policy accepts, if that is larger).
MAX_MULTIPART_BYTES = 64 * 1024 * 1024
# Room for the form's or the JSON's own syntax around the files.
ENVELOPE_BYTES = 64 * 1024
# Decoding costs what it produces: the pixels, read from each file's header before any is decoded, not the bytes
# uploaded (a few kilobytes of PNG can hold 40 million pixels). A request whose images decode to at most this many
# pixels together is decoded on the event loop, where that costs less than handing it to a thread; any other is
# decoded image by image in worker threads, so the loop goes on answering other requests and health checks, and a
# request cancelled by the timeout stops after the image in progress.
INLINE_DECODE_PIXELS = 64 * 1024
# Reading headers costs in proportion to the bytes: a request with more than this is read in worker threads too.
INLINE_READ_BYTES = 1024 * 1024
# The most pixels the images of one request may decode to together (or the policy's max_pixels, if that is larger,
# so that any image training accepts can be sent alone); a request over it is refused with 413 before any decoding.
MAX_REQUEST_PIXELS = 100_000_000
# What a valid request to each prediction route looks like, quoted in refusals.
ROUTE_EXAMPLES = {
    "/predict": "curl -F images=@digit.png .../predict",
    "/predict_image": "curl -H 'Content-Type: image/png' --data-binary @digit.png .../predict_image",
    "/predict_base64": '{"images": ["<base64 PNG>"]}',
    "/feedback": FEEDBACK_EXAMPLE,
}
# A feedback body holds at most MAX_FEEDBACK_ITEMS short items.
MAX_FEEDBACK_BYTES = 1024 * 1024
# Defaults for the server processes' environment; a variable already set where the server starts wins.
SERVER_ENVIRONMENT = [
    # Tracing off unless the operator turns it on (OTEL_SDK_DISABLED=false, plus BentoML's `tracing` exporter
    # settings): with no exporter configured, spans cost CPU time on every request and record nothing.
    {"name": "OTEL_SDK_DISABLED", "value": "true"},
    # With torch_threads above 1, idle OpenMP threads sleep instead of spinning: with several workers per machine a
    # spinning thread burns the core another worker's event loop needs.
    {"name": "OMP_WAIT_POLICY", "value": "PASSIVE"},
]
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
logger = logging.getLogger("bentoml.image_classifier")
T = typing.TypeVar("T")


class Prediction(BaseModel):
    label: str = Field(description="The most probable class.")
    confidence: float = Field(description="Probability of that class, in [0, 1].")
    probabilities: dict[str, float] = Field(description="Probability of every class.")


class PredictionResponse(BaseModel):
    model_version: str = Field(description="The model tag that answered.")
    predictions: list[Prediction]
    request_id: str = Field("", description="This answer's id: name it (and the image's index) in /feedback.")


@functools.cache
def _served_policy() -> ImagePolicy:
    """The image policy recorded in the served model's package: what its training accepted as an image."""
    return package_policy(read_package_document(Path(bentoml.models.get(ARGUMENTS.model_tag).path)))


def _guarded_routes() -> dict[str, GuardedRoute]:
    """The prediction routes and their size limits: one image at most the policy's `max_bytes` (the raw body, each
    multipart part, each base64 image once decoded), a multipart request at most MAX_MULTIPART_BYTES, a base64 body
    one image's worth of base64. Called when a server process builds its app (the policy is the served model's)."""
    max_bytes = _served_policy().max_bytes
    return {
        "/predict": GuardedRoute(
            ("multipart/form-data",),
            max(MAX_MULTIPART_BYTES, max_bytes + ENVELOPE_BYTES),
            ROUTE_EXAMPLES["/predict"],
            file_field="images",
            max_part_bytes=max_bytes,
        ),
        "/predict_image": GuardedRoute(("image/*",), max_bytes, ROUTE_EXAMPLES["/predict_image"], body_is_file=True),
        # Base64 inflates by 4/3.
        "/predict_base64": GuardedRoute(
            ("application/json",), -(-max_bytes // 3) * 4 + ENVELOPE_BYTES, ROUTE_EXAMPLES["/predict_base64"]
        ),
        # Ground-truth labels: behind the same key and body checks as the predictions.
        "/feedback": GuardedRoute(("application/json",), MAX_FEEDBACK_BYTES, ROUTE_EXAMPLES["/feedback"]),
    }


@functools.cache
def _model_metadata() -> dict:
    model = bentoml.models.get(ARGUMENTS.model_tag)
    document = read_package_document(Path(model.path))
    return {
        "model_version": str(model.tag),
        "label_set": document["labels"],
        "labels": dict(model.info.labels),
        "lineage": model.info.metadata,
    }


async def metadata_endpoint(_: Request) -> JSONResponse:
    return JSONResponse(_model_metadata())


metadata_app = Starlette(routes=[Route("/metadata", metadata_endpoint, methods=["GET"])])


class Refused(Exception):
    """A request refused with a client error: `status` and the message saying what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _refusal(message: str, status: int = 400, headers: dict[str, str] | None = None) -> JSONResponse:
    """A client error as `{"error": message}`, the one shape of every refusal (see `error_responses`).

    Returned, not raised: a finished answer skips BentoML's exception rendering (`[{"error": ...}]` for its 4xx).
    """
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _log_event(event: str, **fields: typing.Any) -> None:
    """One JSON object per line, so log shippers can index the fields."""
    logger.info(json.dumps({"event": event, **fields}))


def _base64_request(body: bytes) -> list[str] | None:
    """The `images` of a `/predict_base64` body that is exactly `{"images": [<string>, ...]}`, else None (BentoML's
    validation then answers it, with its message naming the wrong field)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or list(document) != ["images"] or not isinstance(document["images"], list):
        return None
    images = document["images"]
    return images if all(isinstance(image, str) for image in images) else None


# `scheme://` at the start of a string: an image's address (http, https, gs, file, ...) rather than its bytes.
_URL_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://")


def _base64_files(images: list[str]) -> list[bytes] | JSONResponse:
    """The decoded files, or a refusal naming the first string that is not base64. A data URL
    (`data:image/png;base64,...`, what a browser's FileReader and canvas give) counts as its base64 part; whitespace
    around a string is ignored."""
    files = []
    for index, text in enumerate(images):
        text = text.strip()
        head = text[:256].lower()  # a URL's scheme and a data URL's media type are case-insensitive
        if head.startswith("data:") and ";base64," in head:
            text = text[head.index(";base64,") + len(";base64,") :]
        try:
            files.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError) as error:
            if head.startswith("data:"):
                reason = "is a data URL without ';base64,'; send the file's bytes in base64"
            elif _URL_SCHEME.match(head):
                reason = "is a URL, and the service does not fetch images; send the file's bytes in base64"
            else:
                reason = f"is not valid base64 ({error}); encode the file's bytes with standard base64"
            return _refusal(f"images[{index}] {reason}.")
    return files


async def _on_thread_if(in_thread: bool, function: typing.Callable[..., T], *args: object) -> T:
    """`function(*args)`, in a worker thread when `in_thread` (awaiting it, so the event loop runs meanwhile)."""
    return await asyncio.to_thread(function, *args) if in_thread else function(*args)


def _direct_handler() -> typing.Callable:
    return bentoml.get_current_service().answer_guarded


def _answer_headers() -> dict[str, str]:
    """The headers BentoML's API layer puts on its answers, for answers given without it (`DirectDispatch`)."""
    headers = {"server": f"BentoML Service/{ImageClassifier.name}"}
    if trace_context.request_id is not None:  # set only while tracing is on
        headers["x-bentoml-request-id"] = format(trace_context.request_id, "016x")
    return headers


@bentoml.service(
    workers=ARGUMENTS.api_workers,
    traffic={"timeout": 30},
    envs=SERVER_ENVIRONMENT,
    logging={"access": {"enabled": ARGUMENTS.access_log}},
)
@bentoml.asgi_app(metadata_app, path="/")
class ImageClassifier:
    """Classifies uploaded images with the model packaged at build time.

    Each worker process holds the model and batches its own requests (`MicroBatcher`): the forward pass runs on a
    dedicated thread while the event loop parses and decodes the next requests.
    """

    model_ref = bentoml.models.BentoModel(ARGUMENTS.model_tag)

    def __init__(self) -> None:
        # Before the first request: BentoML's request timeout otherwise keeps a live timer per request,
        # OpenTelemetry's middleware does its per-request work even with tracing off, uvicorn builds an access
        # record per response that BentoML's logging levels drop, and BentoML's traffic metrics look their series up
        # by label on every request (see the modules). And every metric update, BentoML's and the service's, is queued
        # and written to the metric files in batches instead of one write each (`/metrics` shows it within 0.1 s).
        cancel_request_timers()
        skip_disabled_tracing()
        skip_dropped_access_records()
        bind_traffic_series()
        self.metric_writes = buffer_metric_writes()
        configure_cpu_threads(ARGUMENTS.torch_threads)
        document = read_package_document(Path(self.model_ref.path))
        self.spec = ImageSpec.from_dict(document["spec"])
        # What the model was trained under decides which uploads are images and how they become its input.
        self.policy = package_policy(document)
        self.labels = tuple(document["labels"])
        # An alert label the model does not have could never fire: refuse to start rather than watch for nothing.
        # Every refusal to start goes through `startup_refused`: it also tells the starter, which refuses at once
        # instead of waiting out its ready timeout while BentoML restarts this worker (lib/deploy/startup_refusal.py).
        problem = alert_label_problem(ARGUMENTS.capture.alert_labels, self.labels)
        if problem:
            raise startup_refused(f"The service cannot start: {problem}, and build the bento again.")
        self.version = str(self.model_ref.tag)
        self.model = load_package(Path(self.model_ref.path), device="auto")
        self.device = self.model.plugin.device
        home = Path(os.environ.get("MLOPS_HOME", ".mlops"))
        # A folder, or GCS where the server was started with MLOPS_PREDICTIONS_URL=gs://... (staging, production).
        store = store_from_environment(home)
        # The deployment stage the deployer started this server for (MLOPS_DEPLOYMENT_STAGE; unset: unstaged), so
        # monitoring grades each stage's traffic apart.
        try:
            self.stage = stage_from_environment()
        except ValueError as error:
            raise startup_refused(f"The service cannot start: {error}") from None
        self.prediction_log = PredictionLog(store, ARGUMENTS.prediction_log_sample_rate, stage=self.stage)
        # Feedback, hard cases and inputs of alert labels, beside the log in the same store.
        self.capture = Capture(store, ARGUMENTS.capture, stage=self.stage)
        # The model's embedding rides along with the probabilities (extra columns of the batch's output), compacted to
        # a bounded size, when the plug-in has one and the configuration logs it (embedding drift in monitoring).
        embeddings = ARGUMENTS.capture.embeddings
        self.embedding_rate = embeddings.sample_rate if self.model.plugin.has_embedding else 0.0
        self.embedding_dims = embeddings.max_dims
        self.embedding_random = random.Random()
        # Series whose labels are fixed for the process's life are bound once here, not looked up per request.
        self.confidence = bentoml.metrics.Histogram(
            name="prediction_confidence",
            documentation="Confidence of the predicted label, per image.",
            labelnames=["model_version"],
            buckets=CONFIDENCE_BUCKETS,
        ).labels(model_version=self.version)
        per_label = bentoml.metrics.Counter(
            name="predictions_per_label",
            documentation="Images classified, by predicted label.",
            labelnames=["model_version", "label"],
        )
        self.per_label = tuple(per_label.labels(model_version=self.version, label=label) for label in self.labels)
        self.rejected = bentoml.metrics.Counter(
            name="rejected_images",
            documentation="Uploads refused as invalid images, by endpoint.",
            labelnames=["endpoint"],
        )
        decoded = bentoml.metrics.Counter(
            name="decoded_images",
            documentation="Images decoded, by where: on the event loop (requests of few pixels) or in a worker thread.",
            labelnames=["where"],
        )
        self.decoded = {where: decoded.labels(where=where) for where in ("event_loop", "worker_thread")}
        self.max_request_pixels = max(MAX_REQUEST_PIXELS, self.policy.max_pixels)
        self.batch_size = bentoml.metrics.Histogram(
            name="inference_batch_size",
            documentation="Images per forward pass (adaptive batching).",
            labelnames=["model_version"],
            buckets=BATCH_SIZE_BUCKETS,
        ).labels(model_version=self.version)
        self.batch_wait = bentoml.metrics.Histogram(
            name="inference_queue_wait_seconds",
            documentation="Time the oldest request of a batch waited for the model.",
            labelnames=["model_version"],
        ).labels(model_version=self.version)
        # On CPU a lone client's forward passes run on the event loop: the hand-off to the inference thread and back
        # costs about as much as a small model's pass. A GPU pass stays on the thread, so the loop decodes meanwhile.
        self.batcher = MicroBatcher(
            self._forward,
            ARGUMENTS.max_batch_size,
            ARGUMENTS.max_latency_ms,
            on_batch=self._record_batch,
            inline_when_idle=self.device == "cpu",
        )
        self.rebalancer = ConnectionRebalancer(ARGUMENTS.rebalance_interval_ms / 1000)
        self.rebalanced = bentoml.metrics.Counter(
            name="rebalanced_connections",
            documentation="Keep-alive connections closed by a backlogged worker so the client reconnects elsewhere.",
        )
        # One pass before the first request: torch's first pass allocates and picks its kernels, and the embedding's
        # projection is drawn, here instead of on a client's request (and before the heap is frozen below).
        warm_up = self._forward(np.zeros((1, self.spec.channels, self.spec.height, self.spec.width), dtype=np.uint8))
        if self.embedding_rate:
            compact_embedding(warm_up[:, len(self.labels) :], self.embedding_dims)
        _log_event("inference_ready", model_version=self.version, device=self.device, pid=os.getpid())
        # Everything loaded so far (torch, BentoML, the model) lives as long as the process. Moving it out of the
        # collector's generations keeps each full collection from re-scanning it: that scan stalled the event loop
        # every few hundred requests, which showed as p99 outliers at low load.
        gc.collect()
        gc.freeze()

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities [N, classes] for uint8 images [N, C, H, W], followed by the model's embedding [N, D] when
        embeddings are logged; runs on the batcher's thread (or inline, see `MicroBatcher`)."""
        with inference_context(self.device):
            if not self.embedding_rate:
                return self.model.predict_uint8(pixels)
            # The embedding as the model gives it: it is compacted only for the requests that log it.
            probabilities, embeddings = self.model.predict_uint8_with_embedding(pixels)
            return np.concatenate([probabilities, embeddings], axis=1)

    def _record_batch(self, size: int, waited_s: float) -> None:
        self.batch_size.observe(size)
        self.batch_wait.observe(waited_s)

    @bentoml.on_shutdown
    def close(self) -> None:
        self.batcher.close()
        self.prediction_log.close()
        self.capture.close()
        if self.metric_writes is not None:
            self.metric_writes.flush()

    def _open(self, endpoint: str, index: int, data: bytes) -> OpenedInput:
        """Image `index` of the request read up to its header and checked under the model's image policy (training's
        refusals, with training's quarantine reason), its pixels not decoded yet; raises Refused."""
        try:
            return self.policy.open_input(data, self.spec.height, self.spec.width, self.spec.channels)
        except InvalidImageError as error:
            raise self._invalid(endpoint, index, str(error)) from error

    def _decode(
        self, endpoint: str, index: int, opened: OpenedInput, with_statistics: bool
    ) -> tuple[np.ndarray, dict | None]:
        """Training's path to uint8 pixels for an opened image and, when sampled, validation's statistics; raises
        Refused for a file damaged past its header."""
        try:
            pixels = self.policy.decode_input(opened)
        except InvalidImageError as error:
            raise self._invalid(endpoint, index, str(error)) from error
        return pixels, image_statistics(opened.header, pixels) if with_statistics else None

    def _invalid(self, endpoint: str, index: int, reason: str, status: int = 400) -> Refused:
        self.rejected.labels(endpoint=endpoint).inc()
        _log_event("invalid_image", endpoint=endpoint, index=index, reason=reason)
        return Refused(status, f"image {index}: {reason}")

    async def _decode_all(self, endpoint: str, uploads: list[bytes], with_statistics: bool) -> list[tuple]:
        """Every image of the request decoded, or Refused naming the first bad one or the limit the request passes:
        nothing invalid reaches a batch. Costly requests are read and decoded in worker threads (INLINE_READ_BYTES,
        INLINE_DECODE_PIXELS), cheap ones on the event loop."""
        if not uploads:
            raise Refused(400, "No image received: send at least one image.")
        if len(uploads) > MAX_BATCH_IMAGES:
            raise Refused(400, f"{len(uploads)} images in one request; send at most {MAX_BATCH_IMAGES} per request.")
        for index, data in enumerate(uploads):
            if len(data) > self.policy.max_bytes:
                raise self._invalid(
                    endpoint,
                    index,
                    f"{len(data):,} bytes is above the limit of {self.policy.max_bytes:,} bytes per image; "
                    "send a smaller image.",
                    status=413,
                )
        in_thread = sum(len(data) for data in uploads) > INLINE_READ_BYTES
        opened: list[OpenedInput] = []
        try:
            for index, data in enumerate(uploads):
                opened.append(await _on_thread_if(in_thread, self._open, endpoint, index, data))
            pixels = sum(image.decoded_pixels for image in opened)
            if pixels > self.max_request_pixels:
                raise Refused(
                    413,
                    f"The {len(uploads)} images of this request decode to {pixels:,} pixels together, above the limit "
                    f"of {self.max_request_pixels:,} pixels per request; send fewer or smaller images per request.",
                )
            in_thread = in_thread or pixels > INLINE_DECODE_PIXELS
            self.decoded["worker_thread" if in_thread else "event_loop"].inc(len(opened))
            decoded = []
            while opened:
                # Handed over: decoding closes it, in whichever thread runs it.
                image = opened.pop(0)
                decoded.append(
                    await _on_thread_if(in_thread, self._decode, endpoint, len(decoded), image, with_statistics)
                )
            return decoded
        finally:
            for image in opened:
                image.close()  # not decoded: a refusal, or a request cancelled by the timeout

    async def _classify(self, endpoint: str, uploads: list[bytes], client: object = None) -> Response:
        """Decode, batch and answer `uploads`; `client` (the connection, `(host, port)`) lets a lone client's forward
        pass run inline (see `MicroBatcher`)."""
        sampled = self.prediction_log.should_sample()
        try:
            decoded = await self._decode_all(endpoint, uploads, sampled)
        except Refused as error:
            return _refusal(str(error), status=error.status)
        # One image (a lone client's usual request) is passed as a view: stacking copies it.
        pixels = decoded[0][0][np.newaxis] if len(decoded) == 1 else np.stack([image for image, _ in decoded])
        try:
            outputs = await self.batcher.predict(pixels, source=client)
        except Overloaded as error:
            # BentoML hides the message of every 5xx it raises; an overloaded service should say so and when to retry.
            _log_event("overloaded", endpoint=endpoint, reason=str(error))
            return _refusal(str(error), status=503, headers={"Retry-After": "1", **self._connection_headers()})
        probabilities, embeddings = outputs[:, : len(self.labels)], outputs[:, len(self.labels) :]
        best = probabilities.argmax(axis=1)
        confidences = probabilities[np.arange(len(best)), best].tolist()
        # Built without re-validation: every value comes from the model's own array, and for small images per-image
        # pydantic checks are a noticeable share of the request next to a small model's forward pass.
        predictions = [
            Prediction.model_construct(
                label=self.labels[index], confidence=confidence, probabilities=dict(zip(self.labels, row, strict=True))
            )
            for index, confidence, row in zip(best.tolist(), confidences, probabilities.tolist(), strict=True)
        ]
        self._record_metrics(best, confidences)
        request_id = uuid.uuid4().hex
        if sampled:
            # Decided per request, like the sampling itself.
            embedded = self.embedding_rate > 0 and self.embedding_random.random() < self.embedding_rate
            if embedded:
                embeddings = compact_embedding(embeddings, self.embedding_dims)
            self.prediction_log.submit(
                [
                    prediction_record(
                        self.version,
                        p.label,
                        p.confidence,
                        statistics,
                        endpoint,
                        request_id,
                        index,
                        embeddings[index].tolist() if embedded else None,
                        self.stage,
                    )
                    for index, (p, (_, statistics)) in enumerate(zip(predictions, decoded, strict=True))
                ]
            )
        self.capture.keep(self.version, endpoint, request_id, uploads, [p.label for p in predictions], confidences)
        # Serialized here and handed to BentoML as a finished response: its own output path re-validates the whole
        # model (every probability of every image) before serializing it.
        body = PredictionResponse.model_construct(
            model_version=self.version, predictions=predictions, request_id=request_id
        ).model_dump_json()
        return Response(body, media_type="application/json", headers=self._connection_headers())

    def _connection_headers(self) -> dict[str, str]:
        """`Connection: close` now and then while this worker is backlogged (see ConnectionRebalancer), else none."""
        if not self.rebalancer.should_close(self.batcher.has_pending_work):
            return {}
        self.rebalanced.inc()
        return {"Connection": "close"}

    def _record_metrics(self, best: np.ndarray, confidences: list[float]) -> None:
        for confidence in confidences:
            self.confidence.observe(confidence)
        if len(best) == 1:
            self.per_label[int(best[0])].inc()
            return
        # One counter update per label present, not per image.
        for index, count in enumerate(np.bincount(best, minlength=len(self.labels)).tolist()):
            if count:
                self.per_label[index].inc(count)

    async def answer_guarded(self, scope: dict, guarded: GuardedBody) -> Response | None:
        """The answer to a request the guard let through, from what it read (see `DirectDispatch`); None for a
        `/predict_base64` body that is not exactly `{"images": [<string>, ...]}`, left to BentoML's validation.

        The same answers as the API methods below give the same requests, which BentoML calls after parsing the body
        again; they serve what this returns None for.
        """
        endpoint, client = scope["path"], scope.get("client")
        if endpoint == "/feedback":
            return self._feedback(guarded.body)
        if guarded.files is not None:
            return await self._classify(endpoint, guarded.files, client)
        images = _base64_request(guarded.body)
        if images is None:
            return None
        files = _base64_files(images)
        return files if isinstance(files, Response) else await self._classify(endpoint, files, client)

    def _feedback(self, body: bytes) -> Response:
        """Queue ground-truth labels for answered requests; 400 naming the first problem."""
        try:
            accepted = self.capture.accept_feedback(body, self.labels, "/feedback")
        except ValueError as error:
            return _refusal(str(error))
        return JSONResponse({"accepted": accepted})

    @bentoml.api(route="/predict")
    async def predict(self, images: list[InMemoryFile]) -> PredictionResponse:
        """Classify one image or a batch: each file in the multipart field `images`, answers in the same order."""
        return await self._classify("/predict", typing.cast(list[bytes], images))

    @bentoml.api(route="/predict_image")
    async def predict_image(
        self, image: typing.Annotated[Path, bentoml.validators.ContentType("image/*")], /
    ) -> PredictionResponse:
        """Classify one image sent as the raw request body with an image Content-Type (image/png, image/jpeg)."""
        return await self._classify("/predict_image", [image.read_bytes()])

    @bentoml.api(route="/predict_base64")
    async def predict_base64(
        self,
        images: typing.Annotated[
            list[str], Field(description="Base64-encoded PNG or JPEG files, or data URLs (data:image/png;base64,...).")
        ],
    ) -> PredictionResponse:
        """Classify images sent as base64 strings in JSON, for clients that cannot send multipart."""
        files = _base64_files(images)
        return files if isinstance(files, Response) else await self._classify("/predict_base64", files)


# Added first, so it wraps the guard and BentoML's app: every error answer leaves in the `{"error": ...}` shape.
ImageClassifier.add_asgi_middleware(ErrorShape, examples=ROUTE_EXAMPLES)
ImageClassifier.add_asgi_middleware(RequestGuard, routes=_guarded_routes, api_key_env=ARGUMENTS.api_key_env)
# Inside the guard: what it let through is answered from what it read, without BentoML's per-request API layer.
ImageClassifier.add_asgi_middleware(DirectDispatch, handler=_direct_handler, headers=_answer_headers)
