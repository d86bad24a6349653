"""The Python client (client/, installed as labelstore_client) and the spec must not drift: every operationId
of app/openapi/api.yaml has exactly one client method, no client method names an operation the spec dropped,
and each method sends the HTTP method and path its operation declares.

Handwritten, not generated: the client's value is what a generator would not give (typed results named for
people, iterators that page, upload_directory's resume and SAS refresh, secrets kept out of repr); the spec is
not shipped inside the client package, so generating at build time would tie `pip install ./client` to this
repository. This test is what keeps the handwritten methods honest."""
from __future__ import annotations

import functools
import inspect
import re

import httpx
import pytest
import yaml

from labelstore_client import Client
from tests.helpers import ROOT

_METHODS = ("get", "put", "post", "delete", "patch")


@functools.cache
def spec_operations() -> dict[str, tuple[str, str]]:
    """operationId -> (HTTP method, path template) of app/openapi/api.yaml."""
    spec = yaml.load((ROOT / "app" / "openapi" / "api.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader",
                                                                                            yaml.SafeLoader))
    return {op["operationId"]: (method.upper(), path)
            for path, item in spec["paths"].items() for method, op in item.items() if method in _METHODS}


def drift(spec: set[str], client: set[str]) -> dict[str, list[str]]:
    return {"the client lacks": sorted(spec - client), "the spec no longer has": sorted(client - spec)}


def test_every_operation_has_one_client_method_and_every_method_an_operation():
    assert drift(set(spec_operations()), set(Client.operations())) == {"the client lacks": [],
                                                                       "the spec no longer has": []}
    names = list(Client.operations().values())
    assert len(names) == len(set(names))


def test_the_drift_check_names_what_drifted():
    ours = set(Client.operations())
    added = ours | {"app.api.images.new_thing"}
    assert drift(added, ours)["the client lacks"] == ["app.api.images.new_thing"]
    assert drift(ours - {"app.api.keys.me"}, ours)["the spec no longer has"] == ["app.api.keys.me"]


class Sent(Exception):
    pass


def _argument(name: str, parameter: inspect.Parameter):
    hint = str(parameter.annotation)
    if name in ("images", "campaigns", "roles"):
        return [7] if name != "roles" else ["reader"]
    if name == "files":
        return [("a.jpg", b"x")]
    if name == "urls":
        return ["https://example.org/a.jpg"]
    if name == "items":
        return [{"image_id": 7, "objects": []}]
    if name == "to":
        return bytearray()
    if hint.startswith("int"):
        return 7
    return "abc" if name != "md5" else "0" * 32


@pytest.mark.parametrize("operation_id", sorted(spec_operations()))
def test_each_method_sends_what_its_operation_declares(operation_id, tmp_path):
    """Each method, called with sample arguments on a transport that records instead of sending, sends its
    operation's HTTP method to a path matching the operation's template."""
    sent = []

    def record(request: httpx.Request):
        sent.append((request.method, request.url.path))
        raise Sent()

    client = Client("http://labelstore.invalid", "key", "secret", transport=httpx.MockTransport(record), max_retries=0)
    method = getattr(client, Client.operations()[operation_id])
    arguments = {name: _argument(name, p) for name, p in inspect.signature(method).parameters.items()
                 if p.default is inspect.Parameter.empty}
    with pytest.raises(Sent):
        result = method(**arguments)
        next(iter(result))  # a listing sends when iterated
    verb, template = spec_operations()[operation_id]
    pattern = "^/api/v1" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
    assert sent[0][0] == verb and re.match(pattern, sent[0][1]), (sent, verb, template)
