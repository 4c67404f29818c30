"""Helpers of the troupe-server end-to-end tests (stdlib only): start a real troupe-server on an
ephemeral loopback port, talk HTTP/1.1 to it, read SSE streams and /metrics.

Every script takes: --server PATH (troupe-server) --model PATH (a GGUF file, e.g. a tiny
model from troupe-tiny-model) and optionally --runtime actors|threads (default threads), which
every Server the script starts uses."""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def arguments():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--runtime", default="threads", choices=["actors", "threads"])
    args = parser.parse_args()
    Server.default_runtime = args.runtime
    return args


class Server:
    """A troupe-server process; use as a context manager. extra: more flags."""

    default_runtime = "threads"

    def __init__(self, binary, model, *extra, runtime=None, ready=True):
        runtime = runtime or Server.default_runtime
        self.directory = tempfile.TemporaryDirectory(prefix="troupe-e2e-")
        self.port_file = os.path.join(self.directory.name, "port")
        self.log_path = os.path.join(self.directory.name, "server.log")
        self.command = [binary, "--model", model, "--runtime", runtime, "--host", "127.0.0.1",
                        "--port", "0", "--port-file", self.port_file, "--backend-threads", "1",
                        *extra]
        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = self._wait_for_port()
        if ready:
            self.wait_ready()

    def _wait_for_port(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"troupe-server exited ({self.process.returncode}):\n"
                                     + self.output())
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise AssertionError("troupe-server did not write its port:\n" + self.output())

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _, _ = self.request("GET", "/health")
            if status == 200:
                return
            time.sleep(0.02)
        raise AssertionError("troupe-server never became healthy:\n" + self.output())

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One request on a fresh connection: (status, headers dict, body bytes)."""
        connection = self.connection(timeout)
        try:
            return send(connection, method, path, body, headers)
        finally:
            connection.close()

    def post_json(self, path, payload, headers=None):
        status, response_headers, body = self.request("POST", path, json.dumps(payload), headers)
        return status, response_headers, json.loads(body) if body else None

    def metrics(self):
        status, _, body = self.request("GET", "/metrics")
        assert status == 200, status
        return parse_metrics(body.decode())

    def signal(self, number):
        self.process.send_signal(number)

    def wait(self, timeout=30):
        return self.process.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if exc[0] is not None:
            sys.stderr.write("---- server log ----\n" + self.output())
        self.log.close()
        self.directory.cleanup()
        return False


def send(connection, method, path, body=None, headers=None):
    headers = dict(headers or {})
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def read_sse(response):
    """Reads an SSE stream to its end: (list of parsed JSON events, saw [DONE])."""
    events, done = [], False
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line.startswith("data: "):
            assert line == "", f"unexpected SSE line {line!r}"
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        assert not done, "event after [DONE]"
        events.append(json.loads(data))
    return events, done


def stream(server, path, payload, headers=None):
    """POSTs a streaming request and reads it all: (status, headers, events, done)."""
    connection = server.connection()
    try:
        connection.request("POST", path, body=json.dumps(dict(payload, stream=True)),
                           headers=dict(headers or {}, **{"Content-Type": "application/json"}))
        response = connection.getresponse()
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            return response.status, response_headers, json.loads(response.read()), False
        events, done = read_sse(response)
        return response.status, response_headers, events, done
    finally:
        connection.close()


def parse_metrics(text):
    """{name_with_labels: float} of a Prometheus text exposition."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def raw_exchange(port, data, read_timeout=5.0, chunks=None, pause=0.0):
    """Sends raw bytes (then each of chunks, pausing between) and returns what the server
    answered before closing or the timeout. Sending stops quietly when the server closed."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(read_timeout)
    received = b""
    try:
        sock.sendall(data)
        for chunk in chunks or []:
            time.sleep(pause)
            try:
                sock.sendall(chunk)
            except OSError:
                break
        while True:
            try:
                part = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not part:
                break
            received += part
    finally:
        sock.close()
    return received


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)
