"""troupe-server end to end: both endpoints streaming and not, the other routes, every error
path of the API (shape and status), limits, keep-alive, idle timeout and metrics. A tiny model on
the cpu backend; API keys on."""

import json
import socket
import time

from e2e_support import (Server, arguments, check, raw_exchange, read_sse, send, stream)

KEY = "test-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


def error_of(status, body, expected_status, param=None, code=None):
    check(status == expected_status, f"status {status}, expected {expected_status}: {body}")
    check(set(body) == {"error"}, f"error body {body}")
    error = body["error"]
    check(set(error) == {"message", "type", "param", "code"}, f"error fields {error}")
    check(isinstance(error["message"], str) and error["message"], "empty message")
    if param is not None:
        check(error["param"] == param, f"param {error['param']!r}, expected {param!r}")
    if code is not None:
        check(error["code"] == code, f"code {error['code']!r}, expected {code!r}")
    return error


def test_routes(server):
    status, _, body = server.request("GET", "/health")
    check(status == 200 and json.loads(body)["status"] == "ok", body)
    status, _, models = server.post_json("/v1/models", {}, AUTH)  # POST on a GET route
    error_of(status, models, 405, code="method_not_allowed")
    status, _, body = server.request("GET", "/v1/models", headers=AUTH)
    models = json.loads(body)
    check(status == 200 and models["object"] == "list", body)
    check([m["id"] for m in models["data"]] == ["tiny"], body)
    check(models["data"][0]["max_model_len"] == 2048, body)

    text = "Hello world, this is troupe."
    status, _, tokens = server.post_json("/tokenize", {"prompt": text,
                                                       "add_special_tokens": False}, AUTH)
    check(status == 200 and tokens["count"] == len(tokens["tokens"]) > 0, tokens)
    status, _, back = server.post_json("/detokenize", {"tokens": tokens["tokens"]}, AUTH)
    check(status == 200 and back["prompt"] == text, f"round trip gave {back}")
    status, _, chat_tokens = server.post_json(
        "/tokenize", {"messages": [{"role": "user", "content": "hi"}]}, AUTH)
    check(status == 200 and chat_tokens["count"] > 3, chat_tokens)
    status, _, body = server.post_json("/detokenize", {"tokens": [10 ** 6]}, AUTH)
    error_of(status, body, 400, param="tokens")


