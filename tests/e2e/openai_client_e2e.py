"""troupe-server with the official `openai` Python client (run in the venv made by
scripts/setup-e2e): completions and chat, streaming and not; errors surface as the client's own
exceptions (BadRequestError, AuthenticationError, NotFoundError)."""

import openai

from e2e_support import Server, arguments, check

KEY = "openai-e2e-key"


def main():
    args = arguments()
    with Server(args.server, args.model, "--api-keys", KEY) as server:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY,
                               max_retries=0, timeout=30)
        models = client.models.list()
        check([m.id for m in models.data] == ["tiny"], models)

        completion = client.completions.create(model="tiny", prompt="Once upon a time",
                                               max_tokens=8, temperature=0,
                                               extra_body={"ignore_eos": True})
        check(completion.usage.completion_tokens == 8, completion)
        check(completion.choices[0].finish_reason == "length", completion)
        pieces = list(client.completions.create(model="tiny", prompt="Once upon a time",
                                                max_tokens=8, temperature=0, stream=True,
                                                extra_body={"ignore_eos": True}))
        check("".join(p.choices[0].text for p in pieces) == completion.choices[0].text, pieces)

        messages = [{"role": "user", "content": "Say hello"}]
        chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6,
                                              temperature=0, extra_body={"ignore_eos": True})
        check(chat.choices[0].message.role == "assistant", chat)
        check(chat.usage.completion_tokens == 6, chat)
        chunks = list(client.chat.completions.create(
            model="tiny", messages=messages, max_tokens=6, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        check(chunks[0].choices[0].delta.role == "assistant", chunks[0])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check(text == chat.choices[0].message.content, f"{text!r}")
        check(chunks[-1].usage.completion_tokens == 6, chunks[-1])

        try:
            client.chat.completions.create(model="no-such-model", messages=messages)
            check(False, "unknown model accepted")
        except openai.BadRequestError as error:
            check(error.status_code == 400 and error.body["code"] == "model_not_found",
                  error.body)
        try:
            client.completions.create(model="tiny", prompt="x", temperature=7)
            check(False, "temperature 7 accepted")
        except openai.BadRequestError as error:
            check(error.body["param"] == "temperature", error.body)
        wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="wrong",
                              max_retries=0)
        try:
            wrong.models.list()
            check(False, "wrong key accepted")
        except openai.AuthenticationError as error:
            check(error.status_code == 401, error)
        print(f"ok openai {openai.__version__}: completions and chat, streaming and not, errors")


if __name__ == "__main__":
    main()
