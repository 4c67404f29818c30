"""Load measurement (not a ctest test): N concurrent streaming clients against a running
troupe-server; reports how many were answered, time to first token (client side: from sending
the request to the first content event) percentiles, and the HTTP threads' share of the
server's CPU over the run (troupe_http_cpu_seconds_total / troupe_process_cpu_seconds_total
deltas from /metrics). Stdlib only.

  python3 tests/e2e/stream_load.py --port 8080 --clients 32 --max-tokens 64 [--rounds 2]
"""

import argparse
import http.client
import json
import threading
import time

from e2e_support import parse_metrics


def metrics(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    values = parse_metrics(connection.getresponse().read().decode())
    connection.close()
    return values


def one_client(port, payload, result, key):
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    connection.request("POST", "/v1/chat/completions", body=json.dumps(payload), headers=headers)
    response = connection.getresponse()
    result["status"] = response.status
    tokens = 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            if line == "data: [DONE]":
                result["done"] = True
            continue
        event = json.loads(line[6:])
        choices = event.get("choices") or []
        if choices and choices[0].get("delta", {}).get("content"):
            if "ttft" not in result:
                result["ttft"] = time.monotonic() - started
            tokens += 1
        if event.get("usage"):
            result["completion_tokens"] = event["usage"]["completion_tokens"]
    result["seconds"] = time.monotonic() - started
    connection.close()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()

    before = metrics(args.port)
    results = []
    wall = time.monotonic()
    for round_index in range(args.rounds):
        batch = [{} for _ in range(args.clients)]
        threads = []
        for index, result in enumerate(batch):
            payload = {"messages": [{"role": "user",
                                     "content": f"Client {index} round {round_index}: tell me "
                                                "a short story about a lighthouse."}],
                       "max_tokens": args.max_tokens, "temperature": 0.7, "seed": index,
                       "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}}
            threads.append(threading.Thread(target=one_client,
                                            args=(args.port, payload, result, args.api_key)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results += batch
    wall = time.monotonic() - wall
    after = metrics(args.port)

    answered = [r for r in results if r.get("status") == 200 and r.get("done")]
    ttfts = [r["ttft"] for r in answered if "ttft" in r]
    tokens = sum(r.get("completion_tokens", 0) for r in answered)
    http_cpu = after["troupe_http_cpu_seconds_total"] - before["troupe_http_cpu_seconds_total"]
    process_cpu = (after["troupe_process_cpu_seconds_total"]
                   - before["troupe_process_cpu_seconds_total"])
    print(f"clients {args.clients} x rounds {args.rounds}: answered {len(answered)}/"
          f"{len(results)}, {tokens} tokens in {wall:.2f} s ({tokens / wall:.1f} tok/s)")
    if ttfts:
        print(f"TTFT p50 {percentile(ttfts, 0.5) * 1000:.0f} ms, p90 "
              f"{percentile(ttfts, 0.9) * 1000:.0f} ms, p99 {percentile(ttfts, 0.99) * 1000:.0f} "
              f"ms, max {max(ttfts) * 1000:.0f} ms")
    print(f"CPU during the run: HTTP threads {http_cpu:.3f} s of process {process_cpu:.3f} s = "
          f"{100 * http_cpu / process_cpu if process_cpu else 0:.2f} %")
    return 0 if len(answered) == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
