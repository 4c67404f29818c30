"""troupe-server end to end: model reloads under load lose no request. POST /admin/reload
(generation 2, API key required), then SIGHUP (generation 3), while clients keep sending; a
reload of a missing file is refused with 400 and the model keeps serving."""

import json
import signal
import threading
import time

from e2e_support import Server, arguments, check, stream, wait_until

AUTH = {"Authorization": "Bearer reload-key"}


def generation(server):
    status, _, body = server.request("GET", "/health")
    return json.loads(body).get("generation") if status == 200 else None


def main():
    args = arguments()
    with Server(args.server, args.model, "--backend", "sim", "--sim-time-scale", "2",
                "--api-keys", "reload-key") as server:
        payload = {"prompt": "reload me", "max_tokens": 20, "ignore_eos": True}
        stop = threading.Event()
        outcomes = []
        lock = threading.Lock()

        def client(index):
            while not stop.is_set():
                if index % 2:
                    result = stream(server, "/v1/completions", payload, AUTH)
                    ok = result[0] == 200 and result[3] and \
                        result[2][-1]["choices"][0]["finish_reason"] == "length"
                else:
                    status, _, body = server.post_json("/v1/completions", payload, AUTH)
                    ok = status == 200 and body["usage"]["completion_tokens"] == 20
                    result = (status, body)
                with lock:
                    outcomes.append((ok, result))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        status, _, body = server.request("POST", "/admin/reload", "")
        check(status == 401, f"reload without a key: {status}")
        status, _, body = server.post_json("/admin/reload", {}, AUTH)
        check(status == 200 and body["generation"] == 2, body)
        status, _, body = server.post_json("/admin/reload", {"model": "/no/such/model.gguf"}, AUTH)
        check(status == 400 and body["error"]["param"] == "model", body)
        check("/no/such/model.gguf" in body["error"]["message"], body)
        time.sleep(0.3)
        server.signal(signal.SIGHUP)
        wait_until(lambda: generation(server) == 3, what="generation 3 after SIGHUP")
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)

        failed = [result for ok, result in outcomes if not ok]
        check(not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:2]}")
        check(len(outcomes) >= 12, f"only {len(outcomes)} requests ran")
        metrics = server.metrics()
        check(metrics["troupe_model_generation"] == 3, metrics)
        check(metrics["troupe_requests_finished_total"] == len(outcomes), metrics)
        print(f"ok reloads under load: {len(outcomes)} requests, none lost")


if __name__ == "__main__":
    main()
