"""The Graph client the SDK scripts build: the official SDK with a fixed
bearer token and presenced's base URL, the only change a Graph user makes;
optionally with a middleware that gzips request bodies, added through the
SDK's own extension point (the Python SDK has no compression handler of its
own, unlike the .NET, Java and JavaScript ones)."""

import gzip

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware.middleware import BaseMiddleware
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory


class StaticToken(AccessTokenProvider):
    def __init__(self, token):
        self.token = token

    async def get_authorization_token(self, uri, additional_authentication_context=None):
        return self.token

    def get_allowed_hosts_validator(self):
        return AllowedHostsValidator([])


class GzipBodies(BaseMiddleware):
    """Sends every request body compressed with gzip, and records the
    Content-Encoding of every answer (httpx asks for gzip and undoes it)."""

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.answered_encodings = []

    async def send(self, request, transport):
        body = await request.aread()
        if body:
            compressed = gzip.compress(body)
            headers = httpx.Headers(request.headers)
            headers["Content-Encoding"] = "gzip"
            headers["Content-Length"] = str(len(compressed))
            request = httpx.Request(
                request.method,
                request.url,
                headers=headers,
                content=compressed,
                extensions=request.extensions,
            )
            self.sent += 1
        response = await super().send(request, transport)
        self.answered_encodings.append(response.headers.get("content-encoding"))
        return response


def graph_client(base_url, token, middleware=None):
    """The client; `middleware` goes after the SDK's default handlers."""
    client = None
    if middleware is not None:
        handlers = KiotaClientFactory.get_default_middleware(None) + [middleware]
        client = GraphClientFactory.create_with_custom_middleware(handlers)
    adapter = GraphRequestAdapter(
        BaseBearerTokenAuthenticationProvider(StaticToken(token)), client=client
    )
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)