def test_completions(server):
    payload = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0,
               "ignore_eos": True}
    status, _, first = server.post_json("/v1/completions", payload, AUTH)
    check(status == 200, first)
    check(first["object"] == "text_completion" and first["id"].startswith("cmpl-"), first)
    check(first["model"] == "tiny", first)
    choice = first["choices"][0]
    check(choice["finish_reason"] == "length" and choice["logprobs"] is None, choice)
    check(first["usage"]["completion_tokens"] == 12, first["usage"])
    check(first["usage"]["total_tokens"] == first["usage"]["prompt_tokens"] + 12, first["usage"])
    check(first["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0, first["usage"])

    # Greedy: the same text again, and streamed piecewise.
    status, _, again = server.post_json("/v1/completions", payload, AUTH)
    check(again["choices"][0]["text"] == choice["text"], "greedy runs differ")
    status, headers, events, done = stream(server, "/v1/completions", payload, AUTH)
    check(status == 200 and done, f"stream status {status}")
    check(headers["content-type"].startswith("text/event-stream"), headers)
    check(all(e["object"] == "text_completion" for e in events), events)
    check(len({e["id"] for e in events}) == 1, "ids differ within a stream")
    streamed = "".join(e["choices"][0]["text"] for e in events)
    check(streamed == choice["text"], f"streamed {streamed!r} != {choice['text']!r}")
    finishes = [e["choices"][0]["finish_reason"] for e in events]
    check(finishes[-1] == "length" and all(f is None for f in finishes[:-1]), finishes)

    # Prompt as token ids; default max_tokens is 16.
    status, _, ids = server.post_json("/v1/completions",
                                      {"prompt": [5, 6, 7], "ignore_eos": True}, AUTH)
    check(status == 200 and ids["usage"]["prompt_tokens"] == 3, ids)
    check(ids["usage"]["completion_tokens"] == 16, ids["usage"])

    # Stop string: the text ends before the first match, finish_reason stop.
    long_payload = dict(payload, max_tokens=40)
    status, _, long_answer = server.post_json("/v1/completions", long_payload, AUTH)
    text = long_answer["choices"][0]["text"]
    stop = text[len(text) // 2:len(text) // 2 + 3]
    check(len(stop) == 3, f"text too short for a stop test: {text!r}")
    status, _, stopped = server.post_json("/v1/completions", dict(long_payload, stop=[stop]), AUTH)
    check(stopped["choices"][0]["text"] == text[:text.index(stop)],
          f"stop {stop!r}: {stopped['choices'][0]['text']!r} from {text!r}")
    check(stopped["choices"][0]["finish_reason"] == "stop", stopped)

    # Logprobs: one entry per token, `logprobs` alternatives each.
    status, _, with_logprobs = server.post_json(
        "/v1/completions", dict(payload, max_tokens=5, logprobs=2), AUTH)
    logprobs = with_logprobs["choices"][0]["logprobs"]
    check(len(logprobs["tokens"]) == 5 == len(logprobs["token_logprobs"]), logprobs)
    check(all(len(top) == 2 for top in logprobs["top_logprobs"]), logprobs)
    check(all(lp <= 0 for lp in logprobs["token_logprobs"]), logprobs)
    check(logprobs["text_offset"][0] == 0, logprobs)


def test_chat(server):
    payload = {"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
               "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    status, _, answer = server.post_json("/v1/chat/completions", payload, AUTH)
    check(status == 200 and answer["object"] == "chat.completion", answer)
    message = answer["choices"][0]["message"]
    check(message["role"] == "assistant" and isinstance(message["content"], str), message)
    check(answer["usage"]["completion_tokens"] == 10, answer["usage"])

    status, _, events, done = stream(server, "/v1/chat/completions",
                                     dict(payload, stream_options={"include_usage": True}), AUTH)
    check(status == 200 and done, status)
    check(events[0]["choices"][0]["delta"].get("role") == "assistant", events[0])
    check(all(e["object"] == "chat.completion.chunk" for e in events), events)
    usage_event = events[-1]
    check(usage_event["choices"] == [], usage_event)
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"]:
        check(usage_event["usage"][field] == answer["usage"][field], usage_event)
    last = events[-2]["choices"][0]
    check(last["finish_reason"] == "length" and last["delta"] == {}, last)
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    check(content == message["content"], f"streamed {content!r} != {message['content']!r}")

    status, _, with_logprobs = server.post_json(
        "/v1/chat/completions", dict(payload, max_tokens=4, logprobs=True, top_logprobs=3), AUTH)
    entries = with_logprobs["choices"][0]["logprobs"]["content"]
    check(len(entries) == 4 and all(len(e["top_logprobs"]) == 3 for e in entries), entries)


def test_errors(server):
    def post(path, body, headers=AUTH):
        status, _, raw = server.request("POST", path, body, headers)
        return status, json.loads(raw)

    error_of(*post("/v1/completions", "{not json"), 400)
    error_of(*post("/v1/completions", "[1, 2]"), 400)
    error_of(*post("/v1/completions", json.dumps({"prompt": 5})), 400, param="prompt")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "max_tokens": "many"})), 400,
             param="max_tokens")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "max_tokens": 2.5})), 400,
             param="max_tokens")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "temperature": 3})), 400,
             param="temperature")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "top_p": 0})), 400,
             param="top_p")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "n": 2})), 400, param="n")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x", "model": "gpt-4"})), 400,
             param="model", code="model_not_found")
    error_of(*post("/v1/completions", json.dumps({"max_tokens": 3})), 400, param="prompt")
    error_of(*post("/v1/chat/completions", json.dumps({"messages": []})), 400, param="messages")
    error_of(*post("/v1/chat/completions",
                   json.dumps({"messages": [{"role": "wizard", "content": "x"}]})), 400,
             param="messages[0].role")
    error_of(*post("/v1/chat/completions",
                   json.dumps({"messages": [{"role": "user", "content": "a"},
                                            {"role": "user"}]})), 400,
             param="messages[1].content")
    # Longer than the context of 2048 tokens: by token ids, by tokens, and by bytes at once.
    error_of(*post("/v1/completions", json.dumps({"prompt": list(range(5, 3005))})), 400,
             param="prompt", code="context_length_exceeded")
    error_of(*post("/v1/completions", json.dumps({"prompt": "hello " * 3000})), 400,
             param="prompt")
    started = time.monotonic()
    error_of(*post("/v1/completions", json.dumps({"prompt": "x" * 60_000})), 400,
             param="prompt", code="context_length_exceeded")
    check(time.monotonic() - started < 2.0, "a prompt far beyond the context is refused quickly")

    # API keys: missing or wrong -> 401; /health and /metrics stay open.
    error_of(*post("/v1/completions", json.dumps({"prompt": "x"}), headers={}), 401,
             code="invalid_api_key")
    error_of(*post("/v1/completions", json.dumps({"prompt": "x"}),
                   headers={"Authorization": "Bearer test-key-2"}), 401)
    error_of(*post("/admin/reload", "", headers={}), 401)
    check(server.request("GET", "/metrics")[0] == 200, "metrics need no key")

    status, _, raw = server.request("GET", "/v2/nothing")
    error_of(status, json.loads(raw), 404)
    status, headers, raw = server.request("GET", "/v1/completions", headers=AUTH)
    error_of(status, json.loads(raw), 405)
    check(headers.get("allow") == "POST", headers)


