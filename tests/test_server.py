"""The API of `mnistlab serve` through FastAPI's TestClient: answers, every refusal with its
status, and the server going on serving after each."""

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mnistlab import load_dataset, open_models
from mnistlab.data.images import MAX_PIXELS
from mnistlab.serve.server import MAX_BODY_BYTES, create_app

pytestmark = [pytest.mark.slow, pytest.mark.api]


@pytest.fixture
def client(quick_run):
    """A new app per test (models loaded again): mutation testing credits a test with the
    functions it calls, and each test here must reach create_app's routes on its own."""
    with TestClient(create_app(quick_run), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


def _png(array_or_image) -> bytes:
    image = (array_or_image if isinstance(array_or_image, Image.Image)
             else Image.fromarray(array_or_image))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _good(client, mnist5k):
    response = client.post("/api/predict?model=best", content=_png(mnist5k.x_test[1]),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    return response.json()


def test_models_are_listed(client, quick_run):
    info = client.get("/api/models").json()
    assert info["dataset"] == "mnist-5k" and info["image_shape"] == [28, 28]
    assert len(info["models"]) == 13 and info["class_names"] == [str(d) for d in range(10)]
    outputs = {m["name"]: m["outputs"] for m in info["models"]}
    assert outputs["linear-svm"] == "score" and outputs["cnn-fast"] == "probability"


def test_a_png_of_a_test_image_gives_exactly_predict_proba_of_that_row(client, quick_run,
                                                                        mnist5k):
    row = 7
    response = client.post("/api/predict", content=_png(mnist5k.x_test[row]),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["input"] == mnist5k.x_test[row].tolist()  # passed through unchanged
    by_name = {p["model"]: p for p in answer["predictions"]}
    assert len(by_name) == 13
    for model in open_models(quick_run, ["all"]):
        kind, values = model.scores(mnist5k.x_test[row:row + 1])
        assert by_name[model.name]["kind"] == kind
        assert by_name[model.name]["values"] == [round(float(v), 6) for v in values[0]]
        assert by_name[model.name]["class"] == int(np.argmax(values[0]))
    assert answer["agree"] == (len(answer["votes"]) == 1)
    assert sum(answer["votes"].values()) == 13


def test_an_array_gives_the_same_answer_as_its_png(client, mnist5k):
    image = mnist5k.x_test[4]
    as_png = client.post("/api/predict?model=cnn-fast", content=_png(image),
                         headers={"Content-Type": "image/png"}).json()
    for body in (image.tolist(), {"image": image.tolist()}):
        as_json = client.post("/api/predict.json?model=cnn-fast", json=body)
        assert as_json.status_code == 200, as_json.text
        assert as_json.json() == as_png


def _bomb() -> bytes:
    side = int(MAX_PIXELS ** 0.5) + 1
    return _png(Image.new("1", (side, side)))


def _chunks(total: int):
    chunk = b"\0" * 65536
    for _ in range(total // len(chunk) + 1):
        yield chunk


# The limit the README states ("413 a body over 2 MB"), written out: a test that built its body
# from MAX_BODY_BYTES would follow the constant wherever it went.
DOCUMENTED_LIMIT = 2 * 1024 * 1024


def test_the_body_limit_is_the_documented_one(client):
    under = client.post("/api/predict", content=b"\0" * DOCUMENTED_LIMIT,
                        headers={"Content-Type": "image/png"})
    assert under.status_code == 400  # read, and not an image: not refused for its size
    over = client.post("/api/predict", content=b"\0" * (DOCUMENTED_LIMIT + 1),
                       headers={"Content-Type": "image/png"})
    assert over.status_code == 413
    assert over.json()["detail"] == "request body over the limit of 2,097,152 bytes"


BAD = [
    ("too large", "/api/predict", {"content": b"\0" * (MAX_BODY_BYTES + 1),
                                   "headers": {"Content-Type": "image/png"}}, 413, "over the limit"),
    ("too large, chunked", "/api/predict", {"content": _chunks(MAX_BODY_BYTES + 1),
                                            "headers": {"Content-Type": "image/png"}}, 413,
     "over the limit"),
    ("not an image type", "/api/predict", {"content": b"hello",
                                           "headers": {"Content-Type": "text/plain"}}, 415,
     "is not an image"),
    ("no content type", "/api/predict", {"content": b"hello"}, 415, "is not an image"),
    ("unreadable bytes", "/api/predict", {"content": b"GIF89a broken",
                                          "headers": {"Content-Type": "image/gif"}}, 400,
     "the request body:"),
    ("decompression bomb", "/api/predict", {"content": "bomb",
                                            "headers": {"Content-Type": "image/png"}}, 413,
     "over the limit of"),
    ("no ink", "/api/predict", {"content": "blank", "headers": {"Content-Type": "image/png"}},
     422, "no ink"),
    ("wrong shape", "/api/predict.json", {"json": np.zeros((27, 28)).tolist()}, 422,
     "image: expected an array of shape (28, 28), got (27, 28)"),
    ("out of range", "/api/predict.json", {"json": {"image": np.full((28, 28), 300).tolist()}},
     422, "image: grey levels must be finite numbers in 0..255"),
    ("not an array", "/api/predict.json", {"json": {"picture": 1}}, 422, "body"),
    ("not JSON", "/api/predict.json", {"content": b"\x87{[", "headers": {
        "Content-Type": "application/json"}}, 400, "parsing the body"),
    ("unknown model", "/api/predict.json?model=resnet", {"json": np.zeros((28, 28)).tolist()},
     404, "no model 'resnet'"),
]


@pytest.mark.parametrize("case, path, kwargs, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_status_and_the_server_goes_on(client, mnist5k, case, path, kwargs,
                                                          status, message):
    if kwargs.get("content") == "bomb":
        kwargs = {**kwargs, "content": _bomb()}
    if kwargs.get("content") == "blank":
        kwargs = {**kwargs, "content": _png(Image.new("RGB", (60, 60), "white"))}
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail
    assert _good(client, mnist5k)["predictions"][0]["class"] == int(mnist5k.y_test[1])


def test_security_headers_no_cors_and_the_host_is_checked(client):
    page = client.get("/", headers={"Origin": "http://evil.example"})
    assert page.status_code == 200 and "<canvas" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "access-control-allow-origin" not in page.headers
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript")
    assert client.get("/static/..%2Fserver.py").status_code == 404
    assert client.get("/static/../../etc/passwd").status_code == 404
    rebinding = client.get("/api/models", headers={"Host": "attacker.example"})
    assert rebinding.status_code == 400
    assert client.get("/api/models", headers={"Host": "localhost:8000"}).status_code == 200


def test_the_openapi_schema_names_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/models", "/api/predict", "/api/predict.json"} <= set(schema["paths"])
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert "image/png" in body
    error = {"$ref": "#/components/schemas/ErrorDetail"}
    for path, statuses in {"/api/predict": {"400", "404", "413", "415", "422"},
                           "/api/predict.json": {"400", "404", "413", "422"}}.items():
        responses = schema["paths"][path]["post"]["responses"]
        assert set(responses) == {"200"} | statuses
        for status in statuses:  # our one-line detail, not FastAPI's list of errors
            assert responses[status]["content"]["application/json"]["schema"] == error
        for status in statuses:  # each says what it means
            assert len(responses[status]["description"]) > 10
    json_responses = schema["paths"]["/api/predict.json"]["post"]["responses"]
    assert json_responses["400"]["description"] == "the body is not valid JSON"
    array = schema["components"]["schemas"]["ArrayRequest"]["properties"]["image"]
    row = {"type": "array", "minItems": 28, "maxItems": 28,  # the study's shape
           "items": {"type": "number", "minimum": 0.0, "maximum": 255.0}}
    assert array == {"type": "array", "minItems": 28, "maxItems": 28, "items": row,
                     "title": "Image", "description": "the image's grey levels"}
    assert schema["paths"]["/api/models"]["get"]["responses"]["413"]["content"][
        "application/json"]["schema"] == error


def test_requests_arriving_together_are_predicted_in_one_batch(client, mnist5k):
    import concurrent.futures

    batcher = client.app.state.batcher
    batcher.batches.clear()
    images = mnist5k.x_test[:64]

    def one(i):
        return client.post("/api/predict.json?model=logistic",
                           json=images[i].tolist()).json()["predictions"][0]["class"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        classes = list(pool.map(one, range(64)))
    (logistic,) = open_models(client.app.state.run, ["logistic"])
    assert classes == logistic.predict(images).tolist()
    assert sum(batcher.batches) == 64 and max(batcher.batches) > 1


class _CountingModel:
    """Stands for a trained model in the batcher: scores each image by its first pixel, says
    which threads called it, and fails on an image whose first pixel is 13."""

    def __init__(self):
        self.threads: set[str] = set()

    def scores(self, images):
        import threading

        self.threads.add(threading.current_thread().name)
        if (images[:, 0, 0] == 13).any():
            raise RuntimeError("a bug in the model")
        return "proba", np.stack([images[:, 0, 0], 255 - images[:, 0, 0]], 1).astype(np.float32)


def _image(first_pixel):
    image = np.zeros((28, 28), np.uint8)
    image[0, 0] = first_pixel
    return image


def test_the_batcher_runs_the_models_in_its_one_thread_in_batches_up_to_its_limit():
    import asyncio

    from mnistlab.serve.server import Batcher

    model = _CountingModel()
    batcher = Batcher({"m": model}, max_batch=3)

    async def main():
        serving = asyncio.create_task(batcher.serve_forever())
        answers = await asyncio.gather(*(batcher.predict(_image(i), ["m"]) for i in range(8)))
        serving.cancel()
        return answers

    answers = asyncio.run(main())
    batcher.pool.shutdown()
    assert [a["m"][0] for a in answers] == ["proba"] * 8
    assert [a["m"][1].tolist() for a in answers] == [[i, 255 - i] for i in range(8)]
    assert all(a["m"][1].dtype == np.float64 for a in answers)
    assert model.threads == {"mnistlab-predict_0"}  # one thread, its own
    assert max(batcher.batches) == 3 and sum(batcher.batches) == 8


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    import asyncio

    from mnistlab.serve.server import Batcher

    batcher = Batcher({"m": _CountingModel()})

    async def main():
        serving = asyncio.create_task(batcher.serve_forever())
        failed = await asyncio.gather(batcher.predict(_image(13), ["m"]),
                                      batcher.predict(_image(1), ["m"]), return_exceptions=True)
        after = await asyncio.wait_for(batcher.predict(_image(2), ["m"]), timeout=10)
        serving.cancel()
        return failed, after

    failed, after = asyncio.run(main())
    batcher.pool.shutdown()
    assert [type(f) for f in failed] == [RuntimeError, RuntimeError]  # one batch: both fail
    assert str(failed[0]) == "a bug in the model"
    assert after["m"][1].tolist() == [2, 253]


def test_the_batcher_keeps_the_sizes_of_its_last_1000_batches():
    import asyncio

    from mnistlab.serve.server import Batcher

    batcher = Batcher({"m": _CountingModel()})

    async def main():
        serving = asyncio.create_task(batcher.serve_forever())
        for i in range(1003):
            await batcher.predict(_image(i % 7), ["m"])
        serving.cancel()

    asyncio.run(main())
    batcher.pool.shutdown()
    assert batcher.batches == [1] * 1000


def test_an_image_far_from_the_training_images_is_flagged_and_a_test_image_is_not(
        client, quick_run, mnist5k):
    from mnistlab.sections.robustness import Familiarity, familiarity_scores
    from mnistlab.study.results import load_study

    results = load_study(quick_run, sections={"robustness"}).results["robustness"]
    reference = next(r for r in results.values() if isinstance(r, Familiarity))
    test_image = _good(client, mnist5k)["familiarity"]
    expected = float(familiarity_scores(mnist5k.x_test[1:2], reference)[0])
    assert test_image["distance"] == pytest.approx(expected, abs=1e-4)
    assert test_image["threshold"] == pytest.approx(reference.threshold, abs=1e-4)
    assert test_image["far"] is (expected > reference.threshold)
    noise = np.random.default_rng(0).integers(0, 256, (28, 28))
    far = client.post("/api/predict.json", json=noise.tolist()).json()["familiarity"]
    assert far["far"] is True and far["distance"] > far["threshold"]


def test_the_guard_replays_a_whole_body_and_drops_a_request_whose_client_left():
    import asyncio

    from mnistlab.serve.server import Guard

    async def call(messages):
        seen, sent, incoming = [], [], iter(messages)

        async def route(scope, receive, send):
            seen.append((await receive())["body"])
            seen.append((await receive())["type"])  # then it waits for the client to go

        async def receive():
            return next(incoming)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": "/api/predict", "headers": []}
        await Guard(route, limit=100)(scope, receive, send)
        return seen, sent

    whole = [{"type": "http.request", "body": b"ab", "more_body": True},
             {"type": "http.request", "body": b"cd", "more_body": False},
             {"type": "http.disconnect"}]
    assert asyncio.run(call(whole)) == ([b"abcd", "http.disconnect"], [])
    gone = [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]
    assert asyncio.run(call(gone)) == ([], [])  # no route runs for a client that left


def test_each_prediction_names_its_top_value_and_is_unsure_only_as_a_low_probability(
        client, mnist5k):
    from mnistlab.serve.server import LOW_CONFIDENCE

    noise = np.random.default_rng(1).integers(0, 256, (28, 28))
    unsure = set()
    for image in (mnist5k.x_test[1], noise):
        answer = client.post("/api/predict.json?model=all", json=image.tolist()).json()
        for p in answer["predictions"]:
            assert p["top"] == pytest.approx(max(p["values"]), abs=1e-6)
            assert p["class"] == int(np.argmax(p["values"]))
            assert p["unsure"] is (p["kind"] == "probability" and p["top"] < LOW_CONFIDENCE)
            unsure.add((p["kind"], p["unsure"]))
    # the cases the rule tells apart all occur: scores (never unsure), sure and unsure answers
    assert {("score", False), ("probability", True), ("probability", False)} <= unsure
