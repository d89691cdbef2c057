"""``mnistlab serve``: the models of a study behind a page and a JSON API (FastAPI).

Requests that arrive together are predicted together: each request puts its image on a queue,
and one task takes everything waiting, runs the models on the batch in a worker thread (off
the event loop), and answers each request with its row. Under load the batches grow by
themselves; alone, a request waits for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..data.images import MAX_PIXELS, ImageError, array_to_input, image_to_input
from ..sections.robustness import familiarity_scores
from ..study.catalog import (
    TrainedModel,
    best_name,
    familiarity_reference,
    open_models,
    resolve_names,
)
from ..study.results import load_study

log = logging.getLogger("mnistlab")

MAX_BODY_BYTES = 2 * 2**20  # an upload larger than this is refused (413)
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif",
               "image/x-ms-bmp"}
# Decoding a small image costs less than handing it to a thread (measured with bench/serve.py)
INLINE_DECODE_BYTES = 64 * 1024
LOW_CONFIDENCE = 0.5  # a top probability under this is shown as unsure
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ModelInfo(BaseModel):
    name: str
    section: str = Field(description="classic (scikit-learn) or deep (PyTorch)")
    label: str
    test_acc: float
    val_acc: float | None
    outputs: str = Field(description="probability, or score for models without probabilities")


class ModelsResponse(BaseModel):
    dataset: str
    class_names: list[str]
    image_shape: list[int]
    best: str
    models: list[ModelInfo]


class Prediction(BaseModel):
    model: str
    class_index: int = Field(alias="class")
    name: str
    kind: str = Field(description="probability or score")
    values: list[float] = Field(description="per class: probabilities, or decision scores")
    top: float
    unsure: bool = Field(description=f"a top probability under {LOW_CONFIDENCE}")


class Familiar(BaseModel):
    distance: float = Field(description="the image's distance to the training images (its "
                            "k-th nearest of them in a PCA of their pixels)")
    threshold: float = Field(description="the distance above which an image is flagged: a "
                             "high quantile of the clean test images' distances (the report's "
                             "section 5 says which, and what it flags)")
    far: bool = Field(description="distance above threshold: unlike the images the models were "
                      "trained on, so that their predictions may mean little")


class PredictResponse(BaseModel):
    input: list[list[int]] = Field(description="the image the models saw, as they saw it")
    predictions: list[Prediction]
    agree: bool = Field(description="every model predicted the same class")
    votes: dict[str, int] = Field(description="class name -> number of models predicting it")
    familiarity: Familiar | None = Field(description="how far the image lies from the training "
                                         "images; null when the study has no robustness "
                                         "section to measure it")


class ErrorDetail(BaseModel):
    """Every error the API answers: its status says which kind, ``detail`` what is wrong."""

    detail: str = Field(description="what is wrong, in one line")


ERRORS = {
    400: "the body's bytes are not a readable image",
    404: "no model of that name in this study",
    413: f"a body over {MAX_BODY_BYTES // 2**20} MB, or an image over {MAX_PIXELS:,} pixels",
    415: "the Content-Type is not one of the image types",
    422: "the request is not of the documented form (a missing or malformed body, an array "
         "of another shape or out of 0..255), or the image has no ink",
}


def error_responses(*statuses: int, meaning: dict[int, str] | None = None) -> dict[int, dict]:
    """The ``responses`` of a route: each status with its meaning (``ERRORS``'s, or the one
    ``meaning`` gives for this route) and :class:`ErrorDetail`."""
    meaning = {**ERRORS, **(meaning or {})}
    return {status: {"model": ErrorDetail, "description": meaning[status]}
            for status in statuses}


def grey_levels_schema(image_shape: tuple[int, int]) -> dict:
    """The JSON schema of an image as rows of grey levels: the checks ``array_to_input`` makes,
    so that every array the schema allows is answered."""
    h, w = image_shape
    row = {"type": "array", "minItems": w, "maxItems": w,
           "items": {"type": "number", "minimum": 0, "maximum": 255}}
    return {"type": "array", "minItems": h, "maxItems": h, "items": row}  # described by its field


@dataclass
class _Job:
    image: np.ndarray
    names: list[str]
    future: asyncio.Future


class Batcher:
    """Micro-batching of concurrent requests; the models run in one worker thread."""

    def __init__(self, models: dict[str, TrainedModel], max_batch: int = 256):
        self.models = models
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mnistlab-predict")
        self.batches: list[int] = []  # sizes of the last batches (the bench reads them)

    async def predict(self, image: np.ndarray, names: list[str]) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(image, names, future))
        return await future

    def _run(self, images: np.ndarray, names: list[str]) -> dict:
        out = {}
        for name in names:
            model = self.models[name]
            kind, scores = model.scores(images)
            out[name] = (kind, np.asarray(scores, dtype=np.float64))
        return out

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.max_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            names = list(dict.fromkeys(n for job in jobs for n in job.names))
            images = np.stack([job.image for job in jobs])
            try:
                out = await loop.run_in_executor(self.pool, self._run, images, names)
            except Exception as exc:  # a bug: each waiting request gets it, the loop goes on
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches = [*self.batches[-999:], len(jobs)]
            for row, job in enumerate(jobs):
                if not job.future.done():
                    job.future.set_result({n: (out[n][0], out[n][1][row]) for n in job.names})


class Guard:
    """The outermost layer (pure ASGI): security headers on every response, and a request
    body over ``limit`` bytes refused with 413 whether it declares its length or arrives
    chunked. The body is read here, at most ``limit`` bytes of it, before any route sees it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send_with_headers)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._too_large(scope, receive, send_with_headers)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the route has its body: now wait for the client to go away
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send_with_headers)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"detail": f"request body over the limit of {self.limit:,} "
                                           "bytes"}, status_code=413)
        await response(scope, receive, send)


SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


@functools.cache  # the page's files do not change while the server runs
def _static(name: str) -> str:
    return resources.files("mnistlab").joinpath("web", name).read_text(encoding="utf-8")


def create_app(run: str | Path, *, host: str = "127.0.0.1",  # noqa: C901 (its routes)
               max_body: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI application serving the models of the study in ``run``."""
    run = Path(run)
    context = load_study(run, sections=set()).context
    models = {m.name: m for m in open_models(run, ["all"])}
    reference = familiarity_reference(run)
    best = best_name(models)  # open_models keeps the catalog's ranking
    image_shape = tuple(context.image_shape)
    classes = list(context.class_names)
    batcher = Batcher(models)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        import gc

        gc.freeze()  # the loaded models are permanent: full collections need not walk them
        task = asyncio.create_task(batcher.serve_forever())
        try:
            yield
        finally:
            task.cancel()
            batcher.pool.shutdown(wait=False)

    app = FastAPI(title="mnistlab", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"The models of the mnistlab study in {run.name} "
                              f"({context.dataset}).")
    app.state.batcher = batcher
    app.state.run = run

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg')}"}, status_code=422)

    def chosen(model: str | None) -> list[str]:
        try:
            return resolve_names([model] if model else None, list(models))
        except KeyError:
            raise HTTPException(404, f"no model {model!r} (this study has "
                                     f"{', '.join(models)}, best, all)") from None

    async def answer(image: np.ndarray, names: list[str]) -> JSONResponse:
        """The response, built here (PredictResponse documents it): validating the models'
        own output again is per-request work for nothing (see bench/serve.py)."""
        out = await batcher.predict(image, names)
        predictions = []
        for name in names:
            kind, values = out[name]
            k = int(np.argmax(values))
            predictions.append({"model": name, "class": k, "name": classes[k], "kind": kind,
                                "values": [round(float(v), 6) for v in values],
                                "top": float(values[k]),
                                "unsure": bool(kind == "probability" and
                                               values[k] < LOW_CONFIDENCE)})
        votes: dict[str, int] = {}
        for p in predictions:
            votes[p["name"]] = votes.get(p["name"], 0) + 1
        familiar = None
        if reference is not None:
            distance = float(familiarity_scores(image[None], reference)[0])
            familiar = {"distance": round(distance, 4),
                        "threshold": round(reference.threshold, 4),
                        "far": distance > reference.threshold}
        return JSONResponse({"input": image.tolist(), "predictions": predictions,
                             "agree": len(votes) == 1, "votes": votes,
                             "familiarity": familiar})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        files = {"app.js": "text/javascript", "app.css": "text/css"}
        if name not in files:  # a fixed list: nothing from a request becomes a path
            raise HTTPException(404, f"no file {name!r}")
        return Response(_static(name), media_type=files[name])

    @app.get("/api/models", response_model=ModelsResponse, responses=error_responses(413))
    async def list_models() -> dict:
        return {"dataset": context.dataset, "class_names": classes,
                "image_shape": list(image_shape), "best": best,
                "models": [{"name": m.name, "section": m.section, "label": m.label,
                            "test_acc": m.test_acc,
                            "val_acc": None if np.isnan(m.val_acc) else m.val_acc,
                            "outputs": "probability" if m.has_proba else "score"}
                           for m in models.values()]}

    @app.post("/api/predict", response_model=PredictResponse, response_model_by_alias=True,
              responses=error_responses(400, 404, 413, 415, 422),
              openapi_extra={"requestBody": {"required": True, "content": {
                  t: {"schema": {"type": "string", "format": "binary"}}
                  for t in sorted(IMAGE_TYPES)}}})
    async def predict_image(request: Request, model: str | None = Query(
            None, description="a model name, best or all (default)")) -> dict:
        """The raw bytes of an image file as the body (PNG, JPEG, WEBP, BMP or GIF)."""
        names = chosen(model)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in IMAGE_TYPES:
            raise HTTPException(415, f"content type {content_type or '(none)'!r} is not an "
                                     f"image ({', '.join(sorted(IMAGE_TYPES))})")
        payload = await request.body()
        if len(payload) <= INLINE_DECODE_BYTES:  # a canvas PNG decodes in well under 1 ms
            image = image_to_input(payload, image_shape, context.digits, "the request body")
        else:  # a large photo would hold the event loop: decode it in a thread
            image = await asyncio.to_thread(image_to_input, payload, image_shape,
                                            context.digits, "the request body")
        return await answer(image, names)

    # The body's schema states the shape and range array_to_input checks (this study's image
    # shape), so that every array the schema allows is answered; pydantic only parses it, and
    # array_to_input says what is wrong in one line.
    grid = Annotated[list[list[float]], WithJsonSchema(grey_levels_schema(image_shape))]
    image_object = create_model("ArrayRequest", __config__=ConfigDict(extra="forbid"),
                                image=(grid, Field(description="the image's grey levels")))

    async def predict_array(body, model: str | None = Query(
            None, description="a model name, best or all (default)")) -> dict:
        """An image as a 2-D array of grey levels (0..255) of the dataset's shape: the array
        itself, or ``{"image": array}``."""
        names = chosen(model)
        values = body.image if isinstance(body, image_object) else body
        return await answer(array_to_input(values, image_shape, "image"), names)

    # its body's type is made here, for this study: FastAPI reads it from the annotation
    predict_array.__annotations__["body"] = Annotated[image_object | grid, Body()]
    app.post("/api/predict.json", response_model=PredictResponse,
             response_model_by_alias=True,
             responses=error_responses(400, 404, 413, 422,
                                       meaning={400: "the body is not valid JSON"})
             )(predict_array)

    allowed = sorted({*LOOPBACK, host})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed)
    app.add_middleware(Guard, limit=max_body)
    return app

