"""Push rules and notifications (spec v1.19 client-server "Push Rules: API", "Listing Notifications")."""

from __future__ import annotations

from functools import partial

from homeserver.errors import MatrixError
from homeserver.events.push_rules import client_ruleset
from homeserver.http.router import ApiRequest, Endpoint


def _rule_path(req: ApiRequest) -> tuple[str, str]:
    """(kind, ruleId); ``/pushrules/global/{kind}/`` is the rule endpoint with an empty ruleId."""
    return req.path_params["kind"], req.path_params.get("ruleId", "")


async def get_all(hs, req: ApiRequest):
    return await hs.push.client_rules(req.user_id)


async def get_global(hs, req: ApiRequest):
    return client_ruleset(await hs.push.ruleset(req.user_id))


async def get_kind(hs, req: ApiRequest):
    """The rules of one kind, as Synapse serves them (SyTest reads them; not in spec v1.19). An unknown kind
    is a bad value of the spec's ``kind`` enum: 400, as Synapse and as PUT."""
    kind = req.path_params["kind"]
    rules = client_ruleset(await hs.push.ruleset(req.user_id)).get(kind)
    if rules is None:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown push rule kind {kind!r}")
    return rules


async def get_rule(hs, req: ApiRequest):
    return await hs.push.get_rule(req.user_id, *_rule_path(req))


async def put_rule(hs, req: ApiRequest):
    await hs.push.put_rule(req.user_id, *_rule_path(req), req.json(), before=req.arg("before"),
                           after=req.arg("after"))
    return {}


async def delete_rule(hs, req: ApiRequest):
    await hs.push.delete_rule(req.user_id, *_rule_path(req))
    return {}


async def get_attribute(hs, req: ApiRequest, attr: str):
    return await hs.push.get_attribute(req.user_id, *_rule_path(req), attr)


async def put_attribute(hs, req: ApiRequest, attr: str):
    body = req.json()
    if attr not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing '{attr}'")
    await hs.push.set_attribute(req.user_id, *_rule_path(req), attr, body[attr])
    return {}


async def notifications(hs, req: ApiRequest):
    return await hs.push.notifications(req.requester, req.arg("from"), req.int_arg("limit", 50, minimum=0),
                                       req.arg("only"))


ROUTES = [
    Endpoint("GET", "/pushrules/", get_all),
    Endpoint("GET", "/pushrules/global/", get_global),
    Endpoint("GET", "/pushrules/global/{kind}/", get_kind),
    Endpoint("GET", "/pushrules/global/{kind}/{ruleId}", get_rule),
    Endpoint("PUT", "/pushrules/global/{kind}/{ruleId}", put_rule),
    Endpoint("PUT", "/pushrules/global/{kind}/", put_rule),  # an empty ruleId: refused (400)
    Endpoint("DELETE", "/pushrules/global/{kind}/{ruleId}", delete_rule),
    Endpoint("GET", "/pushrules/global/{kind}/{ruleId}/enabled", partial(get_attribute, attr="enabled")),
    Endpoint("PUT", "/pushrules/global/{kind}/{ruleId}/enabled", partial(put_attribute, attr="enabled")),
    Endpoint("GET", "/pushrules/global/{kind}/{ruleId}/actions", partial(get_attribute, attr="actions")),
    Endpoint("PUT", "/pushrules/global/{kind}/{ruleId}/actions", partial(put_attribute, attr="actions")),
    Endpoint("GET", "/notifications", notifications),
]
