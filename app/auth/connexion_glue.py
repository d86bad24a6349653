"""Where Connexion meets the check: the security handler for the spec's two apiKey schemes, and the caller.

Both headers of the pair are declared as one security requirement (Swagger UI then asks for both);
`authenticate` checks the whole pair, `secret_present` only says the second header came.

`ApiKeyHeaderHandler` goes in through `security_map`, the way Connexion documents for replacing a scheme
type's handler (connexion.security: SecurityHandlerFactory calls `get_fn(scheme, required_scopes)` on it).
Connexion's own apiKey handler inspects the info function's signature on every call (four times a request,
~0.15 ms); ours calls it as `(api_key, request)`, the signature both our functions have.
"""
from __future__ import annotations

import inspect

import connexion
from connexion.exceptions import OAuthResponseProblem
from connexion.security import NO_VALUE
from connexion.utils import get_function_from_name

from app.auth.authenticator import SECRET_HEADER, Authenticator
from app.auth.policy import Caller, is_scoped


async def authenticate(api_key: str, request) -> dict:
    """x-apikeyInfoFunc of AuthenticationKey: checks the whole pair and the operation's `x-roles`."""
    authenticator: Authenticator = request.scope["label_store"].authenticator
    operation_id = ((request.scope.get("extensions") or {}).get("connexion_routing") or {}).get("operation_id")
    rules = authenticator.rules_for(operation_id)
    caller = await authenticator.check(api_key, request.headers.get(SECRET_HEADER), rules,
                                       request.path_params if is_scoped(rules) else {})  # parsed only when needed
    return {"sub": caller.key_id, "caller": caller}


def secret_present(api_key: str, request) -> dict:
    """x-apikeyInfoFunc of AuthenticationSecret: checked together with the key in `authenticate`."""
    return {}


def current_caller() -> Caller:
    return connexion.context.context["token_info"]["AuthenticationKey"]["caller"]


class ApiKeyHeaderHandler:
    """An apiKey scheme read from a header, its x-apikeyInfoFunc called as `(api_key, request)`."""

    def get_fn(self, security_scheme: dict, required_scopes):
        if security_scheme.get("in") != "header":
            raise ValueError(f"apiKey schemes are read from headers here, not from {security_scheme.get('in')!r}")
        header, info = security_scheme["name"], get_function_from_name(security_scheme["x-apikeyInfoFunc"])
        is_async = inspect.iscoroutinefunction(info)

        async def verify(request):
            api_key = request.headers.get(header)
            if api_key is None:
                return NO_VALUE  # Connexion answers 401 "no credentials"
            token_info = await info(api_key, request) if is_async else info(api_key, request)
            if token_info is None:
                raise OAuthResponseProblem(detail="Provided apikey is not valid")
            return token_info

        return verify


SECURITY_MAP = {"apiKey": ApiKeyHeaderHandler}
