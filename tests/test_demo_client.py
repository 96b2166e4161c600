"""The demo's API (`/neighbours`) through gradio_client against `rtx demo` served on a free localhost port,
plus the backend in-process (comparisons, the empty cache). The oracle for neighbours is the batch influence
result the precompute stored (`influence_topk`), not the demo's own code. Two caches: the tiny preset's (one
cell of two models: the paper analogue, which is also the best budget, and natural) and a copy with a distinct
best budget (`three_model_cache`: three models side by side)."""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.demo import OUTPUT_NAMES, DemoBackend, build_demo, neighbours
from app.demo.composite import TILE
from app.demo.handlers import COLUMNS
from compute.cache import CacheReader
from compute.cli import build_parser, demo_command
from tests.helpers.image_files import encode, png_header_only
from tests.helpers.three_models import BEST_NOTE, BEST_SOURCE

gradio_client = pytest.importorskip("gradio_client")

K = 5


@pytest.fixture(scope="module")
def client(demo_server: str):
    return gradio_client.Client(demo_server, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def stored(demo_cache: Path) -> dict:
    """What the precompute stored for the default cell: influence rows, top-k tables, test thumbnails."""
    reader = CacheReader(demo_cache)
    try:
        cell = DemoBackend.open(demo_cache, warm=False).default
        assert cell is not None, "the tiny preset should give a robust/natural influence cell"
        rows = {side.key: reader.influence(side.key) for side in cell.sides}
        topk = {key: reader.influence_topk(key, K) for key in rows}
        thumbs = reader.thumbnails(cell.target, "test").set_index("idx")
    finally:
        reader.close()
    return {"cell": cell, "rows": rows, "topk": topk, "thumbs": thumbs}


def ask(client, path: Path, cell: str | None = None, k: object = K, invert: str = "auto") -> tuple:
    return client.predict(gradio_client.handle_file(str(path)), cell, k, invert, api_name="/neighbours")


def named(answer: tuple) -> dict:
    """An API answer by output name (`DemoOutputs` fields: every output is part of the API)."""
    assert len(answer) == len(OUTPUT_NAMES)
    return dict(zip(OUTPUT_NAMES, answer, strict=True))


def neighbour_counts(details: dict) -> list[int]:
    return [len(m["neighbours"]) for m in details["models"].values()]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the answer is the batch result ------------------------------------------------------------------------
def test_known_test_image_matches_the_batch_influence_result(client, stored: dict, tmp_path: Path) -> None:
    """A stored test image uploaded through the API gets the top-k the precompute stored for it.

    The on-demand query uses the predicted label and the batch result the true one, so the image is one each
    model classifies correctly (then the two gradients are the same). Ranks must be identical."""
    cell, checked = stored["cell"], 0
    for side in cell.sides:
        key = side.key
        row = stored["rows"][key]
        correct = np.flatnonzero(np.asarray(row.test_pred) == np.asarray(row.test_labels))
        assert correct.size, f"the {side.role} model gets no test image right; nothing to compare"
        test_pos = int(correct[0])
        test_idx = int(row.test_indices[test_pos])
        path = write(tmp_path, f"test-{test_idx}.png", bytes(stored["thumbs"].at[test_idx, "png"]))
        status, summary, *_, details = ask(client, path, cell.label)
        assert not status.startswith("⚠️"), status
        model = details["models"][side.role]
        expected = stored["topk"][key].query("test_pos == @test_pos").sort_values("rank")
        assert model["influence_key"] == key
        assert model["predicted"] == row.test_labels[test_pos]
        assert [n["train_pos"] for n in model["neighbours"]] == expected["train_pos"].tolist()
        # Scores agree to 8-bit PNG precision: the thumbnail stores the digits' x/16 pixels rounded to x/255.
        np.testing.assert_allclose([n["score"] for n in model["neighbours"]], expected["score"], rtol=1e-2)
        train_indices, train_labels = np.asarray(row.train_indices), np.asarray(row.train_labels)
        for n in model["neighbours"]:
            assert n["train_index"] == train_indices[n["train_pos"]] and n["label"] == train_labels[n["train_pos"]]
            assert n["matches_prediction"] == (n["label"] == model["predicted"])
        assert f"{model['matches']} of {K}" in summary
        checked += 1
    assert checked == 2


def test_k_and_cell_are_honoured(client, stored: dict, tmp_path: Path) -> None:
    test_idx = int(stored["thumbs"].index[0])
    path = write(tmp_path, "one.png", bytes(stored["thumbs"].at[test_idx, "png"]))
    *_, details = ask(client, path, stored["cell"].label, k=3)
    assert neighbour_counts(details) == [3, 3] and details["cell"] == stored["cell"].label
    *_, details = ask(client, path, None, k=500)  # clamped to the slider's maximum
    assert neighbour_counts(details) == [20, 20]
    status, *_, details = ask(client, path, "no such cell")
    assert status.startswith("⚠️") and "unknown influence cell" in details["error"]


# --- bad input: a message, never a traceback ---------------------------------------------------------------
def _bad_inputs() -> dict[str, tuple[str, bytes, str]]:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return {
        "text": ("notes.txt", b"this is not an image\n" * 20, "not an image"),
        "text_named_png": ("digit.png", b"this is not an image either\n", "not an image"),
        "empty": ("empty.png", b"", "empty"),
        "truncated": ("cut.png", encode(Image.fromarray(noise))[:3000], "truncated or corrupt"),
        "ten_thousand_square": ("huge.png", png_header_only(10_000, 10_000), "100.0 megapixels, over the limit"),
        "decompression_bomb": ("bomb.png", png_header_only(40_000, 40_000), "1600.0 megapixels, over the limit"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_returns_its_message(client, tmp_path: Path, case: str) -> None:
    name, data, words = _bad_inputs()[case]
    out = named(ask(client, write(tmp_path, name, data)))
    assert out["status"].startswith("⚠️") and words in out["status"]
    assert words in out["details"]["error"] and "Traceback" not in out["status"]
    assert out["model1_view"] is None and out["model1_gallery"] == [] and out["summary"] == ""


def test_oversized_upload_is_refused_before_it_reaches_the_handler(client, tmp_path: Path) -> None:
    path = write(tmp_path, "big.png", bytes(21 * 2**20))
    with pytest.raises(ValueError, match="maximum file size"):
        ask(client, path)


def _odd_images() -> dict[str, bytes]:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[8:32, 18:22] = (0, 0, 0, 255)
    frames = [Image.new("L", (28, 28), v) for v in (0, 255)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "rgba": encode(Image.fromarray(rgba)),
        "palette": encode(Image.fromarray(rgba[..., :3]).convert("P")),
        "sixteen_bit": encode(Image.fromarray(np.full((30, 30), 40_000, np.uint16))),
        "cmyk_jpeg": encode(Image.new("CMYK", (50, 40), (0, 0, 0, 200)), "JPEG"),
        "animated_gif": gif.getvalue(),
        "one_pixel": encode(Image.new("RGB", (1, 1), (200, 10, 10))),
    }


@pytest.mark.parametrize("case", list(_odd_images()))
def test_unusual_but_valid_images_get_answers(client, tmp_path: Path, case: str) -> None:
    status, summary, *_, details = ask(client, write(tmp_path, f"{case}.img", _odd_images()[case]))
    assert not status.startswith("⚠️"), status
    assert neighbour_counts(details) == [K, K]
    assert "neighbours share the predicted label" in summary


def test_drawing_endpoint(client, tmp_path: Path) -> None:
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[40:240, 130:150] = (0, 0, 0, 255)  # a "1"
    path = write(tmp_path, "sketch.png", encode(Image.fromarray(canvas)))
    value = {"background": None, "layers": [], "composite": gradio_client.handle_file(str(path)), "id": None}
    status, *_, details = client.predict(value, None, K, api_name="/neighbours_sketch")
    assert status.startswith("Drawing 280 x 280"), status
    assert neighbour_counts(details) == [K, K]
    blank = write(tmp_path, "blank.png", encode(Image.new("RGBA", (100, 100))))
    value["composite"] = gradio_client.handle_file(str(blank))
    status, *_ = client.predict(value, None, K, api_name="/neighbours_sketch")
    assert status.startswith("⚠️") and "draw a digit" in status


# --- concurrency ---------------------------------------------------------------------------------------------
def test_twenty_concurrent_requests_all_answer_correctly(client, demo_cache: Path, stored: dict,
                                                         tmp_path: Path) -> None:
    """20 different images at once; each answer equals the one the same code gives in this process."""
    backend = DemoBackend.open(demo_cache, warm=False)
    indices = list(stored["thumbs"].index[:20])
    assert len(indices) == 20
    paths = [write(tmp_path, f"c{i}.png", bytes(stored["thumbs"].at[i, "png"])) for i in indices]
    expected = [neighbours(backend, str(p)).details for p in paths]
    start = time.monotonic()
    jobs = [client.submit(gradio_client.handle_file(str(p)), None, K, "auto", api_name="/neighbours") for p in paths]
    answers = [job.result(timeout=max(1.0, 60 - (time.monotonic() - start))) for job in jobs]
    assert time.monotonic() - start < 60
    for answer, want in zip(answers, expected, strict=True):
        assert not answer[0].startswith("⚠️"), answer[0]
        got = answer[-1]
        assert list(got["models"]) == list(want["models"]) == ["analogue", "natural"]
        assert [m["predicted"] for m in got["models"].values()] == [m["predicted"] for m in want["models"].values()]
        for m_got, m_want in zip(got["models"].values(), want["models"].values(), strict=True):
            assert [n["train_pos"] for n in m_got["neighbours"]] == [n["train_pos"] for n in m_want["neighbours"]]
            np.testing.assert_allclose([n["score"] for n in m_got["neighbours"]],
                                       [n["score"] for n in m_want["neighbours"]], rtol=1e-5, atol=1e-12)


def _load(n: int, distinct: int, tmp_path: Path, thumbs) -> list[Path]:
    """n upload files cycling over `distinct` stored test images (distinct=1: n identical requests)."""
    paths = [write(tmp_path, f"load-{i}.png", bytes(thumbs.at[i, "png"])) for i in list(thumbs.index[:distinct])]
    return [paths[i % len(paths)] for i in range(n)]


def concurrent_answers(url: str, paths: list[Path], folder: Path, timeout: float = 240) -> tuple[list, list[str]]:
    """Submit every path at once through one client that downloads the result images (as a browser fetches
    them); returns (answers, errors): an answer or the error text of each request, in order."""
    # httpx's own read timeout (5 s by default) would count a request still queued behind 99 others on a busy
    # machine as failed: the test is about broken responses, so the client waits as long as the job timeout
    client = gradio_client.Client(url, verbose=False, download_files=str(folder), httpx_kwargs={"timeout": timeout})
    answers, errors = [], []
    previous, tempfile.tempdir = tempfile.tempdir, str(folder)  # gradio_client stages every download in a new
    try:  # <tempdir>/<random hex>/ and leaves that folder behind: 2,400 empty folders in /tmp per run otherwise
        jobs = [client.submit(gradio_client.handle_file(str(p)), None, K, "auto", api_name="/neighbours")
                for p in paths]
        for job in jobs:
            try:
                answers.append(job.result(timeout=timeout))
            except Exception as err:  # noqa: BLE001  (count every failure, whatever its type)
                answers.append(None)
                errors.append(f"{type(err).__name__}: {err}")
    finally:
        tempfile.tempdir = previous
    return answers, errors


@pytest.mark.slow
@pytest.mark.parametrize("distinct", [1, 20], ids=["identical", "mixed"])
def test_hundred_concurrent_requests_all_succeed(demo_server: str, demo_cache: Path, stored: dict, tmp_path: Path,
                                                 distinct: int) -> None:
    """100 requests at once, identical or cycling over 20 images: every one answers, with the in-process answer,
    and every result image it names downloads whole (issue 14: 1-4 of 20 identical ones used to fail with
    'peer closed connection without sending complete message body' while another rewrote the same file)."""
    backend = DemoBackend.open(demo_cache, warm=False)
    paths = _load(100, distinct, tmp_path, stored["thumbs"])
    expected = {p: neighbours(backend, str(p)).details for p in set(paths)}
    answers, errors = concurrent_answers(demo_server, paths, tmp_path / "downloads")
    assert not errors, f"{len(errors)} of 100 failed: {errors[:3]}"
    for path, answer in zip(paths, answers, strict=True):
        out, want = named(answer), expected[path]
        got = out["details"]
        for m_got, m_want in zip(got["models"].values(), want["models"].values(), strict=True):
            assert m_got["predicted"] == m_want["predicted"]
            assert [n["train_pos"] for n in m_got["neighbours"]] == [n["train_pos"] for n in m_want["neighbours"]]
        for n in (1, 2):  # the two models' "as the model sees it" images and galleries, downloaded
            assert Image.open(out[f"model{n}_view"]).size[0] >= 8
            gallery = out[f"model{n}_gallery"]
            assert len(gallery) == 1 and Image.open(gallery[0]["image"]).size[0] >= K * TILE  # k neighbours, one file
        assert out["model3_view"] is None and out["model3_gallery"] == []  # a two-model cell


# --- in-process: comparisons, the empty cache, the CLI ------------------------------------------------------
def test_the_tiny_cell_shows_two_models(demo_cache: Path) -> None:
    """tiny's one robust source is both the paper analogue and the best budget: one column for it, not two."""
    backend = DemoBackend.open(demo_cache, warm=False)
    assert len(backend.comparisons) == 1
    cell = backend.default
    assert [(s.role, s.source) for s in cell.sides] == [("analogue", "l2_1.5"), ("natural", "natural")]
    assert cell.sides[0].part == "paper analogue, best budget on digits" and cell.target == "digits"
    assert cell.label == "digits · 40 images · seed 20000000 · 1 blocks · fast, cut-off 0.05"
    assert backend.target_format(cell).channels == 1 and backend.target_format(cell).size == 8
    captions = [e.caption for e in backend.examples(cell.target)]
    assert len(captions) >= 10 and all("#" in c for c in captions[:10])


def test_empty_cache_names_the_command_that_fills_it(tmp_path: Path) -> None:
    backend = DemoBackend.open(tmp_path, warm=False)
    assert backend.empty
    out = neighbours(backend, None)
    assert "rtx precompute --preset demo" in out.status and "rtx precompute --preset demo" in out.details["error"]
    path = write(tmp_path, "x.png", encode(Image.new("L", (8, 8))))
    assert "rtx precompute --preset demo" in neighbours(backend, str(path)).status
    demo = build_demo(tmp_path, backend)
    assert "rtx precompute --preset demo" in str(demo.config)


def test_cli_binds_loopback_by_default() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    argv = demo_command(7999)
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "7999"]


def test_two_methods_give_two_cells_with_their_method_in_the_label(tmp_path: Path) -> None:
    """After `rtx influence --method tracincp` beside `fast`: one choice per method, labels distinct."""
    from tests.helpers.explorer_cache import write_explorer_cache
    from tests.helpers.influence_methods import add_method

    root = write_explorer_cache(tmp_path / "cache")
    add_method(root, "tracincp")
    backend = DemoBackend.open(root, warm=False)
    labels = [c.label for c in backend.comparisons_for("mnist5k")]
    assert len(labels) == 2 and len(set(labels)) == 2, labels
    assert {c.method for c in backend.comparisons} == {"fc-exact", "tracincp"}
    assert all(c.method in c.label for c in backend.comparisons)
    for choice in backend.comparisons:
        assert backend.comparison(choice.label) == choice
        assert [s.source for s in choice.sides] == ["l2_1.5", "natural"]


# --- three models: the paper analogue, a distinct best budget, natural ------------------------------------
def test_outputs_name_three_columns() -> None:
    for n in range(1, COLUMNS + 1):
        assert {f"model{n}_view", f"model{n}_label", f"model{n}_gallery"} <= set(OUTPUT_NAMES)
    assert COLUMNS == 3 and OUTPUT_NAMES[:2] == ("status", "summary") and OUTPUT_NAMES[-1] == "details"


def _column_visible(demo, n: int) -> bool:
    return next(c["props"].get("visible", True) for c in demo.config["components"]
                if c["props"].get("elem_id") == f"model-{n}")


def test_three_model_cell_in_process(three_model_cache: Path, demo_cache: Path, tmp_path: Path) -> None:
    backend = DemoBackend.open(three_model_cache, warm=False)
    [cell] = backend.comparisons
    assert [(s.role, s.source, s.part) for s in cell.sides] == [
        ("analogue", "l2_1.5", "paper analogue"), ("best_budget", BEST_SOURCE, "best budget on digits"),
        ("natural", "natural", "natural")]
    assert cell.side("best_budget").note == BEST_NOTE
    thumbs = backend.thumbs[("digits", "test")]
    path = write(tmp_path, "t.png", bytes(thumbs["png"].iloc[0]))
    out = neighbours(backend, str(path))
    models = out.details["models"]
    assert list(models) == ["analogue", "best_budget", "natural"]
    assert models["best_budget"]["part"] == "best budget on digits" and models["best_budget"]["note"] == BEST_NOTE
    assert models["best_budget"]["source"] == BEST_SOURCE and models["analogue"]["source"] == "l2_1.5"
    # the best budget is the natural model under another name: its column is computed from its own result
    same = ("predicted", "matches", "neighbours")
    assert {k: models["best_budget"][k] for k in same} == {k: models["natural"][k] for k in same}
    assert out.model3_view and len(out.model3_gallery) == 1 and out.model3_gallery[0][1].count("#") == K
    assert out.model3_label
    assert [g[1] for g in out.model2_gallery] == [g[1] for g in out.model3_gallery]
    # the summary compares each robust model's label match with natural's
    for side in ("analogue", "best_budget"):
        diff = models[side]["matches"] - models["natural"]["matches"]
        versus = "as many as natural" if not diff else f"{abs(diff)} {'more' if diff > 0 else 'fewer'} than natural"
        assert f"`{models[side]['source']}`" in out.summary and versus in out.summary
    assert out.summary.count("than natural") + out.summary.count("as many as natural") == 2
    assert _column_visible(build_demo(three_model_cache, backend), 3)
    assert not _column_visible(build_demo(demo_cache, DemoBackend.open(demo_cache, warm=False)), 3)


def test_api_returns_every_side_keyed_by_role(three_model_server: str, three_model_cache: Path,
                                              tmp_path: Path) -> None:
    client = gradio_client.Client(three_model_server, verbose=False, download_files=False)
    backend = DemoBackend.open(three_model_cache, warm=False)
    thumbs = backend.thumbs[("digits", "test")]
    path = write(tmp_path, "t.png", bytes(thumbs["png"].iloc[1]))
    out = named(ask(client, path))
    want = neighbours(backend, str(path)).details
    got = out["details"]
    assert list(got["models"]) == ["analogue", "best_budget", "natural"] and got["cell"] == backend.default.label
    for role, model in got["models"].items():
        assert {k: model[k] for k in ("source", "part", "note", "influence_key", "predicted")} == \
            {k: want["models"][role][k] for k in ("source", "part", "note", "influence_key", "predicted")}
        assert [n["train_pos"] for n in model["neighbours"]] == [n["train_pos"] for n in want["models"][role]["neighbours"]]
    for n in (1, 2, 3):
        assert out[f"model{n}_view"] and len(out[f"model{n}_gallery"]) == 1  # the k neighbours as one picture
    assert out["model3_label"]["label"] == got["models"]["natural"]["predicted_label"]
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[40:240, 130:150] = (0, 0, 0, 255)
    sketch = write(tmp_path, "sketch.png", encode(Image.fromarray(canvas)))
    value = {"background": None, "layers": [], "composite": gradio_client.handle_file(str(sketch)), "id": None}
    *_, details = client.predict(value, None, K, api_name="/neighbours_sketch")
    assert list(details["models"]) == ["analogue", "best_budget", "natural"] and neighbour_counts(details) == [K] * 3
