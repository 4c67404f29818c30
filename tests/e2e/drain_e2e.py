"""troupe-server end to end: SIGTERM / SIGINT drain. Running requests finish within the drain
timeout while /health says 503 (on a kept-alive connection) and new connections are refused;
requests that outlast the drain timeout end with an error event; the exit status is 0."""

import json
import signal
import socket
import threading
import time

from e2e_support import Server, arguments, check, send, stream, wait_until


def run_streams(server, payload, count):
    results = [None] * count

    def client(index):
        results[index] = stream(server, "/v1/completions", payload)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


def test_drain_lets_requests_finish(args):
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "4",
                "--drain-timeout", "20") as server:
        kept = server.connection()
        check(send(kept, "GET", "/health")[0] == 200, "healthy before")
        payload = {"prompt": "drain", "max_tokens": 60, "ignore_eos": True}
        results, threads = run_streams(server, payload, 3)
        wait_until(lambda: server.metrics()["troupe_requests_running"] == 3,
                   what="three running requests")
        server.signal(signal.SIGTERM)
        time.sleep(0.2)
        status, _, body = send(kept, "GET", "/health")
        check(status == 503 and json.loads(body)["status"] == "draining", f"{status} {body}")
        status, _, body = send(kept, "POST", "/v1/completions",
                               json.dumps({"prompt": "late", "max_tokens": 2}))
        check(status == 503 and json.loads(body)["error"]["type"] == "service_unavailable",
              f"{status} {body}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        check(refused, "new connections are refused while draining")
        for thread in threads:
            thread.join(30)
        for status, _, events, done in results:
            check(status == 200 and done, f"stream {status}")
            check(events[-1]["choices"][0]["finish_reason"] == "length", events[-1])
        check(server.wait(20) == 0, f"exit status {server.process.returncode}")
        kept.close()


def test_drain_timeout_cancels(args):
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "4",
                "--drain-timeout", "0.3") as server:
        payload = {"prompt": "too long to finish", "max_tokens": 900, "ignore_eos": True}
        results, threads = run_streams(server, payload, 2)
        wait_until(lambda: server.metrics()["troupe_requests_running"] == 2,
                   what="two running requests")
        started = time.monotonic()
        server.signal(signal.SIGINT)
        for thread in threads:
            thread.join(10)
        check(time.monotonic() - started < 5, "cancelled at the drain timeout")
        for status, _, events, done in results:
            check(status == 200 and done, f"stream {status}")
            last = events[-1]
            check("error" in last and last["error"]["code"] == "cancelled", last)
        check(server.wait(10) == 0, f"exit status {server.process.returncode}")


def main():
    args = arguments()
    test_drain_lets_requests_finish(args)
    print("ok SIGTERM drains running requests, exit 0")
    test_drain_timeout_cancels(args)
    print("ok SIGINT cancels what outlasts the drain timeout, exit 0")


if __name__ == "__main__":
    main()
