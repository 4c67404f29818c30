"""troupe-server end to end: a client that disconnects cancels its request, whether it is
streaming, waiting for a non-streaming answer, or still queued; every KV block comes back
(read through /metrics). The sim backend (slowed down) keeps requests running long enough."""

import json
import socket
import time

from e2e_support import Server, arguments, check, wait_until


def open_request(port, payload, path="/v1/completions"):
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def read_some_events(sock, count):
    sock.settimeout(10)
    received = b""
    while received.count(b"data: ") < count:
        part = sock.recv(65536)
        check(part, "server closed a live stream")
        received += part
    check(received.startswith(b"HTTP/1.1 200"), received[:80])


def main():
    args = arguments()
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "4",
                "--max-seqs", "4") as server:
        long_request = {"prompt": "tell me a long story", "max_tokens": 1500, "ignore_eos": True}
        streams = [open_request(server.port, dict(long_request, stream=True)) for _ in range(3)]
        chat_stream = open_request(server.port, {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1500,
            "ignore_eos": True, "stream": True}, "/v1/chat/completions")
        for sock in streams + [chat_stream]:
            read_some_events(sock, 3)
        # Four running (max-seqs 4): these two wait in the queue, one streaming, one not.
        queued = [open_request(server.port, dict(long_request, stream=True)),
                  open_request(server.port, long_request)]
        metrics = wait_until(lambda: (m := server.metrics())["troupe_requests_waiting"] == 2 and m,
                             what="two queued requests")
        check(metrics["troupe_requests_running"] == 4, metrics)
        check(metrics["troupe_kv_cache_blocks_in_use"] > 0, metrics)

        started = time.monotonic()
        for sock in queued + streams + [chat_stream]:
            sock.close()
        # The non-streaming one that is running: admitted, then closed while waiting.
        waiting = open_request(server.port, long_request)
        wait_until(lambda: server.metrics()["troupe_requests_running"] == 1,
                   what="the non-streaming request running alone")
        waiting.close()
        metrics = wait_until(
            lambda: (m := server.metrics())["troupe_requests_running"] == 0
            and m["troupe_requests_waiting"] == 0 and m["troupe_kv_cache_blocks_in_use"] == 0
            and m, timeout=10, what="every request cancelled and every block freed")
        check(time.monotonic() - started < 5, "cancelled well before the generations could end")
        check(metrics["troupe_requests_cancelled_total"] == 7, metrics)
        check(metrics["troupe_requests_finished_total"] == 0, metrics)
        # The server goes on serving.
        status, _, answer = server.post_json("/v1/completions",
                                             {"prompt": "again", "max_tokens": 3})
        check(status == 200 and answer["usage"]["completion_tokens"] == 3, answer)
        print("ok disconnects cancel (7 requests), every KV block freed")


if __name__ == "__main__":
    main()
