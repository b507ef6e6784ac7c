"""The HTTP API: the producer API (`tasks`) over HTTP, for services in any language.

    voicemail apikeys add billing --accounts 'acme-*'   # prints the key once
    voicemail serve --port 8000
    curl -H "Authorization: Bearer $KEY" -X POST localhost:8000/v1/accounts/acme-1/reads

- `app`: the FastAPI app factory and `serve` (uvicorn), with the access log;
- `jobs`, `bulks`: the routes, thin wrappers round `tasks.producer` and `tasks.bulk`;
- `auth`: who is calling (`Authorization: Bearer`), and which accounts they may touch;
- `keystore`: API keys in Redis, stored as their sha256 (FastAPI-free, for `apikeys`);
- `problems`: every error as RFC 9457 problem+json, typed like the Python API's exceptions.

FastAPI and uvicorn come with the `http` extra; only `app`, `auth`, `jobs`, `bulks`
and `problems` need them.
Layer: just below `cli`, which imports it for `voicemail serve` and `voicemail apikeys`.
May import `tasks` and `worker`; nothing else imports it.
"""
