"""troupe-server end to end: more requests than the scheduler holds get 429 with Retry-After
and OpenAI's error shape; every accepted request still finishes whole; the server then serves
normally (the sim backend, slowed down, 2 running + 2 queued at most). Requests past their
deadline end with 504, or with an error event once streaming."""

import threading

from e2e_support import Server, arguments, check, stream, wait_until


def test_deadline(args):
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "4",
                "--request-timeout", "0.3") as server:
        payload = {"prompt": "slow", "max_tokens": 400, "ignore_eos": True}
        status, _, body = server.post_json("/v1/completions", payload)
        check(status == 504 and body["error"]["code"] == "deadline_exceeded", f"{status} {body}")
        status, _, events, done = stream(server, "/v1/completions", payload)
        check(status == 200 and done, status)
        check(events[-1]["error"]["code"] == "deadline_exceeded", events[-1])
        wait_until(lambda: server.metrics()["troupe_kv_cache_blocks_in_use"] == 0,
                   timeout=5, what="every block freed")
        print("ok deadline: 504, or an error event when streaming")


def main():
    args = arguments()
    test_deadline(args)
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "4",
                "--max-seqs", "2", "--max-queued", "2") as server:
        payload = {"prompt": "overload", "max_tokens": 40, "ignore_eos": True}
        results = [None] * 12
        barrier = threading.Barrier(len(results))

        def client(index):
            barrier.wait()
            results[index] = stream(server, "/v1/completions", payload)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(results))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        accepted = [r for r in results if r[0] == 200]
        rejected = [r for r in results if r[0] == 429]
        check(len(accepted) + len(rejected) == len(results),
              f"only 200 or 429: {[r[0] for r in results]}")
        # At least the queue's two are accepted; at most 2 running + 2 queued at once.
        check(len(accepted) >= 2 and len(rejected) >= 1, f"{len(accepted)} accepted")
        for status, headers, events, done in accepted:
            check(done and events[-1]["choices"][0]["finish_reason"] == "length", events[-1])
            check(len("".join(e["choices"][0]["text"] for e in events)) > 0, "text")
        for status, headers, body, _ in rejected:
            check(headers.get("retry-after") == "1", headers)
            check(body["error"]["type"] == "rate_limit_error", body)
            check(body["error"]["code"] == "queue_full", body)

        metrics = wait_until(
            lambda: (m := server.metrics())["troupe_kv_cache_blocks_in_use"] == 0 and m,
            timeout=5, what="every block freed")
        check(metrics["troupe_rejections_total"] == len(rejected), metrics)
        check(metrics['troupe_http_responses_total{route="/v1/completions",status="429"}']
              == len(rejected), metrics)
        check(metrics["troupe_requests_finished_total"] == len(accepted), metrics)
        status, _, answer = server.post_json("/v1/completions", dict(payload, max_tokens=2))
        check(status == 200 and answer["usage"]["completion_tokens"] == 2, answer)
        print(f"ok overload: {len(accepted)} served, {len(rejected)} refused with 429")


if __name__ == "__main__":
    main()