def test_limits(server):
    port = server.port
    # A body over the limit (64 KiB here) is answered 413 while the client is still sending.
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {4 << 20}\r\n\r\n").encode()
    started = time.monotonic()
    answer = raw_exchange(port, head + b"{" * 1000, chunks=[b"x" * 65536] * 6, pause=0.05)
    check(answer.startswith(b"HTTP/1.1 413"), f"got {answer[:80]!r}")
    check(b"request_too_large" in answer, answer)
    check(time.monotonic() - started < 5.0, "413 answered promptly")
    # A chunked body over the limit too.
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"10000\r\n" + b"y" * 65536 + b"\r\n"
    answer = raw_exchange(port, head, chunks=[chunk] * 4, pause=0.02)
    check(answer.startswith(b"HTTP/1.1 413"), f"got {answer[:80]!r}")
    # Oversized header fields and target: 431.
    big = "a" * 20000
    answer = raw_exchange(port, f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n".encode())
    check(answer.startswith(b"HTTP/1.1 431"), f"got {answer[:80]!r}")
    answer = raw_exchange(port, f"GET /{big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    check(answer.startswith(b"HTTP/1.1 431"), f"got {answer[:80]!r}")
    # Not HTTP at all: 400.
    answer = raw_exchange(port, b"HELLO THERE\r\n\r\n")
    check(answer.startswith(b"HTTP/1.1 400"), f"got {answer[:80]!r}")
    # Idle (1 s here): a connection that sends nothing is closed; one that stalls mid-request
    # gets 408.
    started = time.monotonic()
    check(raw_exchange(port, b"", read_timeout=5) == b"", "idle connection closed silently")
    check(0.8 < time.monotonic() - started < 4.0, "closed after the idle timeout")
    answer = raw_exchange(port, b"GET /health HTTP/1.1\r\nHost:", read_timeout=5)
    check(answer.startswith(b"HTTP/1.1 408"), f"got {answer[:80]!r}")


def test_keep_alive(server):
    connection = server.connection()
    try:
        status, _, _ = send(connection, "GET", "/health")
        first_socket = connection.sock
        status2, _, body = send(connection, "POST", "/v1/completions",
                                json.dumps({"prompt": "a", "max_tokens": 2}), AUTH)
        connection.request("POST", "/v1/chat/completions", headers=dict(AUTH),
                           body=json.dumps({"messages": [{"role": "user", "content": "x"}],
                                            "max_tokens": 3, "stream": True}))
        events, done = read_sse(connection.getresponse())
        status4, _, _ = send(connection, "GET", "/health")
        check((status, status2, status4) == (200, 200, 200) and done, "keep-alive answers")
        check(connection.sock is first_socket, "the connection was reused")
    finally:
        connection.close()


def test_metrics(server):
    metrics = server.metrics()
    for name in ["troupe_requests_running", "troupe_requests_waiting",
                 "troupe_kv_cache_usage_ratio", "troupe_prefix_cache_hit_rate",
                 "troupe_prompt_tokens_total", "troupe_generation_tokens_total",
                 "troupe_queue_time_seconds_count", "troupe_time_to_first_token_seconds_count",
                 "troupe_inter_token_latency_seconds_count",
                 "troupe_e2e_request_latency_seconds_count", "troupe_preemptions_total",
                 "troupe_rejections_total", "troupe_http_cpu_seconds_total",
                 "troupe_process_cpu_seconds_total"]:
        check(name in metrics, f"{name} missing from /metrics")
    check(all(name.startswith("troupe_") for name in metrics), "every name has the prefix")
    check(metrics["troupe_generation_tokens_total"] >= 12 * 3 + 16 + 10, metrics)
    check(metrics["troupe_e2e_request_latency_seconds_count"] >= 8, metrics)
    check(0 < metrics["troupe_http_cpu_seconds_total"] <= metrics[
        "troupe_process_cpu_seconds_total"], "CPU split")
    check(metrics['troupe_http_responses_total{route="/v1/completions",status="400"}'] >= 10,
          "400s counted")
    check(metrics['troupe_http_responses_total{route="/v1/completions",status="401"}'] >= 2,
          "401s counted")


def main():
    args = arguments()
    with Server(args.server, args.model, "--api-keys", f"{KEY},other-key", "--max-body-bytes",
                str(64 << 10), "--max-header-bytes", "8192", "--idle-timeout", "1") as server:
        for test in [test_routes, test_completions, test_chat, test_errors, test_limits,
                     test_keep_alive, test_metrics]:
            test(server)
            print(f"ok {test.__name__}")


if __name__ == "__main__":
    main()
